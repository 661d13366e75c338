"""Slate estimators on synthetic logging policies whose true candidate value is known exactly:
unbiased over many simulated logs, intervals that cover, and no false certainty."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation import off_policy
from dataflywheel.evaluation.slate import deterministic, slate_off_policy

REPS = 300


def epsilon_greedy_logs(
    rng: np.random.Generator, lists: int, items: int, k: int, epsilon: float, top: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logged items, per-position propensities and in-list probabilities of ε-greedy lists: the
    greedy ``top`` with each slot replaced w.p. ε by a distinct uniform outsider."""
    rest = items - k
    keys = rng.random((lists, items))
    keys[:, top] = np.inf
    outsiders = np.argsort(keys, axis=1)[:, :k]  # a random distinct draw per list
    replace = rng.random((lists, k)) < epsilon
    logged = np.where(replace, outsiders, top[None, :])
    pscore = np.where(replace, epsilon / rest, 1 - epsilon)
    in_list = np.where(replace, k * epsilon / rest, 1 - epsilon)
    return logged, pscore, in_list


def check(values: list[float], lows: list[float], highs: list[float], truth: float) -> None:
    estimates = np.asarray(values)
    spread = estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert abs(estimates.mean() - truth) <= 4 * spread + 1e-12, (estimates.mean(), truth, spread)
    covered = np.mean((np.asarray(lows) <= truth) & (truth <= np.asarray(highs)))
    assert covered >= 0.9, covered


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    epsilon=st.sampled_from([0.05, 0.1, 0.3]),
    keep=st.integers(0, 4),
)
def test_iips_and_item_ips_are_unbiased_and_cover_with_position_free_rewards(
    seed: int, epsilon: float, keep: int
) -> None:
    rng = np.random.default_rng(seed)
    items, k, lists = 20, 5, 400
    relevance = rng.uniform(0.05, 0.6, size=items)
    top = rng.permutation(items)[:k]
    outside = np.setdiff1d(np.arange(items), top)
    # The candidate keeps ``keep`` greedy items at their positions and shows outsiders elsewhere
    # (item-ips would also allow reordering; iips needs the logged position to be possible).
    candidate = top.copy()
    candidate[keep:] = rng.choice(outside, size=k - keep, replace=False)
    truth = float(relevance[candidate].sum())
    results: dict[str, tuple[list[float], list[float], list[float]]] = {
        "iips": ([], [], []),
        "item-ips": ([], [], []),
    }
    for _ in range(REPS):
        logged, pscore, in_list = epsilon_greedy_logs(rng, lists, items, k, epsilon, top)
        reward = (rng.random(logged.shape) < relevance[logged]).astype(float)
        position, anywhere = deterministic(np.tile(candidate, (lists, 1)), logged)
        out = slate_off_policy(reward, pscore, position, in_list=in_list, eval_in_list=anywhere)
        for name, (values, lows, highs) in results.items():
            values.append(out[name].value)
            lows.append(out[name].low)
            highs.append(out[name].high)
    for values, lows, highs in results.values():
        check(values, lows, highs, truth)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    temperature=st.sampled_from([1.0, 2.0]),
    second=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_rips_is_unbiased_and_covers_under_a_cascade(
    seed: int, temperature: float, second: list[bool]
) -> None:
    """Each position draws from its own pool (so the product of propensities is the prefix's
    probability); the user clicks the first attractive item, so rewards depend on the items
    above: RIPS stays unbiased."""
    rng = np.random.default_rng(seed)
    k, pool, lists = 3, 4, 400
    relevance = rng.uniform(0.1, 0.7, size=(k, pool))
    logits = rng.normal(size=(k, pool)) / temperature
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # The best or second-best logged item per position: a prefix the logs hold often enough
    # for the mean of 300 estimates to settle (rarer ones are unbiased too, only slower).
    candidate = np.argsort(-probs, axis=1)[np.arange(k), np.asarray(second, dtype=int)]
    stop = np.cumprod(np.concatenate([[1.0], 1 - relevance[np.arange(k), candidate][:-1]]))
    truth = float((relevance[np.arange(k), candidate] * stop).sum())
    values, lows, highs = [], [], []
    for _ in range(REPS):
        logged = np.stack([rng.choice(pool, size=lists, p=probs[j]) for j in range(k)], axis=1)
        pscore = probs[np.arange(k), logged]
        attractive = rng.random((lists, k)) < relevance[np.arange(k), logged]
        first = attractive & (np.cumsum(attractive, axis=1) == 1)
        position, _ = deterministic(np.tile(candidate, (lists, 1)), logged)
        out = slate_off_policy(first.astype(float), pscore, position)["rips"]
        values.append(out.value)
        lows.append(out.low)
        highs.append(out.high)
    check(values, lows, highs, truth)


