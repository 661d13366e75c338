"""Aimed exploration's lift estimate on simulated request streams with a known true lift: unbiased,
and its anytime interval covers the truth at every look at once, as a gate that looks daily
needs; a fixed-sample interval read at the same looks does not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.slate import (
    aimed_lift,
    anytime_multiplier,
    lists_for_half_width,
)

REPS = 200
LOOKS = 20


def stream(
    rng: np.random.Generator, n: int, share: float, champion: np.ndarray, candidate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rewards of ``n`` requests (0, 1 or 2 positive items per list, with the given
    probabilities for each branch) and which requests served the candidate's list."""
    own = rng.random(n) < share
    draws = np.where(own, rng.choice(3, size=n, p=candidate), rng.choice(3, size=n, p=champion))
    return draws.astype(np.float64), own


@settings(max_examples=5, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    share=st.sampled_from([0.05, 0.1, 0.3]),
    base=st.floats(0.2, 0.6),
    lift=st.floats(-0.1, 0.1),
)
def test_the_anytime_interval_covers_at_every_look(
    seed: int, share: float, base: float, lift: float
) -> None:
    rng = np.random.default_rng(seed)
    # Mean reward per list: base for the champion, base + lift for the candidate.
    champion = np.array([1 - 0.9 * base, 0.8 * base, 0.1 * base])
    c = base + lift
    candidate = np.array([1 - 0.9 * c, 0.8 * c, 0.1 * c])
    truth = float(candidate @ np.arange(3) - champion @ np.arange(3))
    # Looks from the first with about 30 of the candidate's lists, as the gate needs.
    first = int(np.ceil(40 / share))
    looks = np.linspace(first, 8 * first, LOOKS).astype(int)
    final, always, fixed_always = [], 0, 0
    for _ in range(REPS):
        reward, own = stream(rng, int(looks[-1]), share, champion, candidate)
        inside, fixed_inside = True, True
        for n in looks:
            est = aimed_lift(reward[:n], own[:n], ~own[:n], share=share)
            inside &= est.low <= truth <= est.high
            fixed_inside &= abs(est.value - truth) <= 1.96 * est.std
        final.append(est.value)
        always += inside
        fixed_always += fixed_inside
    values = np.asarray(final)
    assert abs(values.mean() - truth) <= 4 * values.std(ddof=1) / np.sqrt(REPS) + 1e-12
    assert always / REPS >= 0.93, always
    # Read at 20 looks, the fixed interval misses somewhere far more often than 5%.
    assert fixed_always / REPS < always / REPS - 0.05, (fixed_always, always)


def test_the_multiplier_is_wider_than_a_fixed_interval_and_tightest_where_tuned() -> None:
    widths = {n: anytime_multiplier(n) for n in (100, 2_000, 200_000)}
    assert all(width > 1.96 for width in widths.values())
    assert widths[2_000] < widths[100] and widths[2_000] < widths[200_000]
    assert widths[2_000] == pytest.approx(3.03, abs=0.01)
    # The lists a half-width needs: none more when it is already narrow enough, more otherwise.
    assert lists_for_half_width(0.01, 2_000, 1.0) == 2_000
    needed = lists_for_half_width(0.1, 2_000, 0.1)
    assert needed is not None and 0.1 * np.sqrt(2_000 / needed) * anytime_multiplier(
        int(needed)
    ) == pytest.approx(0.1, rel=0.01)
    assert lists_for_half_width(0.1, 2_000, 0.0) is None


def test_bad_input_names_the_field() -> None:
    reward, own = np.array([1.0, 0.0, 1.0, 0.0]), np.array([True, False, True, False])
    with pytest.raises(ValidationError) as error:
        aimed_lift(reward, own, own, share=0.5)
    assert error.value.field == "own"
    with pytest.raises(ValidationError) as error:
        aimed_lift(reward, own, ~own, share=1.0)
    assert error.value.field == "share"
    with pytest.raises(ValidationError) as error:
        aimed_lift(reward[:3], own, ~own, share=0.5)
    assert error.value.field == "own"
    with pytest.raises(ValidationError) as error:
        anytime_multiplier(0)
    assert error.value.field == "lists"
