"""One value-of-data measure in its own process: the loop's scheduled run.

``python -m dataflywheel.learn.value.job --budget S`` measures the store named by
``FLYWHEEL_DB`` (never argv: it may hold a password), refreshes the cache that ``GET /v1/value``
and the health verdict read, and prints ``{"watermark", "complete"}`` on stdout. A measure
retrains the model many times; in a child process it cannot slow the server's requests.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from dataflywheel.config import load_settings
from dataflywheel.errors import FlywheelError
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.value.cache import value_report
from dataflywheel.store.store import Store


def main(argv: list[str] | None = None) -> int:
    """0 and a summary on stdout, else 1 and the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m dataflywheel.learn.value.job")
    parser.add_argument("--budget", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        store = Store(settings)
        try:
            document = value_report(
                store, Registry(store), settings.artifacts_dir(), refresh=True, budget=args.budget
            )
        finally:
            store.close()
    except FlywheelError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    summary = {"watermark": document["watermark"], "complete": document["complete"]}
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
