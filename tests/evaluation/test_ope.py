"""Off-policy estimators: validation, unbiasedness on synthetic logs, agreement on-policy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.estimators import slope_select
from dataflywheel.evaluation.ope import ESTIMATORS, off_policy

N_ACTIONS, N_POSITIONS = 5, 2


def synthetic_logs(seed: int, n: int = 2000, uniform: bool = False) -> dict[str, np.ndarray]:
    """Logs of a softmax logging policy with known click rates, plus an evaluation policy and
    its true value (expected reward under the evaluation policy, computed exactly)."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 3))
    theta = np.array([[0.8, -0.5, 0.2, 0.0, -0.3], [0.1, 0.4, -0.6, 0.3, 0.0], [0.0] * 5])
    ctr = 1 / (1 + np.exp(-(context @ theta - 1.0)))  # (n, actions), same at both positions
    logging = np.full((n, N_ACTIONS), 1 / N_ACTIONS) if uniform else _softmax(context @ theta * 0.5)
    action = (rng.random((n, 1)) < logging.cumsum(axis=1)).argmax(axis=1)
    position = rng.integers(0, N_POSITIONS, n)
    reward = (rng.random(n) < ctr[np.arange(n), action]).astype(float)
    target = _softmax(context @ theta * 2.0)
    action_dist = np.repeat(target[:, :, None], N_POSITIONS, axis=2)
    return {
        "reward": reward,
        "action": action,
        "pscore": logging[np.arange(n), action],
        "action_dist": action_dist,
        "position": position,
        "context": context,
        "truth": np.array((target * ctr).sum(axis=1).mean()),
        "logging": logging,
    }


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _call(logs: dict[str, np.ndarray], **kw: object) -> dict:
    args = {
        k: logs[k] for k in ("reward", "action", "pscore", "action_dist", "position", "context")
    }
    args.update(kw)
    return off_policy(**args)  # type: ignore[arg-type]


def test_returns_every_estimator_with_interval_and_auto() -> None:
    logs = synthetic_logs(0)
    result = _call(logs, random_state=0)
    assert set(result) == {e for e in ESTIMATORS if e != "replay"} | {"auto"}
    for est in result.values():
        assert est.low <= est.value <= est.high or est.name in ("snipw", "sndr")
        assert est.low <= est.high and est.std >= 0
    auto = result["auto"]
    assert auto.name in result and auto.value == result[auto.name].value
    assert isinstance(auto.reason, str) and auto.name in auto.reason


def test_seeded_results_are_reproducible() -> None:
    logs = synthetic_logs(1)
    a, b = _call(logs, random_state=7), _call(logs, random_state=7)
    assert {k: (v.value, v.low, v.high) for k, v in a.items()} == {
        k: (v.value, v.low, v.high) for k, v in b.items()
    }


def test_unbiased_estimators_average_to_the_truth() -> None:
    """IPW and DR are unbiased: averaged over independent logs they land on the true value."""
    errors: dict[str, list[float]] = {"ipw": [], "dr": [], "snipw": []}
    for seed in range(20):
        logs = synthetic_logs(seed, n=1500)
        result = _call(logs, estimators=["ipw", "dr", "snipw"], random_state=seed, n_bootstrap=20)
        for name in errors:
            errors[name].append(result[name].value - float(logs["truth"]))
    for name, errs in errors.items():
        mean, se = np.mean(errs), np.std(errs) / np.sqrt(len(errs))
        assert abs(mean) < 4 * se + 0.005, (name, mean, se)


def test_interval_covers_the_truth_most_of_the_time() -> None:
    covered = 0
    for seed in range(20):
        logs = synthetic_logs(100 + seed, n=1500)
        est = _call(logs, estimators="dr", random_state=seed, n_bootstrap=100)["dr"]
        covered += est.low <= float(logs["truth"]) <= est.high
    assert covered >= 15


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 300))
def test_on_policy_estimators_agree(seed: int, n: int) -> None:
    """Evaluating the logging policy itself: weights are 1, IPW = SNIPW = the mean reward, and
    DR equals it up to the reward model's average residual."""
    rng = np.random.default_rng(seed)
    logging = _softmax(rng.normal(size=(n, N_ACTIONS)))
    action = (rng.random((n, 1)) < logging.cumsum(axis=1)).argmax(axis=1)
    reward = rng.integers(0, 2, n).astype(float)
    result = off_policy(
        reward=reward,
        action=action,
        pscore=logging[np.arange(n), action],
        action_dist=logging[:, :, None],
        estimators=["ipw", "snipw", "dr"],
        random_state=seed,
        n_bootstrap=10,
    )
    assert result["ipw"].value == pytest.approx(reward.mean())
    assert result["snipw"].value == pytest.approx(reward.mean())
    assert abs(result["dr"].value - reward.mean()) < 0.5