def test_a_few_heavy_weights_without_reward_do_not_look_certain() -> None:
    """The candidate's items were shown only by rare exploration and never clicked: the estimate
    is 0, but one more click at that weight would move it, and the interval says so."""
    rng = np.random.default_rng(0)
    items, k, lists, epsilon = 1000, 10, 300, 0.05
    top = np.arange(k)
    logged, pscore, in_list = epsilon_greedy_logs(rng, lists, items, k, epsilon, top)
    reward = np.zeros(logged.shape)
    reward[:, 0] = 1.0  # the champion's first item is always clicked
    candidate = np.tile(np.arange(500, 500 + k), (lists, 1))
    position, anywhere = deterministic(candidate, logged)
    out = slate_off_policy(reward, pscore, position, in_list=in_list, eval_in_list=anywhere)
    for estimate in out.values():
        assert estimate.value == 0.0
        assert estimate.high >= 1.0, estimate  # as high as the champion's, and beyond
        assert estimate.ess < 30, estimate


def test_the_lift_of_the_greedy_list_over_its_own_exploring_logs_is_precise() -> None:
    rng = np.random.default_rng(1)
    items, k, lists, epsilon = 40, 5, 2000, 0.05
    top = np.arange(k)
    relevance = np.where(np.arange(items) < k, 0.4, 0.02)
    logged, pscore, in_list = epsilon_greedy_logs(rng, lists, items, k, epsilon, top)
    reward = (rng.random(logged.shape) < relevance[logged]).astype(float)
    position, anywhere = deterministic(np.tile(top, (lists, 1)), logged)
    known = {name: 1 / (1 - epsilon) for name in ("iips", "item-ips")}  # only greedy items
    out = slate_off_policy(
        reward, pscore, position, in_list=in_list, eval_in_list=anywhere, lift=True
    )
    assert out["iips"].high - out["iips"].low > 0.5  # unless told, it may show rare items
    out = slate_off_policy(
        reward,
        pscore,
        position,
        in_list=in_list,
        eval_in_list=anywhere,
        lift=True,
        max_weight=known,
    )
    del out["rips"]  # its ε-greedy prefix probabilities are approximate
    gain = k * epsilon * (0.4 - 0.02)  # what exploration costs the logging policy per list
    for estimate in out.values():
        assert estimate.low <= gain <= estimate.high, estimate
        assert estimate.high - estimate.low < 0.1, estimate
        assert estimate.ess > 0.9 * lists * k


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pscore": [[0.0, 1.0]]}, "pscore"),
        ({"reward": [[1.0]]}, "pscore"),
        ({"eval_position": [[2.0, 0.0]]}, "eval_position"),
        ({"in_list": [[0.5, 0.5]]}, "in_list"),
        ({"reward": [[np.nan, 0.0]]}, "reward"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "reward": [[1.0, 0.0]],
        "pscore": [[0.9, 0.1]],
        "eval_position": [[1.0, 0.0]],
    }
    args.update(kwargs)
    with pytest.raises(ValidationError) as info:
        slate_off_policy(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_auto_never_picks_a_narrow_estimate_on_a_tiny_effective_sample() -> None:
    """The evaluation policy always plays an action the logs hold a couple of times in 16 200
    rounds: model-based estimates are narrow around the wrong value; "auto" says how little the
    data holds instead, and its interval covers the truth."""
    rng = np.random.default_rng(0)
    n, actions = 16_200, 10
    probs = np.full(actions, (1 - 3 / n) / (actions - 1))
    probs[1] = 3 / n
    action = rng.choice(actions, size=n, p=probs)
    rate = np.where(np.arange(actions) == 1, 0.6, 0.1)
    reward = (rng.random(n) < rate[action]).astype(float)
    dist = np.zeros((n, actions))
    dist[:, 1] = 1.0
    out = off_policy(
        reward=reward,
        action=action,
        pscore=probs[action],
        action_dist=dist,
        context=rng.normal(size=(n, 2)),
        random_state=0,
    )
    auto = out["auto"]
    assert auto.ess is not None and auto.ess < 30
    assert auto.name in ("snipw", "ipw"), auto
    assert auto.low <= 0.6 <= auto.high, auto
    assert auto.high - auto.low >= 0.5, auto
    assert "effective sample size" in auto.reason
    assert all(e.ess == auto.ess for e in out.values())
