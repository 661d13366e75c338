"""Serving through the Python API and HTTP: fold-in, filters, cold start, impressions, errors."""

from __future__ import annotations

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.errors import NotFoundError, ValidationError

DAY = 86_400.0
START = 1_700_000_000.0


def two_worlds(wheel: dfw.Flywheel, users: int = 60, items: int = 40, seed: int = 0) -> None:
    """Users u0..: even ones like items a*, odd ones like items b*; items carry a category."""
    rng = np.random.default_rng(seed)
    wheel.upsert_items(
        [{"id": f"a{i}", "categories": ["action"]} for i in range(items // 2)]
        + [{"id": f"b{i}", "categories": ["drama"]} for i in range(items // 2)]
    )
    events = []
    for u in range(users):
        world = "a" if u % 2 == 0 else "b"
        picks = rng.choice(items // 2, size=8, replace=False)
        for n, i in enumerate(picks):
            events.append(
                {
                    "user_id": f"u{u}",
                    "item_id": f"{world}{i}",
                    "type": "click",
                    "timestamp": START + u * 100 + n,
                }
            )
    assert wheel.track_many(events).accepted == len(events)


@pytest.fixture
def trained(wheel: dfw.Flywheel) -> dfw.Flywheel:
    two_worlds(wheel)
    version = wheel.train("itemknn", budget=5)
    assert version["status"] == "champion"
    return wheel


def worlds(answer: dict[str, object]) -> list[str]:
    return [item["item_id"][0] for item in answer["items"]]  # type: ignore[index]


def ranked_worlds(answer: dict[str, object]) -> list[str]:
    """Worlds of the slots the model ranked; exploration's random slots (propensity ε / rest)
    are left out, so the check does not fail when a few slots were explored."""
    items = answer["items"]
    return [i["item_id"][0] for i in items if i["propensity"] > 0.5]  # type: ignore[attr-defined]


def test_a_click_moves_the_next_list_toward_similar_items(trained: dfw.Flywheel) -> None:
    newcomer = trained.recommend("stranger", 6)
    assert newcomer["model_version"] is None  # cold start: popular items
    trained.track(user_id="stranger", item_id="b3", type="like")
    trained.track(user_id="stranger", item_id="b5", type="click")
    after = trained.recommend("stranger", 6)
    assert after["model_version"] == "v1"
    ranked = ranked_worlds(after)
    assert len(ranked) >= 3 and set(ranked) == {"b"}, worlds(after)
    assert {"b3", "b5"}.isdisjoint(i["item_id"] for i in after["items"])


def test_known_users_get_their_world_and_consumed_items_are_excluded(trained: dfw.Flywheel) -> None:
    answer = trained.recommend("u0", 5)
    ranked = ranked_worlds(answer)
    assert len(ranked) >= 3 and set(ranked) == {"a"}, worlds(answer)
    with trained.store.read() as conn:
        seen = {
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT i.item_id FROM events e JOIN items i ON i.idx = e.item_idx "
                "JOIN users u ON u.idx = e.user_idx WHERE u.user_id = 'u0'"
            )
        }
    assert seen.isdisjoint(i["item_id"] for i in answer["items"])
    again = trained.recommend("u0", 30, exclude_consumed=False)
    assert seen & {i["item_id"] for i in again["items"]}


def test_filters_hidden_items_and_exclusions(trained: dfw.Flywheel) -> None:
    only_drama = trained.recommend("u0", 5, filter={"categories": ["drama"]})
    assert worlds(only_drama) == ["b"] * 5
    trained.upsert_items([{"id": f"a{i}", "hidden": True} for i in range(20)])
    trained.serving.catalog.refresh(force=True)
    visible = trained.recommend("u0", 10, exclude=["b1", "b2"])
    assert all(item["item_id"][0] == "b" for item in visible["items"])
    assert {"b1", "b2"}.isdisjoint(i["item_id"] for i in visible["items"])
    nothing = trained.recommend("u0", 5, filter={"categories": ["opera"]})
    assert nothing["items"] == []


def test_every_answer_is_logged_with_propensities(trained: dfw.Flywheel) -> None:
    answers = [trained.recommend(f"u{u}", 4) for u in range(10)]
    trained.flush()
    with trained.store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT recommendation_id, model_version, policy FROM impressions"
        ).all()
    logged = {row[0]: row for row in rows}
    for answer in answers:
        assert logged[answer["recommendation_id"]][1] == "v1"
        assert all(0 < item["propensity"] <= 1 for item in answer["items"])


def test_bad_requests_are_clear_errors(trained: dfw.Flywheel) -> None:
    for k in (0, -1, 10_000):
        with pytest.raises(ValidationError) as error:
            trained.recommend("u0", k)
        assert error.value.field == "k"
    with pytest.raises(ValidationError):
        trained.recommend("u0", 5, filter={"colour": "red"})
    with pytest.raises(NotFoundError):
        trained.similar("nope")
    similar = trained.similar("a1", 5)
    assert worlds(similar).count("a") >= 4


def test_corrupt_champion_artifact_falls_back(trained: dfw.Flywheel, store_url: str) -> None:
    import shutil
    from pathlib import Path

    champion = trained.registry.champion()
    assert champion is not None
    shutil.rmtree(champion["artifact"])
    Path(champion["artifact"]).mkdir()
    (Path(champion["artifact"]) / "model.json").write_text("{not json")
    with dfw.open(store_url) as fresh:
        answer = fresh.recommend("u0", 5)
        assert answer["model_version"] is None  # popularity fallback, not a crash
        assert len(answer["items"]) == 5


def test_rollback_and_promote(trained: dfw.Flywheel) -> None:
    second = trained.train("popularity", budget=5)
    assert second["status"] == "candidate"
    trained.promote(second["version"])
    assert trained.registry.champion()["version"] == second["version"]  # type: ignore[index]
    restored = trained.rollback("worse online")
    assert restored["version"] == "v1"
    history = [(t["version"], t["to"]) for t in trained.registry.transitions()]
    assert history[-2:] == [(second["version"], "retired"), ("v1", "champion")]


def test_requests_do_not_wait_for_a_periodic_check_running_elsewhere(
    trained: dfw.Flywheel,
) -> None:
    import threading
    import time

    service = trained.serving
    assert trained.recommend("u0", 3)["model_version"] == "v1"
    answers: list[dict[str, object]] = []
    # Another thread is in the middle of the champion and catalogue checks (both due).
    with service._lock, service.catalog._lock:
        service._checked_at = time.monotonic() - 60
        service.catalog._loaded_at = time.monotonic() - 60
        assert not service.fresh()
        worker = threading.Thread(target=lambda: answers.append(trained.recommend("u1", 3)))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive()
    assert answers[0]["model_version"] == "v1"
    service.refresh()
    assert service.fresh()


def test_items_first_named_by_events_are_served_at_once(wheel: dfw.Flywheel) -> None:
    """The catalogue is read before any item exists; events then create items in this
    process, and the next request sees them without waiting for the periodic refresh."""
    assert wheel.recommend("u0", 3)["items"] == []
    wheel.track_many([{"user_id": "u0", "item_id": f"n{i}", "type": "click"} for i in range(2)])
    wheel.track_many([{"user_id": "u1", "item_id": f"n{i}", "type": "click"} for i in range(5)])
    served = {item["item_id"] for item in wheel.recommend("u0", 3)["items"]}
    assert served and served <= {"n2", "n3", "n4"}
