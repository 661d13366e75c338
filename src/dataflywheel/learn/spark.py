"""Training on Apache Spark: implicit ALS fitted by Spark MLlib, served like any local model.

The snapshot's weighted events go to Parquet (the hand-over format any Spark cluster reads);
Spark sums each (user, item) pair, fits ALS with implicit preferences and hands back the item
factors. They become an ordinary ``ials`` artifact: same registry, same gates, and the same
fold-in at serving time (each user is re-solved from their current row against these factors).
Needs the ``spark`` extra (``pip install 'dataflywheel[spark]'``) and Java 17.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataflywheel.errors import TrainingError
from dataflywheel.learn.models.ials import IALS
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import Snapshot, take_snapshot
from dataflywheel.learn.trainer import HOLDOUT_FRACTION, MIN_EVENTS, Holdout
from dataflywheel.store.store import Store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyspark.sql import DataFrame, SparkSession

__all__ = ["ALS_PARAMS", "SparkTrainer", "spark_session"]

# Spark's implicit ALS scales its regularisation by each row's count (ALS-WR) and weighs
# confidence as 1 + alpha * r; these values were chosen on ml-latest-small's temporal holdout
# (benchmarks/bench_spark.py).
ALS_PARAMS: dict[str, Any] = {"factors": 64, "regularization": 0.1, "alpha": 10.0, "iterations": 15}
# Fold-in at serving time runs in the `implicit` library, whose regularisation is not scaled.
FOLD_IN_PARAMS: dict[str, Any] = {"regularization": 0.05, "alpha": 10.0}


@contextmanager
def spark_session(master: str, driver_memory: str = "4g") -> Iterator[SparkSession]:
    """A Spark session for one training run (no web UI, quiet logs), stopped afterwards."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise TrainingError(
            "the spark engine needs the `spark` extra: pip install 'dataflywheel[spark]'"
        ) from exc
    builder = (
        SparkSession.builder.master(master)
        .appName("dataflywheel-train")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: Java missing, bad master URL...
        raise TrainingError(f"could not start Spark ({master}): {exc}") from exc
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@dataclass
class Stages:
    """Seconds spent per stage of a Spark training run, in order."""

    seconds: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.monotonic)

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


def _export(snapshot: Snapshot, holdout: Holdout, path: Path) -> None:
    """The snapshot's weighted events as Parquet, with the holdout flag, for Spark to read."""
    ev = snapshot.events
    table = pa.table(
        {
            "user": pa.array(ev.user_idx, pa.int32()),
            "item": pa.array(ev.item_idx, pa.int32()),
            "weight": pa.array(ev.weight, pa.float64()),
            "heldout": pa.array(holdout.valid),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _fit_item_factors(
    events: DataFrame, n_items: int, params: dict[str, Any], seed: int
) -> np.ndarray:
    """Fit Spark MLlib's implicit ALS on summed positive weights; items Spark never saw get
    zero factors (they score 0 for everyone, like an item without data in a local model)."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    pairs = (
        events.groupBy("user", "item")
        .agg(F.sum("weight").alias("confidence"))
        .where(F.col("confidence") > 0)
    )
    als = ALS(
        rank=params["factors"],
        maxIter=params["iterations"],
        regParam=params["regularization"],
        alpha=params["alpha"],
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="confidence",
        seed=seed,
    )
    found = als.fit(pairs).itemFactors.toArrow()
    factors = np.zeros((n_items, params["factors"]), dtype=np.float32)
    ids = found.column("id").to_numpy()
    flat = found.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    factors[ids] = flat.reshape(len(ids), params["factors"])
    return factors


class SparkTrainer:
    """Snapshot → Parquet → Spark ALS (holdout fit, then full fit) → an ``ials`` version."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        artifacts: Path,
        *,
        master: str,
        driver_memory: str = "4g",
    ) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.master = master
        self.driver_memory = driver_memory

    def train(self, *, now: float | None = None) -> dict[str, Any]:
        """Fit on Spark, score on the same temporal holdout as local models, register."""
        now = time.time() if now is None else now
        stages = Stages()
        snapshot = take_snapshot(self.store, now=now)
        if snapshot.n_events < MIN_EVENTS:
            raise TrainingError(
                f"only {snapshot.n_events} item events in the store; need {MIN_EVENTS} to train"
            )
        holdout = Holdout.of(snapshot)
        stages.done("snapshot")
        work = self.artifacts / f"spark-{snapshot.id}"
        source = work / "events.parquet"
        _export(snapshot, holdout, source)
        stages.done("export")
        seed = self.store.settings.seed or 0
        params = {**ALS_PARAMS, **FOLD_IN_PARAMS, "seed": seed}
        try:
            with spark_session(self.master, self.driver_memory) as spark:
                events = spark.read.parquet(str(source)).cache()
                stages.done("spark start and read")
                trial = _fit_item_factors(
                    events.where("NOT heldout"), snapshot.n_items, ALS_PARAMS, seed
                )
                stages.done("fit on the training part")
                metrics = holdout.score(
                    IALS.from_item_factors(trial, **params), holdout.train_matrix()
                )
                stages.done("holdout evaluation")
                factors = _fit_item_factors(events, snapshot.n_items, ALS_PARAMS, seed)
                stages.done("fit on all events")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        model = IALS.from_item_factors(factors, **params)
        artifact = self.artifacts / f"{snapshot.id}-ials-spark"
        model.save(artifact)
        stages.done("save")
        fit_seconds = sum(stages.seconds.values())
        version = self.registry.register(
            name=model.name,
            params={"model": model.params(), "matrix": {}},
            metrics={
                **metrics,
                "holdout_users": int(np.unique(holdout.events.user_idx[holdout.valid]).size),
                "holdout_fraction": HOLDOUT_FRACTION,
                "engine": "spark",
                "spark_master": self.master,
                "stages_seconds": stages.seconds,
            },
            snapshot_id=snapshot.id,
            artifact=str(artifact),
            fit_seconds=fit_seconds,
            created_at=now,
        )
        if self.registry.champion() is None:
            version = self.registry.promote(version["version"], "first model", now)
        return version
