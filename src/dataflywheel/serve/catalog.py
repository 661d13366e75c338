"""The serving process's view of the item catalogue: ids, hidden flags, categories, attributes.

Filters become boolean masks over dense item ids; masks per category and per attribute value are
built once per refresh, so a filtered request costs a few vectorised ANDs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select

from dataflywheel.errors import ValidationError
from dataflywheel.learn.content import ContentIndex
from dataflywheel.store import schema
from dataflywheel.store.store import Store

REFRESH_SECONDS = 5.0


class Catalog:
    """Item metadata indexed by dense id, refreshed from the store every few seconds."""

    def __init__(self, store: Store, text_weight: float = 0.5) -> None:
        self.store = store
        # Content vectors follow the catalogue: items are re-vectorised only when they change.
        self.content = ContentIndex(text_weight)
        self._lock = threading.Lock()
        self._loaded_at = -np.inf
        self.keys: list[str | None] = [None]
        self.index: dict[str, int] = {}
        self.visible = np.zeros(1, dtype=bool)
        self._categories: dict[str, np.ndarray] = {}
        self._attributes: list[dict[str, Any]] = [{}]
        self._attribute_masks: dict[tuple[str, str], np.ndarray] = {}
        self._version: tuple[Any, ...] = ()
        self._created = 0  # the store's ids_created("items") when last read

    def invalidate(self) -> None:
        """Re-read on the next request (after an upsert in this process), not at the next check."""
        self._loaded_at = -np.inf

    def fresh(self, now: float) -> bool:
        """Whether the periodic check would skip the store at monotonic time ``now``."""
        return now - self._loaded_at < REFRESH_SECONDS

    def refresh(self, force: bool = False) -> None:
        """Reload the catalogue if items changed, checked at most every few seconds; items
        created by this process's events are appended at once."""
        created = self.store.ids_created("items")
        if not force and created == self._created and self.fresh(time.monotonic()):
            return
        # A check already running in another thread is not waited for; a first load, a forced
        # one, or one after invalidate() (a change made by this process) is.
        if not self._lock.acquire(blocking=force or self._loaded_at == -np.inf):
            return
        try:
            if force or not self._version or not self.fresh(time.monotonic()):
                self._load(force)
            else:
                self._add_new_items()
            self._created = created
        finally:
            self._lock.release()

    def _add_new_items(self) -> None:
        """Append the items created since the last read (dense ids only grow): a few rows,
        where a full read of a large catalogue on every request naming a new item would not
        do. Changes to known items arrive with the next periodic check."""
        i = schema.items.c
        with self.store.read() as conn:
            rows = conn.execute(
                select(i.idx, i.item_id, i.hidden, i.categories, i.attributes).where(
                    i.idx >= len(self.keys)
                )
            ).all()
        if not rows:
            return
        size = max(row.idx for row in rows) + 1
        grow = size - len(self.keys)
        # Readers look names up by the ids of the visibility mask: names first, mask last.
        self.keys.extend([None] * grow)
        self._attributes.extend({} for _ in range(grow))
        visible = np.concatenate([self.visible, np.zeros(grow, dtype=bool)])
        masks = {
            name: np.concatenate([mask, np.zeros(grow, dtype=bool)])
            for name, mask in self._categories.items()
        }
        for row in rows:
            self._put(row, self.keys, visible, self._attributes, masks)
            self.index[row.item_id] = row.idx
        self.content.update((row.idx, row.categories, row.attributes) for row in rows)
        self._categories, self._attribute_masks = masks, {}
        self.visible = visible

    @staticmethod
    def _put(
        row: Any,
        keys: list[str | None],
        visible: np.ndarray,
        attributes: list[dict[str, Any]],
        masks: dict[str, np.ndarray],
    ) -> None:
        keys[row.idx] = row.item_id
        visible[row.idx] = not row.hidden
        attributes[row.idx] = row.attributes or {}
        for category in row.categories or []:
            if str(category) not in masks:
                masks[str(category)] = np.zeros(visible.size, dtype=bool)
            masks[str(category)][row.idx] = True

    def _load(self, force: bool) -> None:
        """Read the catalogue (or only its version, when unchanged) from the store."""
        i = schema.items.c
        with self.store.read() as conn:
            version = tuple(
                conn.execute(
                    select(func.count(i.idx), func.max(i.idx), func.max(i.updated_at))
                ).one()
            )
            if not force and version == self._version:
                self._loaded_at = time.monotonic()
                return
            rows = conn.execute(
                select(i.idx, i.item_id, i.hidden, i.categories, i.attributes)
            ).all()
        size = max((row.idx for row in rows), default=0) + 1
        keys: list[str | None] = [None] * size
        visible = np.zeros(size, dtype=bool)
        attributes: list[dict[str, Any]] = [{} for _ in range(size)]
        masks: dict[str, np.ndarray] = {}
        for row in rows:
            self._put(row, keys, visible, attributes, masks)
        self.content.update(((row.idx, row.categories, row.attributes) for row in rows), True)
        self.keys, self.visible, self._attributes = keys, visible, attributes
        self.index = {key: idx for idx, key in enumerate(keys) if key is not None}
        self._categories, self._attribute_masks = masks, {}
        self._version = version
        self._loaded_at = time.monotonic()

    @property
    def size(self) -> int:
        return len(self.keys)

    def allowed(
        self, item_filter: Mapping[str, Any] | None, exclude: Sequence[str] = ()
    ) -> np.ndarray:
        """Visible items matching ``{"categories": [...any of...], "attributes": {k: v}}``."""
        mask = self.visible.copy()
        if item_filter:
            unknown = set(item_filter) - {"categories", "attributes"}
            if unknown:
                raise ValidationError(
                    "filter takes 'categories' and 'attributes'", field=f"filter.{min(unknown)}"
                )
            wanted = item_filter.get("categories")
            if wanted is not None:
                if not isinstance(wanted, list) or not all(isinstance(c, str) for c in wanted):
                    raise ValidationError("must be a list of strings", field="filter.categories")
                any_of = np.zeros(self.size, dtype=bool)
                for category in wanted:
                    if category in self._categories:
                        any_of |= self._categories[category]
                mask &= any_of
            attributes = item_filter.get("attributes")
            if attributes is not None:
                if not isinstance(attributes, dict):
                    raise ValidationError("must be an object", field="filter.attributes")
                for key, value in attributes.items():
                    mask &= self._attribute_mask(str(key), value)
        for key in exclude:
            idx = self.index.get(key)
            if idx is not None:
                mask[idx] = False
        return mask

    def _attribute_mask(self, key: str, value: Any) -> np.ndarray:
        cache_key = (key, repr(value))
        mask = self._attribute_masks.get(cache_key)
        if mask is None:
            mask = np.fromiter(
                (attrs.get(key) == value for attrs in self._attributes), dtype=bool, count=self.size
            )
            self._attribute_masks[cache_key] = mask
        return mask
