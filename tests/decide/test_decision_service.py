"""The decision service's Personalizer semantics, on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from dataflywheel.config import load_settings
from dataflywheel.decide import LearnerConfig, create_learner
from dataflywheel.decide.linear import LinearLearner
from dataflywheel.decide.service import DecisionService
from dataflywheel.decide.tables import decisions
from dataflywheel.errors import ConflictError, NotFoundError, ValidationError
from dataflywheel.store.store import Store
from helpers import Clock

ACTIONS = [{"id": a, "features": [{"kind": a}]} for a in ("a", "b", "c")]
T0 = 1_000_000.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    handle = Store(load_settings(db=store_url))
    yield handle
    handle.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def service(store: Store, tmp_path: Path, clock: Clock) -> Iterator[DecisionService]:
    handle = DecisionService(store, tmp_path / "decisions", clock=clock)
    yield handle
    handle.close()


def _row(store: Store, event_id: str, slot: str = "") -> dict[str, object]:
    c = decisions.c
    with store.read() as conn:
        row = conn.execute(
            select(decisions).where(c.event_id == event_id, c.slot_id == slot)
        ).first()
    assert row is not None
    return dict(row._mapping)


def test_rank_logs_exact_probabilities_and_excludes(service: DecisionService, store: Store) -> None:
    result = service.rank([{"x": 1}], ACTIONS, excluded=["c"], event_id="e1")
    assert [a for a, _ in result.ranking][-1] == "c"
    assert dict(result.ranking)["c"] == 0.0
    assert sum(p for _, p in result.ranking) == pytest.approx(1.0)
    service.flush()
    row = _row(store, "e1")
    assert row["action_ids"] == ["a", "b"]
    assert row["chosen_id"] == result.reward_action_id
    assert row["outcome"] == "pending"
    chosen = row["chosen_index"]
    assert isinstance(chosen, int)
    assert row["probabilities"][chosen] == dict(result.ranking)[result.reward_action_id]  # type: ignore[index]


def test_reward_is_learned_once_and_late_rewards_are_refused(
    service: DecisionService, store: Store, clock: Clock
) -> None:
    result = service.rank([], ACTIONS, event_id="e1")
    clock.now = T0 + 1
    service.reward("e1", 1.0)
    clock.now = T0 + 2
    service.reward("e1", 0.5)  # earliest aggregation: logged, not learned
    assert service.deployment().learner.state.learns == 1
    with pytest.raises(ConflictError):
        clock.now = T0 + 601
        service.reward("e1", 1.0)
    service.flush()
    row = _row(store, "e1")
    assert (row["outcome"], row["reward"], row["rewards"], row["late_rewards"]) == (
        "rewarded",
        1.0,
        2,
        1,
    )
    assert result.event_id == "e1"


def test_default_reward_after_the_wait_time(
    service: DecisionService, store: Store, clock: Clock
) -> None:
    service.configure(service={"default_reward": -0.5, "reward_wait_seconds": 10.0})
    service.rank([], ACTIONS, event_id="quiet")
    clock.now = T0 + 9
    service.sweep()
    assert service.deployment().learner.state.learns == 0
    clock.now = T0 + 11
    service.sweep()
    learner = service.deployment().learner
    assert (learner.state.learns, learner.state.reward_sum) == (1, -0.5)
    service.flush()
    assert _row(store, "quiet")["outcome"] == "default"


def test_deferred_events_learn_only_after_activation(
    service: DecisionService, store: Store, clock: Clock
) -> None:
    service.rank([], ACTIONS, event_id="shown", defer_activation=True)
    service.rank([], ACTIONS, event_id="hidden", defer_activation=True)
    clock.now = T0 + 1
    service.reward("shown", 1.0)
    assert service.deployment().learner.state.learns == 0
    clock.now = T0 + 2
    service.activate("shown")
    assert service.deployment().learner.state.learns == 1
    clock.now = T0 + 10_000
    service.sweep()
    assert service.deployment().learner.state.learns == 1
    service.flush()
    assert _row(store, "hidden")["outcome"] == "inactive"
    with pytest.raises(ConflictError):
        clock.now = T0 + 10_001
        service.activate("hidden")


def test_validation_and_unknown_events(service: DecisionService) -> None:
    with pytest.raises(ValidationError):
        service.rank([], [])
    with pytest.raises(ValidationError):
        service.rank([], [{"id": f"a{i}"} for i in range(51)])
    with pytest.raises(ValidationError):
        service.rank([{"x": float("nan")}], ACTIONS)
    with pytest.raises(ValidationError):
        service.rank([], ACTIONS, excluded=["a", "b", "c"])
    service.rank([], ACTIONS, event_id="dup")
    with pytest.raises(ConflictError):
        service.rank([], ACTIONS, event_id="dup")
    with pytest.raises(ValidationError):
        service.reward("dup", float("nan"))
    with pytest.raises(NotFoundError):
        service.reward("never-ranked", 1.0)
    with pytest.raises(NotFoundError):
        service.rank([], ACTIONS, deployment="missing")


def test_multislot_fills_distinct_actions_and_rewards_per_slot(
    service: DecisionService, store: Store, clock: Clock
) -> None:
    slots = [{"id": "top", "baselineAction": "a"}, {"id": "side", "baselineAction": "b"}]
    event_id, chosen = service.rank_multislot([{"x": 1}], ACTIONS, slots)
    assert [s for s, _ in chosen] == ["top", "side"]
    assert len({a for _, a in chosen}) == 2
    clock.now = T0 + 1
    service.reward_slots(event_id, [("side", 1.0)])
    with pytest.raises(ValidationError):
        clock.now = T0 + 1
        service.reward(event_id, 1.0)
    with pytest.raises(NotFoundError):
        clock.now = T0 + 1
        service.reward_slots(event_id, [("nope", 1.0)])
    clock.now = T0 + 601
    service.sweep()
    service.flush()
    assert _row(store, event_id, "side")["outcome"] == "rewarded"
    assert _row(store, event_id, "top")["outcome"] == "default"


def test_apprentice_serves_the_baseline_and_reports_agreement(service: DecisionService) -> None:
    service.configure(service={"learning_mode": "Apprentice"})
    for i in range(60):
        result = service.rank([{"i": i % 2}], ACTIONS)
        assert result.reward_action_id == "a"
        assert dict(result.ranking)["a"] == 1.0
        service.reward(result.event_id, 1.0)
    apprentice = service.status()["apprentice"]
    assert apprentice["rounds"] == 60
    assert apprentice["agreement"] > 0.9


def test_learner_and_pending_events_survive_a_restart(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    first = DecisionService(store, tmp_path / "decisions", clock=clock)
    first.rank([], ACTIONS, event_id="saved")
    first.reward("saved", 1.0)
    first.close()  # saves the learner
    first = DecisionService(store, tmp_path / "decisions", clock=clock)
    first.rank([], ACTIONS, event_id="after-save")
    first.reward("after-save", 1.0)
    first.rank([], ACTIONS, event_id="open")
    first.flush()  # a crash now: the log is written, the learner file is not
    first._stop.set()

    second = DecisionService(store, tmp_path / "decisions", clock=clock)
    try:
        learner = second.deployment().learner
        assert learner.state.learns == 2  # one from the file, one relearned from the log
        clock.now = T0 + 1
        second.reward("open", 1.0)
        assert learner.state.learns == 3
    finally:
        second.close()


def test_rewards_are_learned_as_if_the_learner_had_seen_the_request(
    service: DecisionService,
) -> None:
    """The reward reuses the rank's encoding; the model equals learning the request directly."""
    reference = create_learner(LearnerConfig())
    for i in range(30):
        context = [{"i": i % 3}]
        result = service.rank(context, ACTIONS)
        chosen = [a["id"] for a in ACTIONS].index(result.reward_action_id)
        value = float(chosen == i % 3)
        service.reward(result.event_id, value)
        reference.learn(
            context, ACTIONS, chosen, dict(result.ranking)[result.reward_action_id], value
        )
    learner = service.deployment().learner
    assert isinstance(learner, LinearLearner) and isinstance(reference, LinearLearner)
    assert learner.state.learns == 30
    assert np.array_equal(learner.mean, reference.mean)
    assert np.array_equal(learner.var, reference.var)


