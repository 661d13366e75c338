"""The catalogue's content vectors for training: the items' categories and attributes, turned
into vectors by the same :class:`~dataflywheel.learn.content.ContentIndex` serving uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import scipy.sparse as sp
from sqlalchemy import select

from dataflywheel.learn.content import ContentIndex
from dataflywheel.store import schema
from dataflywheel.store.store import Store

__all__ = ["content_vectors", "read_item_content"]


def content_vectors(
    records: Iterable[tuple[int, Any, Any]], n_items: int, text_weight: float = 0.5
) -> sp.csr_matrix | None:
    """Content vectors of items ``0..n_items-1`` from ``(idx, categories, attributes)``
    records (items without a record: zero rows); None when no item has any content."""
    index = ContentIndex(text_weight)
    index.update(records, complete=True)
    vectors = index.matrix(n_items)[:n_items]
    return vectors if vectors.nnz else None


def read_item_content(store: Store, n_items: int) -> sp.csr_matrix | None:
    """The content vectors of the store's items ``0..n_items-1`` (a snapshot's items); None
    when the catalogue has no metadata, so no model would learn anything from it."""
    i = schema.items.c
    with store.read() as conn:
        rows = conn.execute(select(i.idx, i.categories, i.attributes).where(i.idx < n_items)).all()
    return content_vectors(
        ((row.idx, row.categories, row.attributes) for row in rows),
        n_items,
        store.settings.content_text_weight,
    )
