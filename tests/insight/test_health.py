"""The health verdict on hand-built stores that mimic each flywheel situation."""

from __future__ import annotations

from pathlib import Path

import pytest

import dataflywheel as dfw
from dataflywheel.insight import health
from insight.handbuilt import fill
from insight.scenarios import build

SIZE = {"days": 24, "users": 150}
EXPECTED = {
    "flywheel": ("spinning", None),
    "weak-signal": ("stalled", 1),
    "no-learning": ("stalled", 2),
    "imperceptible": ("stalled", 3),
    "inelastic": ("stalled", 4),
}


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_verdict_per_situation(scenario: str, tmp_path: Path) -> None:
    with dfw.open(f"sqlite:///{tmp_path / 'h.db'}") as wheel:
        build(wheel.store, scenario, **SIZE)
        doc = health(wheel.store)
    assert (doc["verdict"], doc["stalled_at"]) == EXPECTED[scenario]
    assert [c["id"] for c in doc["conditions"]] == [1, 2, 3, 4]
    for condition in doc["conditions"]:
        assert condition["status"] in ("pass", "warn", "fail")
        assert condition["next_action"] and condition["name"]
        assert 0.0 <= condition["confidence"] <= 1.0
    stalled = EXPECTED[scenario][1]
    if stalled is not None:
        assert all(c["status"] == "pass" for c in doc["conditions"][: stalled - 1])
    evidence = [c["evidence"] for c in doc["conditions"]]
    if scenario == "weak-signal":
        assert evidence[0]["strong_events"] == 0
        assert set(evidence[0]["event_types"]) == {"click", "impression"}
    if scenario == "no-learning":
        assert evidence[1]["models"] == 1 and evidence[1]["coverage"] < 0.1
        assert evidence[1]["data_lag_days"] >= 20
    if scenario == "imperceptible":
        assert evidence[1]["retrained_on_new_data"] >= 4
        assert evidence[2]["comparison"]["diff_low"] <= 0
    if scenario == "inelastic":
        assert evidence[3]["response_to_ctr"]["next_day_dau"]["rho"] < 0.3


@pytest.mark.postgres
def test_spinning_on_postgres(postgres_url: str) -> None:
    with dfw.open(postgres_url) as wheel:
        build(wheel.store, "flywheel", **SIZE)
        doc = health(wheel.store)
    assert doc["verdict"] == "spinning"


def test_too_little_data_is_insufficient(small: dfw.Flywheel) -> None:
    doc = health(small.store)
    assert doc["verdict"] == "insufficient-data" and doc["stalled_at"] is None
    assert "7 events" in doc["reason"]
    assert doc["conditions"][1]["status"] == "fail"  # no model was ever trained


def test_empty_store(sqlite_url: str) -> None:
    with dfw.open(sqlite_url) as wheel:
        doc = health(wheel.store)
    assert doc["verdict"] == "insufficient-data" and doc["window"] is None


def test_reads_only_the_store(tmp_path: Path) -> None:
    """The same facts give the same verdict, whatever store file they are in."""
    verdicts = []
    for name in ("x", "y"):
        with dfw.open(f"sqlite:///{tmp_path / name}.db") as wheel:
            fill(wheel.store)
            verdicts.append(health(wheel.store)["conditions"])
    assert verdicts[0] == verdicts[1]