def test_a_learner_changed_while_waiting_learns_the_request_itself(
    service: DecisionService, clock: Clock
) -> None:
    result = service.rank([{"x": 1}], ACTIONS, event_id="e1")
    service.configure(learner={"algorithm": "linear-ucb"})
    clock.now = T0 + 1
    service.reward("e1", 1.0)
    learner = service.deployment().learner
    reference = create_learner(LearnerConfig(algorithm="linear-ucb"))
    chosen = [a["id"] for a in ACTIONS].index(result.reward_action_id)
    reference.learn([{"x": 1}], ACTIONS, chosen, 0.5, 1.0)
    assert isinstance(learner, LinearLearner) and isinstance(reference, LinearLearner)
    assert learner.state.learns == 1
    assert np.array_equal(learner.mean, reference.mean)


@pytest.mark.parametrize("flush_between", [False, True])
def test_the_log_holds_the_final_state_whether_or_not_rank_and_reward_share_a_batch(
    service: DecisionService, store: Store, clock: Clock, flush_between: bool
) -> None:
    result = service.rank([{"x": 1}], ACTIONS, event_id="e1")
    if flush_between:
        service.flush()
    clock.now = T0 + 1
    service.reward("e1", 0.5)
    service.flush()
    row = _row(store, "e1")
    probability = dict(result.ranking)[result.reward_action_id]
    assert (row["outcome"], row["reward"], row["rewards"], row["reward_at"]) == (
        "rewarded",
        0.5,
        1,
        T0 + 1,
    )
    assert row["learned_seq"] == 1 and row["learned_at"] == T0 + 1
    chosen = row["chosen_index"]
    assert isinstance(chosen, int)
    assert row["probabilities"][chosen] == probability  # type: ignore[index]
    assert row["request"] == {"context": [{"x": 1}], "actions": ACTIONS}


