"""Export of curated feedback: JSON Lines and Parquet hold the same rows (labels, and a preference
pair for every correction), read back unchanged, from the Python API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import dataflywheel as dfw
from dataflywheel.cli import app
from dataflywheel.errors import ValidationError

T0 = 1.7e9


@pytest.fixture
def flywheel(store_url: str) -> Iterator[dfw.Flywheel]:
    with dfw.open(store_url) as handle:
        queue, labels = handle.loop.rollout.queue, handle.loop.rollout.labels
        queue.add_trigger(
            {
                "name": "dislikes",
                "task": "relevance",
                "when": {"field": "type", "op": "eq", "value": "dislike"},
            }
        )
        handle.track_many(
            [
                {"user_id": "u1", "item_id": "i1", "type": "dislike", "timestamp": T0},
                {"user_id": "u2", "item_id": "i2", "type": "dislike", "timestamp": T0 + 1},
            ]
        )
        queue.scan(now=T0 + 5)
        first, second = queue.pending()
        labels.submit([{"id": first["id"], "value": -0.5}], now=T0 + 10)
        labels.submit(
            [
                {"id": second["id"], "value": -1, "correction": "i7", "suite": "hard"},
                {"task": "relevance", "user_id": "u3", "item_id": "i3", "value": 1},
            ],
            now=T0 + 20,
        )
        yield handle


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return list(pq.read_table(path).to_pylist())
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_curated_rows_hold_labels_and_preference_pairs(flywheel: dfw.Flywheel) -> None:
    rows = flywheel.loop.rollout.labels.curated()
    keys = ("kind", "user_id", "item_id", "value", "chosen", "rejected")
    summary = [tuple(row[key] for key in keys) for row in rows]
    assert summary == [
        ("label", "u1", "i1", -0.5, None, None),
        ("label", "u2", "i2", -1, None, None),
        ("preference", "u2", None, None, "i7", "i2"),
        ("label", "u3", "i3", 1, None, None),
    ]
    assert rows[0]["reason"] == "trigger dislikes" and rows[0]["labelled_at"] == T0 + 10
    assert rows[3]["reason"] == "labelled directly"
    assert {r["task"] for r in rows} == {"relevance"}
    assert flywheel.loop.rollout.labels.suites() == {
        "hard": [
            {"user_id": "u2", "item_id": "i2", "relevant": False},
            {"user_id": "u2", "item_id": "i7", "relevant": True},
        ]
    }


@pytest.mark.parametrize("name", ["curated.jsonl", "curated.parquet"])
def test_exports_round_trip(flywheel: dfw.Flywheel, tmp_path: Path, name: str) -> None:
    labels = flywheel.loop.rollout.labels
    path = tmp_path / name
    assert labels.export(path) == 4
    assert _read(path) == labels.curated()


def test_format_can_be_forced_and_must_be_known(flywheel: dfw.Flywheel, tmp_path: Path) -> None:
    labels = flywheel.loop.rollout.labels
    path = tmp_path / "curated.out"
    labels.export(path, "parquet")
    assert pq.read_table(path).num_rows == 4
    with pytest.raises(ValidationError) as caught:
        labels.export(tmp_path / "curated.csv", "csv")
    assert caught.value.field == "format"
    assert not (tmp_path / "curated.csv").exists()


def test_an_empty_store_exports_an_empty_file(sqlite_url: str, tmp_path: Path) -> None:
    with dfw.open(sqlite_url) as wheel:
        labels = wheel.loop.rollout.labels
        for name in ("empty.jsonl", "empty.parquet"):
            assert labels.export(tmp_path / name) == 0
            assert _read(tmp_path / name) == []


def test_cli_export(flywheel: dfw.Flywheel, store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "curated.parquet"
    result = CliRunner().invoke(
        app, ["labels", "export", "-o", str(path), "--db", store_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"rows": 4, "path": str(path)}
    assert _read(path) == flywheel.loop.rollout.labels.curated()
