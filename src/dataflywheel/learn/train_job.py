"""One training run: snapshot, search or fit, register; also the loop's isolated training child.

:func:`train` is what ``flywheel train`` and :meth:`dataflywheel.Flywheel.train` call. Run as
``python -m dataflywheel.learn.train_job --model M --budget S``, it trains once in its own
process (the loop's ``isolated`` mode: a crash or a memory spike of the fit cannot take the
server down) and prints the registered version as one JSON document on stdout, as
``flywheel train --json`` does. The store and artifact URLs come from the environment
(``FLYWHEEL_DB``, ``FLYWHEEL_ARTIFACTS``), never from argv: they may hold passwords, and a
command line is readable by every local user.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from dataflywheel.config import Settings, load_settings
from dataflywheel.errors import FlywheelError, ValidationError
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.trainer import Trainer
from dataflywheel.store.store import Store


def train(
    store: Store,
    registry: Registry,
    trainer: Trainer,
    settings: Settings,
    model: str = "auto",
    budget: float | None = None,
    *,
    now: float | None = None,
    engine: str | None = None,
    spark_master: str | None = None,
) -> dict[str, Any]:
    """Register one model version (the first becomes champion); ``engine="spark"`` fits
    implicit ALS in Spark MLlib instead of the local search."""
    engine = engine or settings.train_engine
    if engine == "spark":
        if model not in ("auto", "ials"):
            raise ValidationError(
                f"the spark engine trains ials only, not {model!r}", field="model"
            )
        from dataflywheel.learn.spark import SparkTrainer

        return SparkTrainer(
            store,
            registry,
            settings.artifacts_dir(),
            master=spark_master or settings.spark_master,
            driver_memory=settings.spark_driver_memory,
        ).train(now=now)
    if engine == "local":
        return trainer.train(
            model, settings.train_budget_seconds if budget is None else budget, now=now
        )
    raise ValidationError(f"unknown engine {engine!r}; choose local or spark", field="engine")


def main(argv: list[str] | None = None) -> int:
    """The child's entry point: 0 and the version on stdout, else 1 and the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m dataflywheel.learn.train_job")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--budget", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        store = Store(settings)
        try:
            registry = Registry(store)
            trainer = Trainer(store, registry, settings.artifacts_dir())
            version = train(store, registry, trainer, settings, args.model, args.budget)
        finally:
            store.close()
    except FlywheelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(orjson.dumps(version, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