def test_late_rewards_are_logged_not_learned_even_before_the_row_is_written(
    service: DecisionService, store: Store, clock: Clock
) -> None:
    service.configure(service={"reward_wait_seconds": 10.0})
    service.rank([], ACTIONS, event_id="late")
    clock.now = T0 + 11
    with pytest.raises(ConflictError):
        service.reward("late", 1.0)
    learner = service.deployment().learner
    assert (learner.state.learns, learner.state.reward_sum) == (1, 0.0)  # the default reward
    service.flush()
    row = _row(store, "late")
    assert (row["outcome"], row["late_rewards"], row["reward"]) == ("default", 1, None)


def test_generated_event_ids_are_unique_hex(service: DecisionService) -> None:
    ids = {service.rank([], ACTIONS).event_id for _ in range(600)}
    assert len(ids) == 600
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_pending_decisions_share_one_private_copy_of_the_actions(
    service: DecisionService, store: Store
) -> None:
    """Memory per pending event stays small, and a caller changing its dicts changes nothing."""
    mine = [{"id": a["id"], "features": [dict(f) for f in a["features"]]} for a in ACTIONS]
    service.rank([{"x": 1}], mine, event_id="e1")
    service.rank([{"x": 2}], [dict(a) for a in mine], event_id="e2")
    pending = service.deployment().pending
    first, second = pending["e1"].decisions[""], pending["e2"].decisions[""]
    assert first.actions[0] is second.actions[0] and first.actions[0] is not mine[0]
    mine[0]["features"][0]["kind"] = "changed"
    service.flush()
    assert _row(store, "e1")["request"] == {"context": [{"x": 1}], "actions": ACTIONS}
    assert first.actions == ACTIONS
