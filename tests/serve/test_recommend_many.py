"""Batch serving: ``recommend_many`` answers exactly as one ``recommend`` per user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import dataflywheel as dfw
from dataflywheel.errors import ValidationError
from dataflywheel.store import schema
from serve.test_recommend import START, two_worlds

USERS = ["u0", "u1", "u2", "u3", "u0", "newcomer"]
EXPLORING = {"name": "epsilon_greedy", "epsilon": 0.3}


def _trained(url: str) -> dfw.Flywheel:
    wheel = dfw.open(url, seed=7, exploration=EXPLORING)
    two_worlds(wheel)
    wheel.train("itemknn", budget=5)
    return wheel


def _lists(answers: list[dict[str, object]]) -> list[list[tuple[str, float]]]:
    return [
        [(i["item_id"], round(i["propensity"], 12)) for i in a["items"]]  # type: ignore[attr-defined,index]
        for a in answers
    ]


def test_batch_equals_one_call_per_user_with_the_same_seed(tmp_path: Path) -> None:
    """Same seed, same exploration draws: the batch and the single calls serve the same lists,
    with the same propensities, and log one impression per answer at each request's time."""
    times = [START + 10 * n for n in range(len(USERS))]
    with _trained(f"sqlite:///{tmp_path / 'one.db'}") as one:
        singles = [one.recommend(u, 5, now=t) for u, t in zip(USERS, times, strict=True)]
    with _trained(f"sqlite:///{tmp_path / 'many.db'}") as many:
        batch = many.recommend_many(USERS, 5, now=times)
        many.flush()
        with many.store.read() as conn:
            logged = conn.execute(
                select(schema.impressions.c.recommendation_id, schema.impressions.c.ts)
            ).all()
    assert _lists(batch) == _lists(singles)
    assert [a["model_version"] for a in batch] == [a["model_version"] for a in singles]
    assert batch[-1]["model_version"] is None  # the newcomer gets the cold-start list
    assert len({a["recommendation_id"] for a in batch}) == len(USERS)
    assert {(a["recommendation_id"], t) for a, t in zip(batch, times, strict=True)} == {
        (rec, ts) for rec, ts in logged
    }


def test_batch_sees_events_tracked_before_it(wheel: dfw.Flywheel) -> None:
    """Fold-in holds for batches: a user's clicks just tracked are excluded from their list."""
    two_worlds(wheel)
    wheel.train("itemknn", budget=5)
    before = wheel.recommend_many(["u0", "u1"], 3)
    clicked = [item["item_id"] for item in before[0]["items"]]
    wheel.track_many([{"user_id": "u0", "item_id": i, "type": "click"} for i in clicked])
    after = wheel.recommend_many(["u0", "u1"], 3)
    assert not set(clicked) & {item["item_id"] for item in after[0]["items"]}


@pytest.mark.parametrize(
    ("user_ids", "now", "field"),
    [
        ("u0", None, "user_ids"),
        (["u0", ""], None, "user_ids[1]"),
        (["u0", 3], None, "user_ids[1]"),
        (["u0", "u1"], [START], "now"),
    ],
)
def test_bad_batches_name_the_field(
    wheel: dfw.Flywheel, user_ids: object, now: object, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        wheel.recommend_many(user_ids, 5, now=now)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert wheel.stats()["impressions"] == 0
