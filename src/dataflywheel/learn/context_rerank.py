"""A contextual re-ranker learned from the impression log: how much more (or less) often the
items of each category are clicked under each value of a declared request context field.

For every declared field (setting ``context_fields``) and every (value, item category) cell the
click rate per shown item is estimated by self-normalised inverse propensity weighting over the
logged positions (weight one over the logged propensity), so the cells are read as if the items
had been shown uniformly, not where the logging policy (the champion plus exploration) chose
to put them. Each cell's rate is shrunk toward its category's rate over all values of the field
(empirical Bayes: a beta prior whose strength is the method-of-moments fit of the spread of the
cells beyond their sampling noise), and the re-ranker keeps the log ratio of the two. At serving
the ratios of the request's values are averaged over an item's categories, summed over fields,
clipped to [-1, 1] and added, times a bound, to the base scores of the top candidates
(:func:`adjust`). docs/context.md says what is used and how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sqlalchemy import select

from dataflywheel.errors import ValidationError
from dataflywheel.store import schema
from dataflywheel.store.store import Store

__all__ = [
    "STRENGTH",
    "TOP_N",
    "ContextReranker",
    "LoggedLists",
    "adjust",
    "context_values",
    "fit",
    "read_lists",
]

TOP_N = 100
"""Only the base model's best ``TOP_N`` candidates are re-ranked; the rest stay below them."""
STRENGTH = 0.5
"""The largest adjustment, as a share of the spread of the top candidates' base scores."""
MAX_LISTS = 200_000
"""The newest served lists read for fitting and evaluation."""
_CHUNK = 900
NOT_POSITIONAL = ("team_draft", "shadow_explore")
"""Policies whose logged propensities are not each position's probability (interleaving, and
whole lists drawn for a shadow candidate): their lists are left out."""


def context_values(
    context: Mapping[str, Any] | None, fields: Sequence[str], *, strict: bool = True
) -> dict[str, str]:
    """The request's values of the declared ``fields`` as category labels (strings as they are,
    numbers and booleans as their JSON text). With ``strict``, a declared field holding a list,
    an object or null is a ValidationError naming it; otherwise it is ignored (logged requests)."""
    if not context or not fields:
        return {}
    if not isinstance(context, Mapping):
        if strict:
            raise ValidationError("must be an object", field="context")
        return {}
    out: dict[str, str] = {}
    for name in fields:
        if name not in context:
            continue
        value = context[name]
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, int | float) and np.isfinite(value):
            out[name] = repr(value)
        elif strict:
            raise ValidationError(
                "a declared context field must be a string, number or boolean",
                field=f"context.{name}",
            )
    return out


