"""Team-draft interleaving: the draft itself, credit, the sign test, and its sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import (
    analyze,
    credit,
    interleaving_sample_size,
    preference_test,
    sample_size,
    team_draft,
)


def test_identical_rankings_interleave_to_the_same_list() -> None:
    ranking = list("abcdefgh")
    merged, teams = team_draft(ranking, ranking, 6, np.random.default_rng(0))
    assert merged == ranking[:6]
    assert abs(teams.count("A") - teams.count("B")) <= 1


def test_each_team_contributes_its_own_top_items() -> None:
    a, b = ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]
    merged, teams = team_draft(a, b, 6, 7)
    assert [m for m, t in zip(merged, teams, strict=True) if t == "A"] == a[:3]
    assert [m for m, t in zip(merged, teams, strict=True) if t == "B"] == b[:3]


def test_short_rankings_end_the_draft() -> None:
    merged, teams = team_draft([1, 2], [2, 3], 10, 0)
    assert sorted(merged) == [1, 2, 3] and len(teams) == 3


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.integers(0, 30), unique=True, max_size=20),
    b=st.lists(st.integers(0, 30), unique=True, max_size=20),
    k=st.integers(1, 25),
    seed=st.integers(0, 2**32 - 1),
)
def test_draft_invariants(a: list[int], b: list[int], k: int, seed: int) -> None:
    merged, teams = team_draft(a, b, k, seed)
    assert len(merged) == len(set(merged)) == len(teams) == min(k, len(set(a) | set(b)))
    assert (merged, teams) == team_draft(a, b, k, seed)  # seeded: reproducible
    for team, ranking in (("A", a), ("B", b)):
        # Every pick is the team's best item not already shown at that point.
        for position, (item, owner) in enumerate(zip(merged, teams, strict=True)):
            if owner == team:
                shown = set(merged[:position])
                assert item == next(x for x in ranking if x not in shown)


def test_credit_and_validation() -> None:
    assert credit(["A", "B", "A"], [1, 1, 0.5]) == (1.5, 1.0)
    with pytest.raises(ValidationError) as info:
        credit(["A", "B"], [1.0])
    assert info.value.field == "values"
    with pytest.raises(ValidationError):
        team_draft([1], [2], 0)


def test_preference_test_counts_and_direction() -> None:
    result = preference_test([1, 2, 0, 0, 3] * 20, [0, 1, 0, 1, 0] * 20)
    assert (result.wins_a, result.wins_b, result.ties) == (60, 20, 20)
    assert result.preference_a == pytest.approx(0.75)
    assert result.low < 0.75 < result.high and result.winner == "A"
    assert result.delta == pytest.approx((60 + 10) / 100 - 0.5)
    null = preference_test([0, 0], [0, 0])
    assert (null.p_value, null.winner, null.significant) == (1.0, None, False)


def _click_model(
    users: int, rng: np.random.Generator, k: int = 10, items: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user engagement under ranker A, under ranker B, and A's minus B's interleaved credit.

    Users differ a lot in how often they come back (sessions) and how much each click is worth to
    them (watch time): that between-user variance is what an A/B test must average out and what
    interleaving, comparing both rankers inside each user's own list, cancels. The rankers order
    items by the user's true relevance plus noise; A is less noisy, so A is better.
    """
    relevance = rng.beta(1.0, 3.0, (users, items))
    sessions = 1 + rng.poisson(rng.lognormal(1.5, 1.0, users))[:, None]
    value = rng.lognormal(0.0, 1.0, users)
    examine = 1.0 / np.log2(np.arange(k) + 2.0)
    rank_a = np.argsort(-(relevance + rng.normal(0, 0.25, (users, items))), axis=1)[:, :k]
    rank_b = np.argsort(-(relevance + rng.normal(0, 0.30, (users, items))), axis=1)[:, :k]

    def clicks(shown: np.ndarray) -> np.ndarray:
        return rng.binomial(sessions, examine * np.take_along_axis(relevance, shown, axis=1))

    engagement_a = value * clicks(rank_a).sum(axis=1)
    engagement_b = value * clicks(rank_b).sum(axis=1)
    merged = np.empty((users, k), dtype=np.int64)
    team_a = np.empty((users, k), dtype=bool)
    for u in range(users):
        items_u, teams = team_draft(rank_a[u].tolist(), rank_b[u].tolist(), k, rng)
        merged[u] = items_u
        team_a[u] = np.asarray(teams) == "A"
    interleaved = clicks(merged) * value[:, None]
    margin = np.where(team_a, interleaved, -interleaved).sum(axis=1)
    return engagement_a, engagement_b, margin


def test_interleaving_needs_far_fewer_users_than_ab() -> None:
    rng = np.random.default_rng(30)
    clicks_a, clicks_b, margin = _click_model(20_000, rng)
    # A/B: users per arm for 80% power at the observed difference in clicks per user.
    sd = np.sqrt((clicks_a.var(ddof=1) + clicks_b.var(ddof=1)) / 2)
    ab_users = 2 * sample_size(clicks_b.mean(), sd, clicks_a.mean() - clicks_b.mean())
    wins_a, wins_b = np.sum(margin > 0), np.sum(margin < 0)
    share, ties = wins_a / (wins_a + wins_b), np.mean(margin == 0)
    il_users = interleaving_sample_size(share, ties)
    assert share > 0.5  # interleaving prefers the better ranker
    assert ab_users / il_users > 20  # ~85x at this seed; Netflix reports > 100x

    # Both sample sizes really give ~80% power when users are resampled.
    hits_il = sum(
        preference_test(np.maximum(m, 0), np.maximum(-m, 0)).winner == "A"
        for m in (rng.choice(margin, il_users) for _ in range(300))
    )
    half = ab_users // 2
    hits_ab = sum(
        analyze(
            control=rng.choice(clicks_b, half), treatment=rng.choice(clicks_a, half)
        ).significant
        for _ in range(300)
    )
    assert hits_il / 300 == pytest.approx(0.8, abs=0.08)
    assert hits_ab / 300 == pytest.approx(0.8, abs=0.08)


@pytest.mark.parametrize(("wins_a", "wins_b"), [(0, 5), (3, 9), (30, 22), (500, 455), (7, 0)])
def test_sign_test_matches_scipy_binomtest(wins_a: int, wins_b: int) -> None:
    result = preference_test([1] * wins_a + [0] * wins_b, [0] * wins_a + [1] * wins_b, alpha=0.1)
    reference = stats.binomtest(wins_a, wins_a + wins_b, 0.5)
    interval = reference.proportion_ci(confidence_level=0.9, method="exact")
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high), abs=1e-9)
