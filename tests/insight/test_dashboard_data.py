"""The dashboard's data document on a store whose rollups were never refreshed."""

from __future__ import annotations

from pathlib import Path

import dataflywheel as dfw
from dataflywheel.insight.dashboard import dashboard_data
from insight.scenarios import build


def test_the_first_load_has_every_series(tmp_path: Path) -> None:
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}") as wheel:
        build(wheel.store, "flywheel", days=10, users=80)
        document = dashboard_data(wheel.store)  # no KPI or health call before it
    days = {row["date"] for row in document["kpis"]["rows"]}
    slots = document["slots_by_day"]
    assert slots, "model vs exploration slots were empty on the first load"
    assert {row["date"] for row in slots} <= days
    assert sum(row["model_slots"] for row in slots) > 0