@dataclass(frozen=True)
class ContextReranker:
    """Log click-rate ratios per declared field, value and item category (0: no evidence)."""

    fields: tuple[str, ...]
    lifts: dict[str, dict[str, dict[str, float]]]
    prior_strength: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "lifts": self.lifts,
            "prior_strength": self.prior_strength,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextReranker:
        return cls(
            tuple(data["fields"]),
            {f: {v: dict(c) for v, c in values.items()} for f, values in data["lifts"].items()},
            dict(data.get("prior_strength", {})),
        )

    def known(self, values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The (field, value) pairs of a request that the re-ranker has lifts for."""
        return tuple(
            (name, values[name])
            for name in self.fields
            if name in values and values[name] in self.lifts.get(name, {})
        )

    def item_lifts(
        self, pairs: Sequence[tuple[str, str]], masks: Mapping[str, NDArray[np.bool_]], size: int
    ) -> NDArray[np.float64]:
        """Per item: the sum over ``pairs`` of the mean lift of the item's categories that have
        one (``masks``: category -> items in it), clipped to [-1, 1]."""
        total = np.zeros(size)
        for name, value in pairs:
            cells = self.lifts[name][value]
            summed, counted = np.zeros(size), np.zeros(size)
            for category, lift in cells.items():
                mask = masks.get(category)
                if mask is not None:
                    summed[: mask.size] += lift * mask[:size]
                    counted[: mask.size] += mask[:size]
            total += np.divide(summed, counted, out=np.zeros(size), where=counted > 0)
        return np.clip(total, -1.0, 1.0)


def adjust(scores: NDArray[np.float64], lifts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Base scores with the bounded contextual adjustment: the best ``TOP_N`` get
    ``bound × lift`` added, every other candidate ``-bound``, so a re-ranked list is still drawn
    from the base model's top candidates. ``bound`` is ``STRENGTH`` times the spread of the top
    candidates' base scores (1 when they are all equal)."""
    out = np.asarray(scores, dtype=np.float64).copy()
    if out.size == 0:
        return out
    top = np.argpartition(-out, TOP_N - 1)[:TOP_N] if out.size > TOP_N else np.arange(out.size)
    spread = float(out[top].max() - out[top].min())
    bound = STRENGTH * (spread if spread > 0 else 1.0)
    if out.size > TOP_N:
        out -= bound
        out[top] += bound
    out[top] += bound * lifts[top]
    return out


@dataclass(frozen=True)
class LoggedLists:
    """Served lists that carry a declared context field, oldest first; ``items`` are dense item
    ids (-1 pads a short list or stands for an item erased since), ``pscore`` the logged
    propensities (1 on pads), ``reward`` 1 where the shown item got positive feedback."""

    recommendation_ids: list[str]
    user_idx: NDArray[np.int64]
    ts: NDArray[np.float64]
    model_version: list[str | None]
    policy: list[str]
    values: list[dict[str, str]]
    items: NDArray[np.int64]
    pscore: NDArray[np.float64]
    reward: NDArray[np.float64]
    categories: dict[int, list[str]]

    def __len__(self) -> int:
        return len(self.recommendation_ids)

    def take(self, rows: NDArray[np.bool_]) -> LoggedLists:
        index = np.flatnonzero(rows)
        return LoggedLists(
            [self.recommendation_ids[i] for i in index],
            self.user_idx[index],
            self.ts[index],
            [self.model_version[i] for i in index],
            [self.policy[i] for i in index],
            [self.values[i] for i in index],
            self.items[index],
            self.pscore[index],
            self.reward[index],
            self.categories,
        )

    def category_masks(self, size: int) -> dict[str, NDArray[np.bool_]]:
        """Category -> boolean mask over dense item ids below ``size``."""
        masks: dict[str, NDArray[np.bool_]] = {}
        for item, names in self.categories.items():
            if 0 <= item < size:
                for name in names:
                    masks.setdefault(name, np.zeros(size, dtype=bool))[item] = True
        return masks


def read_lists(
    store: Store, fields: Sequence[str], *, until: float | None = None, limit: int = MAX_LISTS
) -> LoggedLists:
    """The newest ``limit`` served lists before ``until`` with a value for a declared field
    (lists of the ``NOT_POSITIONAL`` policies left out)."""
    imp = schema.impressions.c
    query = (
        select(
            imp.recommendation_id,
            imp.user_idx,
            imp.ts,
            imp.model_version,
            imp.policy,
            imp.item_ids,
            imp.propensities,
            imp.context,
        )
        .where(imp.context.is_not(None), imp.policy.not_in(NOT_POSITIONAL))
        .order_by(imp.ts.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(imp.ts < until)
    with store.read() as conn:
        rows = conn.execute(query).all()
    kept = []
    for row in reversed(rows):
        found = context_values(row.context, fields, strict=False)
        if found and row.item_ids:
            kept.append((row, found))
    keys = sorted({item for row, _ in kept for item in row.item_ids})
    dense = store.lookup_ids("items", keys)
    n, k = len(kept), max((len(row.item_ids) for row, _ in kept), default=1)
    items = np.full((n, k), -1, dtype=np.int64)
    pscore, reward = np.ones((n, k)), np.zeros((n, k))
    for i, (row, _) in enumerate(kept):
        for j, (item, p) in enumerate(zip(row.item_ids, row.propensities, strict=True)):
            if item in dense:
                items[i, j], pscore[i, j] = dense[item], float(p)
    ids = [row.recommendation_id for row, _ in kept]
    clicked = _engaged(store, ids)
    for i, rec in enumerate(ids):
        for j in range(k):
            reward[i, j] = float((rec, int(items[i, j])) in clicked)
    return LoggedLists(
        ids,
        np.array([-1 if row.user_idx is None else row.user_idx for row, _ in kept], np.int64),
        np.array([row.ts for row, _ in kept], dtype=np.float64),
        [row.model_version for row, _ in kept],
        [row.policy for row, _ in kept],
        [found for _, found in kept],
        items,
        pscore,
        reward,
        _categories(store, sorted(set(dense.values()))),
    )


def _engaged(store: Store, recommendation_ids: list[str]) -> set[tuple[str, int]]:
    """(recommendation id, dense item id) pairs with an event of positive signal weight."""
    positive = [t for t, s in store.settings.signals.items() if s.weight > 0]
    e = schema.events.c
    out: set[tuple[str, int]] = set()
    for start in range(0, len(recommendation_ids), _CHUNK):
        query = select(e.recommendation_id, e.item_idx).where(
            e.recommendation_id.in_(recommendation_ids[start : start + _CHUNK]),
            e.type.in_(positive),
            e.item_idx.is_not(None),
        )
        with store.read() as conn:
            out.update((rec, int(item)) for rec, item in conn.execute(query))
    return out


def _categories(store: Store, items: list[int]) -> dict[int, list[str]]:
    i = schema.items.c
    out: dict[int, list[str]] = {}
    for start in range(0, len(items), _CHUNK):
        query = select(i.idx, i.categories).where(i.idx.in_(items[start : start + _CHUNK]))
        with store.read() as conn:
            out.update((idx, [str(c) for c in cats or []]) for idx, cats in conn.execute(query))
    return out


def fit(logs: LoggedLists, fields: Sequence[str]) -> ContextReranker:
    """Fit the lifts of every declared field on the logged lists (see the module notes)."""
    shown = logs.items >= 0
    rows, cols = np.nonzero(shown)
    names = sorted({c for cats in logs.categories.values() for c in cats})
    column = {name: j for j, name in enumerate(names)}
    size = int(logs.items.max()) + 1 if shown.any() else 0
    pairs = [(item, column[c]) for item, cats in logs.categories.items() for c in cats]
    incidence = sp.csr_matrix(
        (np.ones(len(pairs)), ([p[0] for p in pairs], [p[1] for p in pairs])),
        shape=(max(size, 1), max(len(names), 1)),
    )
    position_cats = incidence[logs.items[rows, cols]]  # positions x categories
    weight = 1.0 / logs.pscore[rows, cols]
    reward = logs.reward[rows, cols]
    lifts: dict[str, dict[str, dict[str, float]]] = {}
    strength: dict[str, float] = {}
    for name in fields:
        value_of = np.array([v.get(name) for v in logs.values], dtype=object)[rows]
        present = np.array([v is not None for v in value_of], dtype=bool)
        if not present.any() or not names:
            continue
        cells = _cells(value_of, present, position_cats, weight, reward)
        strength[name], lifts[name] = _shrink(cells, names)
    return ContextReranker(tuple(fields), lifts, strength)


@dataclass(frozen=True)
class _Cells:
    """Weighted sums per (value, category) and per category over all values."""

    values: list[str]
    sw: NDArray[np.float64]  # values x categories: Σw
    sw2: NDArray[np.float64]  # Σw²
    swr: NDArray[np.float64]  # Σw·r
    base_sw: NDArray[np.float64]  # categories
    base_swr: NDArray[np.float64]


def _cells(
    value_of: NDArray[Any],
    present: NDArray[np.bool_],
    position_cats: sp.csr_matrix,
    weight: NDArray[np.float64],
    reward: NDArray[np.float64],
) -> _Cells:
    values = sorted({str(v) for v in value_of[present]})
    n_cats = position_cats.shape[1]
    sw, sw2, swr = (np.zeros((len(values), n_cats)) for _ in range(3))
    for row, value in enumerate(values):
        mask = value_of == value
        block = position_cats[np.flatnonzero(mask)]
        w, r = weight[mask], reward[mask]
        sw[row], sw2[row], swr[row] = block.T @ w, block.T @ (w * w), block.T @ (w * r)
    return _Cells(values, sw, sw2, swr, sw.sum(axis=0), swr.sum(axis=0))


def _shrink(cells: _Cells, names: list[str]) -> tuple[float, dict[str, dict[str, float]]]:
    """The prior strength m and each cell's log ratio of its shrunk rate to its category's."""
    base = np.divide(
        cells.base_swr, cells.base_sw, out=np.zeros_like(cells.base_sw), where=cells.base_sw > 0
    )
    usable = (cells.sw > 0) & (base > 0) & (base < 1)
    rate = np.divide(cells.swr, cells.sw, out=np.zeros_like(cells.sw), where=cells.sw > 0)
    n_eff = np.divide(cells.sw**2, cells.sw2, out=np.zeros_like(cells.sw), where=cells.sw2 > 0)
    variance = np.broadcast_to(base * (1 - base), rate.shape)
    # Method of moments: E[(rate - base)² / (base(1 - base))] = ρ + (1 - ρ) / n_eff, where
    # ρ = 1 / (m + 1) is the share of a cell's variance that is real (beta prior of strength m).
    fitted = usable & (n_eff > 1)
    if fitted.any():
        z = (rate - base) ** 2 / np.where(fitted, variance, 1.0)
        rho_cells = (z - 1 / np.maximum(n_eff, 1)) / (1 - 1 / np.maximum(n_eff, 1 + 1e-9))
        rho = float(np.average(rho_cells[fitted], weights=n_eff[fitted]))
    else:
        rho = 0.0
    rho = min(max(rho, 1e-6), 0.5)
    m = 1.0 / rho - 1.0
    shrunk = (n_eff * rate + m * base) / (n_eff + m)
    lifts: dict[str, dict[str, float]] = {}
    for row, value in enumerate(cells.values):
        kept = {
            names[j]: round(float(np.log(shrunk[row, j] / base[j])), 6)
            for j in np.flatnonzero(usable[row])
        }
        if kept:
            lifts[value] = kept
    return m, lifts
