"""Request context at serving: the declared fields (setting ``context_fields``) filter the
catalogue through item attributes (``context_filters``) and re-rank the base model's top
candidates with the contextual re-ranker that passed its off-policy check.

The active re-ranker is the one in the newest ``context_rerank`` audit row (written by
``flywheel context-rerank fit``); a row whose check refused it, or ``flywheel context-rerank
off``, switches re-ranking off. Every serving process reads new rows at most every
``CHECK_SECONDS``. With no declared fields nothing here runs (the default).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.config import Settings
from dataflywheel.learn.context_rerank import ContextReranker, adjust
from dataflywheel.learn.context_rerank import context_values as read_values
from dataflywheel.serve.catalog import Catalog
from dataflywheel.store import schema
from dataflywheel.store.store import Store

ACTION = "context_rerank"
"""The audit action of a fit's verdict (and of switching re-ranking off)."""
CHECK_SECONDS = 5.0


class ContextRanking:
    """Validates a request's declared context, turns it into filters and re-ranks."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.fields = tuple(settings.context_fields)
        self.filters = dict(settings.context_filters)
        self._active: ContextReranker | None = None
        self._seen = 0
        self._checked_at = -np.inf
        self._lock = threading.Lock()
        # (field, value) pairs -> (catalogue key list, size, per-item lifts): categories change
        # rarely. The list itself, not its id(): a full read replaces it, and a freed list's
        # id() can be given to the next one; new items extend it in place (the size changes).
        self._lifts: dict[tuple[tuple[str, str], ...], tuple[list[str | None], int, np.ndarray]]
        self._lifts = {}

    def values(self, context: Mapping[str, Any] | None) -> dict[str, str]:
        """The request's declared context values; a bad one is a ValidationError naming it."""
        return read_values(context, self.fields)

    def item_filter(
        self, values: Mapping[str, str], item_filter: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """``item_filter`` with an attribute equality for each context filter whose field the
        request carries (an attribute the request's own filter names keeps the request's)."""
        wanted = {attr: values[name] for name, attr in self.filters.items() if name in values}
        if not wanted:
            return item_filter
        merged = dict(item_filter or {})
        own = merged.get("attributes")
        merged["attributes"] = {**wanted, **own} if isinstance(own, dict) else wanted
        return merged

    def active(self) -> ContextReranker | None:
        """The re-ranker that passed its check, re-read from the audit log when due."""
        if not self.fields:
            return None
        now = time.monotonic()
        if now - self._checked_at < CHECK_SECONDS or not self._lock.acquire(blocking=False):
            return self._active
        try:
            self._checked_at = now
            a = schema.audit_log.c
            with self.store.read() as conn:
                row = conn.execute(
                    select(a.id, a.detail)
                    .where(a.id > self._seen, a.action == ACTION)
                    .order_by(a.id.desc())
                    .limit(1)
                ).first()
            if row is not None:
                self._seen = int(row.id)
                found = row.detail.get("reranker") if row.detail.get("active") else None
                self._active = None if found is None else ContextReranker.from_dict(found)
                self._lifts = {}
            return self._active
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        """Read the audit log on the next request (after this process changed the re-ranker)."""
        self._checked_at = -np.inf

    def rerank(
        self,
        catalog: Catalog,
        scores: np.ndarray,
        candidates: np.ndarray,
        values: Mapping[str, str],
    ) -> bool:
        """Adjust ``scores`` of ``candidates`` in place; whether anything applied."""
        reranker = self.active()
        if reranker is None or not values or candidates.size == 0:
            return False
        pairs = reranker.known(values)
        if not pairs:
            return False
        cached = self._lifts.get(pairs)
        if cached is None or cached[0] is not catalog.keys or cached[1] != catalog.size:
            masks = {
                name: catalog.allowed({"categories": [name]})
                for name in {c for f, v in pairs for c in reranker.lifts[f][v]}
            }
            lifted = reranker.item_lifts(pairs, masks, catalog.size)
            cached = self._lifts[pairs] = (catalog.keys, catalog.size, lifted)
        lifts = np.zeros(candidates.size)
        known = candidates < cached[2].size  # items created since the lifts were computed
        lifts[known] = cached[2][candidates[known]]
        scores[candidates] = adjust(scores[candidates], lifts)
        return True