def test_replay_applies_to_uniform_logs_and_matches_snipw() -> None:
    logs = synthetic_logs(3, uniform=True)
    result = _call(logs, random_state=0)
    assert result["replay"].value == pytest.approx(result["snipw"].value)
    with pytest.raises(ValidationError) as err:
        _call(synthetic_logs(3), estimators=["replay"])
    assert err.value.field == "estimators"


def test_without_context_uses_cell_means() -> None:
    logs = synthetic_logs(4)
    result = _call(logs, context=None, estimators=["dm", "dr"], random_state=0)
    assert 0 < result["dm"].value < 1 and 0 < result["dr"].value < 1


def test_continuous_rewards_and_two_dimensional_action_dist() -> None:
    rng = np.random.default_rng(5)
    n = 400
    action = rng.integers(0, 3, n)
    reward = rng.normal(size=n) + action
    target = np.tile([0.0, 0.0, 1.0], (n, 1))
    result = off_policy(
        reward=reward,
        action=action,
        pscore=np.full(n, 1 / 3),
        action_dist=target,
        context=rng.normal(size=(n, 2)),
        random_state=0,
    )
    assert result["dr"].value == pytest.approx(2.0, abs=0.4)


def test_tuned_estimators_report_their_hyperparameter() -> None:
    result = _call(synthetic_logs(6), estimators=["switch-dr", "dros"], random_state=0)
    assert result["switch-dr"].hyperparameter is not None
    assert result["dros"].hyperparameter is not None


def test_slope_stops_at_the_first_disagreeing_candidate() -> None:
    assert slope_select([1.0, 1.1, 1.15, 3.0], [0.5, 0.2, 0.1, 0.01]) == 2
    assert slope_select([1.0, 5.0], [0.1, 0.1]) == 0


def test_slope_visits_candidates_from_widest_to_narrowest() -> None:
    """The order is by width, not by position: the narrow agreeing candidate wins."""
    assert slope_select([1.0, 1.05], [0.01, 0.5]) == 0
    assert slope_select([1.0, 3.0], [0.01, 0.5]) == 1


N_ITEMS = 40


def item_logs(seed: int, n: int = 3000, n_items: int = N_ITEMS) -> dict[str, np.ndarray]:
    """Uniform-random logs over many items whose click rate depends only on an item feature,
    a target policy favouring high-feature items, and the true value."""
    rng = np.random.default_rng(seed)
    feature = rng.normal(size=n_items)
    ctr = 1 / (1 + np.exp(-(1.2 * feature - 1.5)))
    action = rng.integers(0, n_items, n)
    reward = (rng.random(n) < ctr[action]).astype(float)
    target = np.exp(2.0 * feature) / np.exp(2.0 * feature).sum()
    return {
        "reward": reward,
        "action": action,
        "pscore": np.full(n, 1 / n_items),
        "action_dist": np.tile(target, (n, 1)),
        "action_context": feature[:, None],
        "truth": np.array(float(target @ ctr)),
    }


def _item_call(logs: dict[str, np.ndarray], **kw: object) -> dict:
    args = {k: logs[k] for k in ("reward", "action", "pscore", "action_dist", "action_context")}
    args.update(kw)
    return off_policy(**args)  # type: ignore[arg-type]


