"""The loop's scheduled refit of the contextual re-ranker, in its own process.

``python -m dataflywheel.loop.context_job --now T --field device [--field page ...]`` fits the
re-ranker on the store named by ``FLYWHEEL_DB`` (never argv: it may hold a password), checks it
off-policy and records the verdict (:func:`dataflywheel.loop.context_gate.fit_and_check`, actor
``loop``), then prints the verdict's summary on stdout. The replay scores every held-out list
with the champion: tens of seconds of CPU that a server's requests must not wait on, so the
child also runs at a lower priority. The fields travel in argv because settings given to the
parent as keyword arguments never reach the child's environment or settings file.

:func:`last_check` and :func:`newest_impression_ts` are the two reads the loop's schedule needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import orjson
from sqlalchemy import select

from dataflywheel.config import load_settings
from dataflywheel.errors import FlywheelError
from dataflywheel.serve.context_rerank import ACTION
from dataflywheel.store import schema
from dataflywheel.store.store import Store

SUMMARY = ("verdict", "active", "reason", "champion", "evaluation", "audit_id")


def last_check(store: Store) -> tuple[float, dict[str, Any]] | None:
    """The time and detail of the newest ``context_rerank`` audit row (a fit's verdict or a
    switch-off by hand), None before the first."""
    a = schema.audit_log.c
    with store.read() as conn:
        row = conn.execute(
            select(a.ts, a.detail).where(a.action == ACTION).order_by(a.id.desc()).limit(1)
        ).first()
    return None if row is None else (float(row.ts), dict(row.detail))


def newest_impression_ts(store: Store) -> float | None:
    """The time of the last logged impression: one primary-key read (there is no index on the
    time; lists are logged in time order up to a commit's lag)."""
    i = schema.impressions.c
    with store.read() as conn:
        found = conn.execute(select(i.ts).order_by(i.id.desc()).limit(1)).scalar()
    return None if found is None else float(found)


def main(argv: list[str] | None = None) -> int:
    """0 and the verdict's summary on stdout, else 1 and the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m dataflywheel.loop.context_job")
    parser.add_argument("--now", type=float, required=True)
    parser.add_argument("--field", action="append", default=[])
    parser.add_argument("--holdout", type=float, default=0.5)
    args = parser.parse_args(argv)
    os.nice(10)
    from dataflywheel.learn.registry import Registry
    from dataflywheel.loop.context_gate import fit_and_check

    try:
        settings = load_settings(context_fields=args.field)
        store = Store(settings)
        try:
            report = fit_and_check(
                store, Registry(store), settings, holdout=args.holdout, now=args.now, actor="loop"
            )
        finally:
            store.close()
    except FlywheelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    summary = {key: report[key] for key in SUMMARY if key in report}
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
