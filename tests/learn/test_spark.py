"""Training on the real Apache Spark (local[2]): the model it registers is served like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dataflywheel as dfw
from serve.test_recommend import two_worlds

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def _flywheel(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLYWHEEL, *args, "--db", db],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLYWHEEL_LOOP_ENABLED": "false"},
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_spark_als_is_registered_and_served_with_fold_in(postgres_url: str) -> None:
    with dfw.open(postgres_url, seed=0) as wheel:
        two_worlds(wheel)

    done = _flywheel(
        "train", "--engine", "spark", "--spark-master", "local[2]", "--json", db=postgres_url
    )
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout)
    assert version["name"] == "ials" and version["status"] == "champion"
    metrics = version["metrics"]
    assert metrics["engine"] == "spark" and metrics["spark_master"] == "local[2]"
    assert set(metrics["stages_seconds"]) >= {"spark start and read", "fit on all events"}
    assert metrics["ndcg@10"] > 0

    with dfw.open(postgres_url, seed=0, exploration={"name": "greedy"}) as wheel:
        # Users of the "a" world get "a" items from Spark's factors...
        items = [row["item_id"] for row in wheel.recommend("u0", k=5)["items"]]
        assert items and all(item.startswith("a") for item in items), items
        # ...and a brand-new user is folded in from their first clicks, without a retrain.
        wheel.track_many(
            [{"user_id": "newcomer", "item_id": f"b{i}", "type": "click"} for i in range(4)]
        )
        items = [row["item_id"] for row in wheel.recommend("newcomer", k=5)["items"]]
        assert items and all(item.startswith("b") for item in items), items


def test_spark_engine_refuses_other_models_before_starting_spark(tmp_path: Path) -> None:
    done = _flywheel(
        "train", "--engine", "spark", "--model", "bpr", db=f"sqlite:///{tmp_path / 'f.db'}"
    )
    assert done.returncode == 2
    assert "the spark engine trains ials only" in done.stderr
    assert "Traceback" not in done.stderr
