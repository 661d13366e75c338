"""The last value document, kept beside the model artifacts and keyed by the store watermark.

A measure retrains the model many times, so ``GET /v1/value`` answers from this file and
computes only when asked (``refresh``) or when there is none; a refresh at an unchanged
watermark reuses a complete document. The file name carries a digest of the store URL: stores
on PostgreSQL share one default artifacts directory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from dataflywheel.learn.registry import Registry
from dataflywheel.learn.value.assess import assess, check_budget
from dataflywheel.store.store import Store


def cache_path(store: Store, artifacts: Path) -> Path:
    """``value-<digest of the store URL>.json`` in the artifacts directory."""
    digest = hashlib.sha256(store.settings.db.encode()).hexdigest()[:16]
    return Path(artifacts) / f"value-{digest}.json"


def load(path: Path) -> dict[str, Any] | None:
    """The cached document, or None when absent or unreadable (it is then recomputed)."""
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, dict) and "watermark" in document else None


def save(path: Path, document: dict[str, Any]) -> None:
    """Write atomically, so a concurrent reader sees the old document or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_bytes(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY))
    os.replace(scratch, path)


def value_report(
    store: Store,
    registry: Registry,
    artifacts: Path,
    *,
    refresh: bool = False,
    budget: float = 120.0,
) -> dict[str, Any]:
    """The cached document (``refresh`` false), or a fresh one unless the cache is complete and
    at the store's current watermark. ``cached`` and ``stale`` say which was given."""
    check_budget(budget)
    path = cache_path(store, artifacts)
    latest = store.latest_event_id()
    cached = load(path)
    if cached is not None:
        current = cached["watermark"] == latest
        if not refresh or (current and cached.get("complete")):
            return {**cached, "cached": True, "stale": not current}
    document = assess(store, registry, budget=budget)
    save(path, document)
    return {**document, "cached": False, "stale": False}
