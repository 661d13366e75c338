"""Team-draft interleaving: compare two rankers inside each user's own result list.

Radlinski, Kurup & Joachims (2008) and Chapelle, Joachims, Radlinski & Yue (2012). Each user sees
one merged list whose items are drafted alternately by the two rankers (a coin decides who picks
first in each round); clicks or engagement on an item credit the team that contributed it. Since
every user judges both rankers, the between-user variance that dominates an A/B test cancels,
which is why Netflix uses it as a fast first stage before A/B (far fewer users for equal power).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate

T = TypeVar("T", bound=Hashable)
TEAM_A = "A"
TEAM_B = "B"


def team_draft(
    ranking_a: Sequence[T],
    ranking_b: Sequence[T],
    k: int,
    rng: np.random.Generator | int | None = None,
) -> tuple[list[T], list[str]]:
    """Merge two rankings into at most ``k`` items, with the team ("A"/"B") that drafted each.

    In every round both teams pick once, in an order set by a fair coin; each picks its
    highest-ranked item not already in the list. Runs until ``k`` items or both rankings are spent.
    """
    if not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be a positive integer, got {k!r}", field="k")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    merged: list[T] = []
    teams: list[str] = []
    seen: set[T] = set()
    cursors = {TEAM_A: 0, TEAM_B: 0}
    rankings = {TEAM_A: ranking_a, TEAM_B: ranking_b}

    def next_item(team: str) -> T | None:
        ranking, cursor = rankings[team], cursors[team]
        while cursor < len(ranking) and ranking[cursor] in seen:
            cursor += 1
        cursors[team] = cursor
        return ranking[cursor] if cursor < len(ranking) else None

    while len(merged) < k:
        order = (TEAM_A, TEAM_B) if generator.random() < 0.5 else (TEAM_B, TEAM_A)
        drafted = False
        for team in order:
            item = next_item(team)
            if item is None or len(merged) >= k:
                continue
            merged.append(item)
            teams.append(team)
            seen.add(item)
            drafted = True
        if not drafted:
            break
    return merged, teams


def credit(teams: Sequence[str], values: ArrayLike) -> tuple[float, float]:
    """(credit of A, credit of B): clicks (0/1) or engagement value per position, summed by team."""
    engagement = _validate.sample(values, "values", min_size=0)
    if engagement.size != len(teams):
        raise ValidationError(
            f"values has {engagement.size} positions but teams has {len(teams)}", field="values"
        )
    labels = np.asarray(teams)
    return float(engagement[labels == TEAM_A].sum()), float(engagement[labels == TEAM_B].sum())


@dataclass(frozen=True)
class InterleavingResult:
    """Which ranker users prefer: per-unit wins, the preference share of A and its test.

    ``preference_a`` is the share of non-tied units whose credit favoured A, ``low``/``high`` its
    Clopper-Pearson interval, ``p_value`` the exact two-sided sign test of ``preference_a = 0.5``,
    ``delta`` Chapelle's ``(wins_a + ties / 2) / n - 1/2``.
    """

    wins_a: int
    wins_b: int
    ties: int
    preference_a: float
    low: float
    high: float
    p_value: float
    delta: float
    significant: bool
    winner: str | None
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return asdict(self)


def preference_test(
    credit_a: ArrayLike, credit_b: ArrayLike, alpha: float = 0.05
) -> InterleavingResult:
    """Sign test over units (queries or users) of whether ranker A or B earns more credit."""
    a = _validate.sample(credit_a, "credit_a", min_size=1)
    b = _validate.sample(credit_b, "credit_b", min_size=1)
    _validate.same_length(a, b, "credit_b", "credit_a")
    alpha = _validate.probability(alpha, "alpha")
    wins_a, wins_b = int(np.sum(a > b)), int(np.sum(b > a))
    ties = int(a.size) - wins_a - wins_b
    decided = wins_a + wins_b
    if decided == 0:
        share, low, high, p_value = 0.5, 0.0, 1.0, 1.0
    else:
        share = wins_a / decided
        low, high = _clopper_pearson(wins_a, decided, alpha)
        # Exact two-sided binomial test at 1/2; symmetric, so twice the smaller tail.
        p_value = min(1.0, 2.0 * float(special.bdtr(min(wins_a, wins_b), decided, 0.5)))
    significant = p_value < alpha
    winner = (TEAM_A if wins_a > wins_b else TEAM_B) if significant else None
    return InterleavingResult(
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        preference_a=share,
        low=low,
        high=high,
        p_value=p_value,
        delta=(wins_a + ties / 2.0) / a.size - 0.5,
        significant=significant,
        winner=winner,
        alpha=alpha,
    )


def _clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion, from beta quantiles."""
    low = 0.0
    high = 1.0
    if successes > 0:
        low = float(special.betaincinv(successes, trials - successes + 1, alpha / 2.0))
    if successes < trials:
        high = float(special.betaincinv(successes + 1, trials - successes, 1.0 - alpha / 2.0))
    return low, high


def interleaving_sample_size(
    preference_a: float, tie_rate: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units needed for the sign test to detect a preference share ``preference_a`` != 0.5.

    Normal approximation to the binomial on decided units, inflated by the share of ties.
    """
    share = _validate.probability(preference_a, "preference_a")
    if share == 0.5:
        raise ValidationError("preference_a must differ from 0.5", field="preference_a")
    if not 0.0 <= tie_rate < 1.0:
        raise ValidationError("tie_rate must be in [0, 1)", field="tie_rate")
    alpha = _validate.probability(alpha, "alpha")
    power = _validate.probability(power, "power")
    z_alpha = float(special.ndtri(1.0 - alpha / 2.0))
    z_power = float(special.ndtri(power))
    decided = ((z_alpha * 0.5 + z_power * math.sqrt(share * (1 - share))) / (share - 0.5)) ** 2
    return math.ceil(decided / (1.0 - tie_rate))
