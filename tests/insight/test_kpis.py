"""KPIs: exact values on the hand-built store, grains, ranges, errors and incremental rollups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

import dataflywheel as dfw
from dataflywheel.errors import ValidationError
from dataflywheel.insight import kpis, refresh
from dataflywheel.insight.rollups import active_windows, gini, user_day_activity
from dataflywheel.store import schema
from insight.handbuilt import DAY, EVENTS, B, fill


def test_day_rows_are_exact(small_any: dfw.Flywheel) -> None:
    doc = kpis(small_any.store)
    assert doc["grain"] == "day"
    assert (doc["from"], doc["to"]) == ("2024-01-01", "2024-01-04")
    rows = {r["date"]: r for r in doc["rows"]}
    assert list(rows) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    first = rows["2024-01-01"]
    assert {k: first[k] for k in ("dau", "wau", "mau", "new_users", "returning_users")} == {
        "dau": 2, "wau": 2, "mau": 2, "new_users": 2, "returning_users": 0
    }  # fmt: skip
    assert first["sessions"] == 3
    assert first["avg_session_seconds"] == pytest.approx(33.3)
    assert (first["events"], first["strong_events"], first["late_events"]) == (4, 1, 1)
    assert first["strong_share"] == 0.25
    assert first["ctr"] is None and first["impressions"] == 0
    second = rows["2024-01-02"]
    assert (second["dau"], second["wau"], second["mau"], second["new_users"]) == (2, 3, 3, 1)
    assert (second["sessions"], second["avg_session_seconds"], second["events"]) == (2, 0.0, 2)
    assert second["strong_events"] == 1  # the rating
    assert (second["impressions"], second["engaged_impressions"], second["ctr"]) == (2, 1, 0.5)
    assert (second["served_items"], second["coverage"]) == (3, 1.0)
    assert second["gini"] == pytest.approx(1 / 6, abs=1e-4)
    gap = rows["2024-01-03"]
    assert (gap["dau"], gap["events"], gap["wau"], gap["mau"], gap["stickiness"]) == (
        0, 0, 3, 3, 0.0
    )  # fmt: skip
    last = rows["2024-01-04"]
    assert (last["dau"], last["new_users"], last["returning_users"], last["mau"]) == (1, 0, 1, 3)
    assert (last["impressions"], last["ctr"]) == (1, 0.0)


def test_retention_and_summary(small: dfw.Flywheel) -> None:
    doc = kpis(small.store)
    cohorts = {c["cohort"]: c for c in doc["retention"]}
    assert cohorts["2024-01-01"] == {
        "cohort": "2024-01-01", "users": 2, "day_1": 0.5, "day_7": None, "day_14": None,
        "day_30": None,
    }  # fmt: skip
    assert cohorts["2024-01-02"]["users"] == 1 and cohorts["2024-01-02"]["day_1"] == 0.0
    summary = doc["summary"]
    assert (summary["events"], summary["strong_events"], summary["new_users"]) == (7, 2, 3)
    assert (summary["impressions"], summary["ctr"], summary["served_items"]) == (3, 0.3333, 3)
    # Slots over the range: i1 three times, i2 and i3 once each.
    assert summary["gini"] == pytest.approx(gini([3, 1, 1]), abs=1e-4)


def test_week_and_month_grains(small: dfw.Flywheel) -> None:
    (week,) = kpis(small.store, grain="week")["rows"]
    assert week["date"] == "2024-01-01" and week["days"] == 4
    assert (week["dau"], week["events"], week["strong_events"], week["sessions"]) == (
        1.25, 7, 2, 6
    )  # fmt: skip
    assert (week["new_users"], week["mau"]) == (3, 3)
    (month,) = kpis(small.store, grain="month")["rows"]
    assert month["date"] == "2024-01-01" and month["events"] == 7


def test_ranges_are_inclusive_and_clipped(small: dfw.Flywheel) -> None:
    rows = kpis(small.store, "2024-01-02", "2024-01-03")["rows"]
    assert [r["date"] for r in rows] == ["2024-01-02", "2024-01-03"]
    assert [r["date"] for r in kpis(small.store, "2023-12-01", "2024-01-01")["rows"]] == [
        "2024-01-01"
    ]
    future = kpis(small.store, "2030-01-01", "2030-02-01")
    assert future["rows"] == [] and "2024-01-01" in future["note"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("2024-13-01", None, "day"), "from"),
        ((None, "yesterday", "day"), "to"),
        (("2024-01-05", "2024-01-01", "day"), "from"),
        ((None, None, "hour"), "grain"),
    ],
)
def test_bad_arguments_name_the_field(
    small: dfw.Flywheel, args: tuple[str | None, str | None, str], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        kpis(small.store, *args)
    assert caught.value.field == field


def test_empty_store(sqlite_url: str) -> None:
    with dfw.open(sqlite_url) as wheel:
        doc = kpis(wheel.store)
    assert doc["rows"] == [] and doc["span"] is None and "no events" in doc["note"]


def test_incremental_refresh_matches_a_full_build(wheel: dfw.Flywheel, tmp_path: Path) -> None:
    fill(wheel.store, EVENTS[:4], served=False)
    first = refresh(wheel.store)
    assert first.event_days == [19_723]
    assert refresh(wheel.store).event_days == []  # nothing new, nothing redone
    fill(wheel.store, EVENTS[4:])  # includes a later day and the impressions
    assert refresh(wheel.store).event_days == [19_723, 19_724, 19_726]
    with dfw.open(f"sqlite:///{tmp_path / 'full.db'}") as full:
        fill(full.store)
        expected = kpis(full.store)
    assert kpis(wheel.store)["rows"] == expected["rows"]
    assert kpis(wheel.store)["retention"] == expected["retention"]


def test_a_late_event_moves_a_user_into_an_earlier_cohort(small: dfw.Flywheel) -> None:
    kpis(small.store)
    late = [("e8", 3, "i1", "click", 1.0, 0, 50, 3 * 86_400.0, None)]  # u3, on day B
    fill(small.store, late, served=False)
    doc = kpis(small.store)
    cohorts = {c["cohort"]: c["users"] for c in doc["retention"]}
    assert cohorts == {"2024-01-01": 3}
    assert doc["rows"][1]["new_users"] == 0 and doc["rows"][0]["new_users"] == 3


def test_sessions_and_bots_per_user_day() -> None:
    users = np.array([7, 7, 7, 9, 9])
    ts = np.array([0.0, 1_000.0, 5_000.0, 10.0, 20.0])
    user, events, sessions, seconds, bot = user_day_activity(users, ts, 1_800.0)
    assert user.tolist() == [7, 9] and events.tolist() == [3, 2]
    assert sessions.tolist() == [2, 1] and seconds.tolist() == [1_000.0, 10.0]
    assert not bot.any()
    burst = user_day_activity(np.zeros(200, dtype=int), np.linspace(0, 50, 200), 1_800.0)
    assert burst[4].tolist() == [True]


def test_windows_count_each_user_once_and_churn_after_30_days() -> None:
    users = np.array([1, 1, 2])
    days = np.array([0, 3, 1])
    w = active_windows(users, days, 0, 40, last_known=40)
    assert w["wau"][:10].tolist() == [1, 2, 2, 2, 2, 2, 2, 2, 1, 1]
    assert w["mau"][29:35].tolist() == [2, 2, 1, 1, 0, 0]
    assert np.flatnonzero(w["churned"]).tolist() == [31, 33]
    assert w["retained_next"].sum() == 0


# Supply ---------------------------------------------------------------------------------------
# Items a and b are created on day B (c1 at 0 s, c2 at 3 600 s), c on B+1 (c1), "old" 30 days
# before. a is first shown at 600 s, b at 7 200 s (3 600 s after its creation); a first gets a
# strong signal at 800 s, b at 13 600 s (10 000 s); c is never shown.
SUPPLY_ITEMS = [
    ("a", 0.0, "c1"),
    ("b", 3_600.0, "c2"),
    ("c", DAY, "c1"),
    ("old", -30 * DAY, None),
]
SUPPLY_EVENTS = [
    # (item, type, seconds since B) — clicks on a, b, c are young; on "old" they are not
    ("a", "click", 700.0),
    ("a", "like", 800.0),
    ("old", "click", 900.0),
    ("b", "rating", 13_600.0),
    ("a", "like", DAY + 10.0),  # a later strong signal does not move the first one
    ("b", "click", DAY + 50.0),
    ("a", "click", DAY + 55.0),
    ("old", "click", DAY + 60.0),
]
SUPPLY_SERVED = [("r1", 600.0, ["a", "old"]), ("r2", 7_200.0, ["b", "a"]), ("r3", DAY, ["a"])]


def _fill_supply(wheel: dfw.Flywheel) -> None:
    base = B * DAY
    wheel.upsert_items(
        [
            {
                "id": item,
                "created_at": base + at,
                "attributes": {"creator_id": creator} if creator else {},
            }
            for item, at, creator in SUPPLY_ITEMS
        ]
    )
    wheel.track_many(
        [
            {"event_id": f"s{n}", "user_id": "u1", "item_id": item, "type": kind,
             "timestamp": base + seconds}
            for n, (item, kind, seconds) in enumerate(SUPPLY_EVENTS)
        ]
    )  # fmt: skip
    with wheel.store.write() as conn:
        conn.execute(
            insert(schema.impressions),
            [
                {"recommendation_id": rid, "user_idx": 1, "user_id": "u1", "ts": base + at,
                 "model_version": "v1", "policy": "champion", "item_ids": items,
                 "scores": [1.0] * len(items), "propensities": [1.0] * len(items)}
                for rid, at, items in SUPPLY_SERVED
            ],
        )  # fmt: skip


def test_supply_kpis_are_exact(wheel: dfw.Flywheel) -> None:
    _fill_supply(wheel)
    doc = kpis(wheel.store, "2024-01-01", "2024-01-02")
    first, second = doc["rows"]
    assert (first["new_items"], first["active_creators"], first["clicks"]) == (2, 2, 2)
    assert first["new_item_click_share"] == 0.5
    assert (second["new_items"], second["active_creators"], second["clicks"]) == (1, 1, 3)
    assert second["new_item_click_share"] == pytest.approx(0.6667)
    assert doc["supply"] == {
        "young_item_days": 7,
        "items_created": 3,
        "creators": 2,
        "items_shown": 2,
        "items_with_strong_signal": 2,
        "median_seconds_to_first_impression": 2_100.0,
        "median_seconds_to_first_strong_signal": 5_400.0,
        "clicks": 5,
        "new_item_click_share": 0.6,
    }
    (week,) = kpis(wheel.store, grain="week")["rows"]
    assert (week["new_items"], week["clicks"], week["new_item_click_share"]) == (3, 5, 0.6)
    assert week["active_creators"] == 1.5


def test_supply_firsts_follow_late_events_incrementally(wheel: dfw.Flywheel) -> None:
    _fill_supply(wheel)
    kpis(wheel.store)
    # A strong signal on b received late but made at 5 000 s (1 400 s after b's creation).
    wheel.track_many(
        [{"event_id": "late", "user_id": "u2", "item_id": "b", "type": "like",
          "timestamp": B * DAY + 5_000.0}]
    )  # fmt: skip
    supply = kpis(wheel.store, "2024-01-01", "2024-01-02")["supply"]
    assert supply["median_seconds_to_first_strong_signal"] == (800.0 + 1_400.0) / 2
