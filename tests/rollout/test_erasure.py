"""Erasure and retention on SQLite and PostgreSQL: what goes, what stays, what serving forgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, insert, select

import dataflywheel as dfw
from dataflywheel import insight
from dataflywheel.decide.tables import decisions
from dataflywheel.errors import NotFoundError, TrainingError
from dataflywheel.insight import tables as insight_tables
from dataflywheel.label.tables import label_queue, regression_cases
from dataflywheel.learn.snapshot import take_snapshot
from dataflywheel.loop.erasure import erase, subject_hash
from dataflywheel.store import schema
from dataflywheel.store.retention import apply_retention

DAY = 86_400.0
START = 1_700_000_000.0
GREEDY = {"name": "greedy"}  # no exploration: lists are exactly the model's (or popularity's)


@pytest.fixture
def greedy(store_url: str) -> Iterator[dfw.Flywheel]:
    handle = dfw.open(store_url, exploration=GREEDY)
    try:
        yield handle
    finally:
        handle.close()


def two_worlds(wheel: dfw.Flywheel, users: int = 40, items: int = 30) -> None:
    """Even users click items a*, odd users items b*; eight clicks each."""
    rng = np.random.default_rng(0)
    wheel.upsert_items(
        [{"id": f"a{i}"} for i in range(items // 2)] + [{"id": f"b{i}"} for i in range(items // 2)]
    )
    events = [
        {
            "user_id": f"u{u}",
            "item_id": f"{'ab'[u % 2]}{i}",
            "type": "click",
            "timestamp": START + u * 100 + n,
        }
        for u in range(users)
        for n, i in enumerate(rng.choice(items // 2, size=8, replace=False))
    ]
    assert wheel.track_many(events).accepted == len(events)


def count(wheel: dfw.Flywheel, table: object, *where: object) -> int:
    with wheel.store.read() as conn:
        statement = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int(conn.execute(statement.where(*where)).scalar_one())  # type: ignore[arg-type]


def idx_of(wheel: dfw.Flywheel, kind: str, key: str) -> int:
    found = wheel.store.lookup_ids(kind, [key])  # type: ignore[arg-type]
    return found[key]


def consumed(wheel: dfw.Flywheel, user_id: str) -> set[str]:
    u, e, i = schema.users.c, schema.events.c, schema.items.c
    with wheel.store.read() as conn:
        rows = conn.execute(
            select(i.item_id)
            .select_from(schema.events.join(schema.users, u.idx == e.user_idx))
            .join(schema.items, i.idx == e.item_idx)
            .where(u.user_id == user_id)
        )
        return {r for (r,) in rows}


def test_erasing_a_user_removes_every_row_that_names_them(greedy: dfw.Flywheel) -> None:
    wheel = greedy
    two_worlds(wheel)
    wheel.recommend("u0", 5)
    wheel.recommend("u1", 5)
    wheel.flush()
    user = idx_of(wheel, "users", "u0")
    insight.refresh(wheel.store)
    with wheel.store.write() as conn:
        for n, (user_id, item_id) in enumerate([("u0", "a1"), ("u1", "b1")]):
            conn.execute(
                insert(label_queue).values(
                    dedup_key=f"k{n}",
                    task="t",
                    trigger_id="x",
                    user_id=user_id,
                    item_id=item_id,
                    priority=1,
                    reason="r",
                    status="pending",
                    created_at=START,
                )
            )
            conn.execute(
                insert(regression_cases).values(
                    suite="s", user_id=user_id, item_id=item_id, relevant=True, created_at=START
                )
            )
        # Decisions whose context names u0 as a user go; "u0" as any other value stays.
        for n, context in enumerate(
            [{"user": {"id": "u0"}}, [{"userId": "u0"}], {"colour": "u0"}, {"user": "u1"}]
        ):
            conn.execute(
                insert(decisions).values(
                    deployment="d",
                    event_id=f"e{n}",
                    slot_id="",
                    ts=START,
                    mode="online",
                    request={"context": context, "actions": [{"id": "u0"}]},
                    action_ids=["u0"],
                    probabilities=[1.0],
                    chosen_index=0,
                    chosen_id="u0",
                    deferred=False,
                    rewards=0,
                    late_rewards=0,
                    outcome="pending",
                )
            )
    before = wheel.stats()
    own_events = count(wheel, schema.events, schema.events.c.user_idx == user)
    assert own_events == 8
    assert count(wheel, insight_tables.user_days, insight_tables.user_days.c.user_idx == user)

    done = erase(wheel.store, "users", "u0", actor="cli")

    after = wheel.stats()
    assert after["events"] == before["events"] - own_events
    assert after["users"] == before["users"] - 1
    assert after["impressions"] == before["impressions"] - 1
    assert wheel.store.get_entity("users", "u0") is None
    assert wheel.store.get_entity("users", "u1") is not None
    assert count(wheel, label_queue) == count(wheel, regression_cases) == 1
    assert count(wheel, label_queue, label_queue.c.user_id == "u0") == 0
    assert count(wheel, regression_cases, regression_cases.c.user_id == "u0") == 0
    assert count(wheel, decisions) == 2
    for table in (insight_tables.user_days, insight_tables.user_spans):
        assert count(wheel, table, table.c.user_idx == user) == 0
        assert count(wheel, table) > 0
    assert done.deleted["events"] == own_events
    assert done.deleted["decision_events"] == 2

    with wheel.store.read() as conn:
        rows = conn.execute(select(schema.audit_log)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor"], row["action"]) == ("cli", "erase_user")
    assert row["subject"] == f"user:sha256:{subject_hash('u0')}"
    assert row["detail"]["deleted"]["events"] == own_events
    assert "u0" not in json.dumps(dict(row))


def test_unknown_subjects_are_not_found_and_not_audited(wheel: dfw.Flywheel) -> None:
    with pytest.raises(NotFoundError) as caught:
        erase(wheel.store, "users", "nobody", actor="cli")
    assert caught.value.details["field"] == "user_id"
    assert count(wheel, schema.audit_log) == 0


def test_an_erased_dense_id_is_never_given_to_a_new_subject(wheel: dfw.Flywheel) -> None:
    # Models trained before an erasure keep what they learned under its dense id.
    wheel.upsert_items([{"id": "old"}, {"id": "last"}])
    wheel.track(user_id="first", item_id="old", type="click", timestamp=START)
    wheel.track(user_id="second", item_id="last", type="click", timestamp=START + 1)
    item, user = idx_of(wheel, "items", "last"), idx_of(wheel, "users", "second")
    assert item > idx_of(wheel, "items", "old") and user > idx_of(wheel, "users", "first")
    erase(wheel.store, "items", "last", actor="cli")
    erase(wheel.store, "users", "second", actor="cli")
    wheel.track(user_id="newcomer", item_id="new", type="click", timestamp=START + 2)
    assert idx_of(wheel, "items", "new") > item
    assert idx_of(wheel, "users", "newcomer") > user


def test_the_next_snapshot_leaves_the_user_out(wheel: dfw.Flywheel) -> None:
    two_worlds(wheel)
    user = idx_of(wheel, "users", "u2")
    first = take_snapshot(wheel.store, record=False)  # fills this process's copy of the log
    assert (first.events.user_idx == user).sum() == 8
    erase(wheel.store, "users", "u2", actor="cli")
    second = take_snapshot(wheel.store, record=False)
    assert not (second.events.user_idx == user).any()
    assert len(second.events) == len(first.events) - 8
    version = wheel.train("itemknn", budget=5)
    assert version["status"] == "champion"


@pytest.fixture
def trained(greedy: dfw.Flywheel) -> dfw.Flywheel:
    two_worlds(greedy)
    assert greedy.train("itemknn", budget=5)["status"] == "champion"
    return greedy


def test_an_erased_user_gets_a_cold_start_list_at_once(trained: dfw.Flywheel) -> None:
    had = consumed(trained, "u0")
    before = trained.recommend("u0", 30)
    assert before["model_version"] is not None
    assert not had & {i["item_id"] for i in before["items"]}

    erase(trained.store, "users", "u0", actor="cli")
    trained.serving.forget_deleted()

    after = trained.recommend("u0", 30)
    stranger = trained.recommend("someone-new", 30)
    assert after["model_version"] is None
    assert after["policy"] == stranger["policy"]
    assert [i["item_id"] for i in after["items"]] == [i["item_id"] for i in stranger["items"]]
    assert had <= {i["item_id"] for i in after["items"]}  # nothing is excluded as consumed
    # The returning user is a new row; the erased history does not come back.
    trained.track(user_id="u0", item_id="b3", type="click")
    back = {i["item_id"] for i in trained.recommend("u0", 30)["items"]}
    assert "b3" not in back
    assert had <= back


def test_an_erased_item_leaves_every_list_at_once(trained: dfw.Flywheel) -> None:
    users = [f"u{n}" for n in range(40)]
    assert any("a1" in {i["item_id"] for i in r["items"]} for r in trained.recommend_many(users))
    trained.recommend("u0", 5)
    trained.flush()
    with trained.store.read() as conn:
        logged = conn.execute(select(schema.impressions.c.item_ids)).scalars().all()
    assert any("a1" in items for items in logged)

    done = erase(trained.store, "items", "a1", actor="cli")
    trained.serving.forget_deleted()

    for answer in trained.recommend_many(users, 30):
        assert "a1" not in {i["item_id"] for i in answer["items"]}
    assert trained.store.get_entity("items", "a1") is None
    assert done.deleted["events"] > 0
    with trained.store.read() as conn:
        logged = conn.execute(select(schema.impressions.c.item_ids)).scalars().all()
    assert not any("a1" in items for items in logged)
    assert any(None in items for items in logged)  # the slot stays, its id is gone
    with pytest.raises(NotFoundError):
        trained.similar("a1")


def test_another_process_forgets_at_its_next_check(trained: dfw.Flywheel, store_url: str) -> None:
    """The erasing process (the CLI here) is not the serving one: the audit row reaches it."""
    assert trained.recommend("u0", 5)["model_version"] is not None
    trained.recommend("u1", 5)
    with dfw.open(store_url) as other:
        erase(other.store, "users", "u0", actor="cli")
        erase(other.store, "items", "b2", actor="cli")
    trained.serving.invalidate()  # the periodic check is due (as it is after a second)
    assert trained.recommend("u0", 5)["model_version"] is None
    for user in ("u1", "u3", "u5"):
        assert "b2" not in {i["item_id"] for i in trained.recommend(user, 30)["items"]}


def test_the_command_erases_and_reports_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(url) as wheel:
        wheel.track(user_id="u1", item_id="i1", type="click")
        wheel.track(user_id="u2", item_id="i1", type="click")
    flywheel = str(Path(sys.executable).with_name("flywheel"))
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [flywheel, "users", "erase", "u1", "--db", url, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["kind"] == "user"
    assert report["deleted"]["events"] == 1
    missing = subprocess.run(
        [flywheel, "items", "erase", "nope", "--db", url],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 2
    assert "unknown item 'nope'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    with dfw.open(url) as wheel:
        assert wheel.stats()["events"] == 1


def test_retention_deletes_exactly_the_old_events(wheel: dfw.Flywheel) -> None:
    now = START + 100 * DAY
    ages = [1, 10, 29.9, 30.1, 45, 90]  # days
    wheel.track_many(
        {"user_id": f"u{n}", "item_id": "i", "type": "click", "timestamp": now - age * DAY}
        for n, age in enumerate(ages)
    )
    with wheel.store.write() as conn:
        for n, age in enumerate(ages):
            conn.execute(
                insert(schema.impressions).values(
                    recommendation_id=f"r{n}",
                    user_id="u",
                    ts=now - age * DAY,
                    policy="p",
                    item_ids=[],
                    scores=[],
                    propensities=[],
                )
            )
    assert apply_retention(wheel.store, None, now) == {}
    deleted = apply_retention(wheel.store, 30, now)
    assert deleted == {"events": 3, "impressions": 3}
    with wheel.store.read() as conn:
        kept = sorted(conn.execute(select(schema.events.c.ts)).scalars())
        audit_rows = conn.execute(select(schema.audit_log.c.action)).scalars().all()
    assert kept == sorted(now - age * DAY for age in ages if age < 30)
    assert count(wheel, schema.impressions) == 3
    assert audit_rows == ["retention"]
    assert apply_retention(wheel.store, 30, now) == {"events": 0, "impressions": 0}


def test_the_loop_applies_the_retention_setting(store_url: str) -> None:
    now = START + 100 * DAY
    with dfw.open(store_url, retention_days=7, retrain_min_new_events=10**9) as wheel:
        wheel.track_many(
            {"user_id": "u", "item_id": "i", "type": "click", "timestamp": now - age * DAY}
            for age in (1, 8)
        )
        with pytest.raises(TrainingError):  # too little data to train, after the retention ran
            wheel.run_loop_once(now)
        assert wheel.stats()["events"] == 1
