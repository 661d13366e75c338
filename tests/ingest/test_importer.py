"""`flywheel import events` rejects, row by row, what one of the two stores could not hold."""

from __future__ import annotations

from pathlib import Path

import dataflywheel as dfw
from dataflywheel.ingest.importer import EventImporter


def test_nul_characters_are_rejected_per_row(wheel: dfw.Flywheel, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,user_id,item_id,recommendation_id,value\n"
        "e1,u1,i1,,4\n"
        "e2,u\x00,i2,,3\n"
        "e3,u3,i\x00,,5\n"
        "e\x004,u4,i4,,1\n"
        "e5,u5,i5,r\x00,2\n"
        "e6,u6,i6,r6,2\n"
    )
    result = EventImporter(wheel.store).run(path, default_type="rating")
    assert (result.accepted, result.rejected) == (2, 4)
    assert [(e["row"], e["field"]) for e in result.errors] == [
        (2, "user_id"),
        (3, "item_id"),
        (4, "event_id"),
        (5, "recommendation_id"),
    ]
    assert wheel.stats()["events"] == 2