def test_action_features_help_when_rewards_depend_on_them() -> None:
    """With five rounds per item, per-item means are noisy; the item feature pools them."""
    with_features, without = [], []
    for seed in range(8):
        logs = item_logs(seed, n=1000, n_items=200)
        truth = float(logs["truth"])
        dm = _item_call(logs, estimators="dm", random_state=seed, n_bootstrap=20)["dm"]
        bare = _item_call(
            logs, action_context=None, estimators="dm", random_state=seed, n_bootstrap=20
        )["dm"]
        with_features.append(abs(dm.value - truth))
        without.append(abs(bare.value - truth))
    assert np.mean(with_features) < 0.7 * np.mean(without)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_dr_with_a_correct_reward_model_lands_within_its_error(seed: int) -> None:
    """The logistic model on the item feature is well specified here, so DR is unbiased and its
    bootstrap standard error bounds its distance to the truth."""
    logs = item_logs(seed)
    dr = _item_call(logs, estimators="dr", random_state=seed, n_bootstrap=50)["dr"]
    assert abs(dr.value - float(logs["truth"])) < 5 * dr.std + 1e-3


def test_dr_with_action_features_is_unbiased_on_average() -> None:
    errors = []
    for seed in range(15):
        logs = item_logs(1000 + seed, n=1500)
        dr = _item_call(logs, estimators="dr", random_state=seed, n_bootstrap=10)["dr"]
        errors.append(dr.value - float(logs["truth"]))
    assert abs(np.mean(errors)) < 4 * np.std(errors) / np.sqrt(len(errors)) + 0.005


def test_dm_interval_accounts_for_fitting_the_reward_model() -> None:
    """A bootstrap that kept the reward model fixed would give DM a near-zero spread; refitting
    on new logs moves it by about the sampling error of the click rate."""
    rng = np.random.default_rng(0)
    n = 4000
    action = rng.integers(0, 5, n)
    reward = (rng.random(n) < 0.05).astype(float)
    result = off_policy(
        reward=reward,
        action=action,
        pscore=np.full(n, 0.2),
        action_dist=np.tile([0.6, 0.1, 0.1, 0.1, 0.1], (n, 1)),
        context=rng.normal(size=(n, 2)),
        estimators="dm",
        random_state=0,
    )
    sampling_error = reward.std() / np.sqrt(n)
    assert result["dm"].std > 0.5 * sampling_error


def test_action_features_without_context_use_the_linear_model() -> None:
    logs = item_logs(7)
    result = _item_call(logs, estimators=["dm", "dr"], random_state=0, n_bootstrap=20)
    assert result["dm"].low < float(logs["truth"]) * 1.5
    assert 0 < result["dm"].value < 1


def test_auto_explains_its_choice_with_action_features() -> None:
    result = _item_call(item_logs(3), random_state=0, n_bootstrap=50)
    auto = result["auto"]
    assert auto.name in result and auto.value == result[auto.name].value
    assert "agree" in auto.reason and auto.name in auto.reason


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((N_ITEMS - 1, 2)),
        np.ones((N_ITEMS, 2, 2)),
        np.full((N_ITEMS, 1), np.nan),
        np.full(N_ITEMS, np.inf),
        np.array([["a"]] * N_ITEMS),
    ],
)
def test_action_context_is_validated(bad: np.ndarray) -> None:
    with pytest.raises(ValidationError) as err:
        _item_call(item_logs(0, n=200), action_context=bad)
    assert err.value.field == "action_context"
    assert "action_context" in err.value.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"pscore": np.zeros(2000)}, "pscore"),
        ({"pscore": -np.ones(2000)}, "pscore"),
        ({"pscore": np.full(2000, np.nan)}, "pscore"),
        ({"pscore": None}, "pscore"),
        ({"reward": np.zeros(10)}, "pscore"),
        ({"action": np.zeros(5, dtype=int)}, "action"),
        ({"action_dist": np.ones((2000, N_ACTIONS, N_POSITIONS))}, "action_dist"),
        ({"action_dist": np.ones((10, N_ACTIONS, N_POSITIONS)) / N_ACTIONS}, "action_dist"),
        ({"position": np.full(2000, 7)}, "position"),
        ({"context": np.ones((3, 2))}, "context"),
        ({"estimators": ["nope"]}, "estimators"),
    ],
)
def test_validation_errors_name_the_field(change: dict, field: str) -> None:
    logs = synthetic_logs(0)
    with pytest.raises(ValidationError) as err:
        _call(logs, **change)
    assert err.value.field == field


def test_empty_arrays_are_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        off_policy(reward=[], action=[], pscore=[], action_dist=np.zeros((0, 2, 1)))
    assert err.value.field == "reward"
