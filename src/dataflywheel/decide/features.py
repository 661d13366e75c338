"""Turn a Personalizer-style request into validated features and hashed vectors.

A request is ``context_features`` (a list of JSON objects) plus ``actions`` (each
``{"id": str, "features": [objects]}``). :func:`parse_request` flattens both into named
features once, validating as it goes; :class:`FeatureHasher` maps names to a fixed hashed space
and builds, for every action, the outer product ``(context ∪ {1}) ⊗ (action ∪ {1})`` — the
context × action interactions of VW's ``-q ::`` plus the action-only, context-only and bias
terms in one vectorised step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from math import isfinite
from numbers import Real
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from dataflywheel.errors import ValidationError

MAX_ACTIONS = 50
"""Personalizer's limit on the number of actions of one rank call."""

ID_FEATURE = "_id"
"""Name under which an action's id becomes a one-hot feature (gives per-action weights)."""

_PRIME = np.uint64(0x9E3779B97F4A7C15)
_BIAS = "_bias"
_KEY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_NULLS = (b":null", b"[null", b",null")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Features:
    """Flattened named features of one side of a request (context or one action)."""

    names: list[str]
    values: list[float]


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: context features and, per action, its id and features."""

    context: Features
    action_ids: list[str]
    actions: list[Features]


def _bad(message: str, field: str) -> ValidationError:
    return ValidationError(message, field=field)


def _walk(
    obj: Mapping[str, Any], prefix: str, where: str, names: list[str], vals: list[float]
) -> None:
    """Flatten one JSON object: numbers keep their value, strings and booleans become one-hot.

    ``prefix`` is the feature-name prefix (``""`` or ``"a.b."``), ``where`` the request path
    used in error messages; the common scalar cases are inlined because this is the hot path.
    """
    for key, value in obj.items():
        kind = type(value)
        if kind is float or kind is int:
            if not isfinite(value):
                raise _bad(f"feature {where}.{key} is not a finite number", f"{where}.{key}")
            names.append(f"{prefix}{key}")
            vals.append(value)
        elif kind is str:
            names.append(f"{prefix}{key}={value}")
            vals.append(1.0)
        else:
            _value(value, f"{prefix}{key}", f"{where}.{key}", names, vals)


def _value(value: Any, name: str, where: str, names: list[str], vals: list[float]) -> None:
    """Flatten any JSON value (the slow path of :func:`_walk`)."""
    kind = type(value)
    if kind is float or kind is int:
        if not isfinite(value):
            raise _bad(f"feature {where} is not a finite number", where)
        names.append(name)
        vals.append(value)
    elif kind is bool:
        names.append(f"{name}={'true' if value else 'false'}")
        vals.append(1.0)
    elif kind is str:
        names.append(f"{name}={value}")
        vals.append(1.0)
    elif value is None:
        return
    elif kind is dict or isinstance(value, Mapping):
        _walk(value, f"{name}.", where, names, vals)
    elif kind is list or kind is tuple:
        for i, item in enumerate(value):
            if type(item) is float or type(item) is int:
                if not isfinite(item):
                    raise _bad(f"feature {where}[{i}] is not a finite number", f"{where}[{i}]")
                names.append(f"{name}[{i}]")
                vals.append(item)
            elif isinstance(item, Real) and type(item) is not bool:
                _value(float(item), f"{name}[{i}]", f"{where}[{i}]", names, vals)
            else:
                _value(item, name, f"{where}[{i}]", names, vals)
    elif isinstance(value, Real):
        _value(float(value), name, where, names, vals)
    else:
        raise _bad(f"feature {where} has unsupported type {kind.__name__}", where)


def _objects(objs: Any, where: str) -> Features:
    if type(objs) is not list and not isinstance(objs, tuple):
        if not isinstance(objs, Mapping):
            raise _bad(f"{where} must be a list of JSON objects", where)
        objs = [objs]
    names: list[str] = []
    vals: list[float] = []
    for i, obj in enumerate(objs):
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise _bad(f"{where}[{i}] must be a JSON object", f"{where}[{i}]")
        _walk(obj, "", f"{where}[{i}]", names, vals)
    return Features(names, vals)


def parse_context(context: Any) -> Features:
    """Validate and flatten ``context_features`` (a list of JSON objects, or one object)."""
    return _objects(context if context is not None else [], "context_features")


def parse_action(action: Any, index: int, *, id_feature: bool = True) -> tuple[str, Features]:
    """Validate and flatten one action ``{"id": str, "features": [...]}`` into (id, features)."""
    where = f"actions[{index}]"
    if type(action) is not dict and not isinstance(action, Mapping):
        raise _bad(f"{where} must be a JSON object with an id", where)
    action_id = action.get("id")
    if not isinstance(action_id, str) or not action_id:
        raise _bad(f"{where}.id must be a non-empty string", f"{where}.id")
    feats = _objects(action.get("features") or [], f"{where}.features")
    if id_feature:
        feats.names.append(f"{ID_FEATURE}={action_id}")
        feats.values.append(1.0)
    return action_id, feats


def check_action_count(actions: Any) -> int:
    """Return the number of actions, rejecting anything but a list of 1..50."""
    if not isinstance(actions, Sequence) or isinstance(actions, str):
        raise _bad("actions must be a list", "actions")
    n = len(actions)
    if n == 0 or n > MAX_ACTIONS:
        raise _bad(f"actions must hold 1..{MAX_ACTIONS} actions, got {n}", "actions")
    return n


def parse_actions(actions: Any, *, id_feature: bool = True) -> tuple[list[str], list[Features]]:
    """Validate and flatten a list of 1..50 actions with unique ids into (ids, features)."""
    check_action_count(actions)
    ids: list[str] = []
    feats: list[Features] = []
    seen: set[str] = set()
    for i, action in enumerate(actions):
        action_id, f = parse_action(action, i, id_feature=id_feature)
        if action_id in seen:
            raise _bad(f"duplicate action id {action_id!r}", f"actions[{i}].id")
        seen.add(action_id)
        ids.append(action_id)
        feats.append(f)
    return ids, feats


def parse_request(context: Any, actions: Any, *, id_feature: bool = True) -> Request:
    """Validate and flatten a whole rank request; action ids must be unique."""
    check_action_count(actions)
    ctx = parse_context(context)
    ids, feats = parse_actions(actions, id_feature=id_feature)
    return Request(ctx, ids, feats)


class JsonCache(Generic[T]):
    """Results of an expensive function of a JSON value, keyed by the value's JSON text.

    Clients send the same catalogue of actions with every rank; keyed this way its validation,
    flattening and hashing happen once, for the price of one ``orjson.dumps``. Values are read
    as their JSON text; a value that is not plain JSON, or holds ``null`` (NaN and infinities
    also serialise as ``null``), always takes the checked path. Failures are never cached.

    With ``private=True`` a value that will be cached is built from a fresh copy parsed from its
    JSON text instead of the caller's object, so a result may keep that copy: everything built
    from the same text then shares one copy that no caller can change.
    """

    def __init__(
        self, build: Callable[[Any], T], size: int = 256, *, private: bool = False
    ) -> None:
        self._build = build
        self._size = size
        self._private = private
        self._items: dict[bytes, T] = {}

    def __call__(self, value: Any) -> T:
        try:
            key = orjson.dumps(value, option=_KEY_OPTIONS)
        except TypeError:
            return self._build(value)
        hit = self._items.get(key)
        if hit is not None:
            return hit
        if any(null in key for null in _NULLS):
            return self._build(value)
        built = self._build(orjson.loads(key) if self._private else value)
        if len(self._items) >= self._size:
            self._items.clear()  # atomic, so safe from any thread; refills as lists recur
        self._items[key] = built
        return built


class FeatureHasher:
    """Stable feature hashing (blake2b, memoised per name) into ``2**bits`` weights."""

    def __init__(self, bits: int = 18, cache_size: int = 1 << 20) -> None:
        self.bits = bits
        self.dim = 1 << bits
        self._mask = np.uint64(self.dim - 1)
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size
        self._bias = self._hash(_BIAS)

    def hashes(self, names: list[str]) -> list[int]:
        """64-bit stable hashes of ``names`` preceded by the constant bias feature."""
        cache = self._cache
        try:
            return [self._bias, *[cache[name] for name in names]]
        except KeyError:
            return [self._bias, *[cache.get(name) or self._hash(name) for name in names]]

    def _hash(self, name: str) -> int:
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
            self._cache[_BIAS] = self._bias
        h = int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "little")
        self._cache[name] = h
        return h

    def context(self, context: Features) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
        """Hashes and values of ``ctx ∪ 1`` (the bias first)."""
        return np.array(self.hashes(context.names), dtype=np.uint64), np.array(
            [1.0, *context.values]
        )

    def cross(
        self,
        ch: npt.NDArray[np.uint64],
        cv: npt.NDArray[np.float64],
        ah: npt.NDArray[np.uint64],
        av: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Indices and values of the outer product of hashed context and action sides.

        ``ch``/``cv`` have shape (1 + ctx,), ``ah``/``av`` (actions, 1, width) or (width,).
        """
        if ah.ndim == 1:
            idx = (ch[:, None] * _PRIME + ah[None, :]) & self._mask
            return idx.astype(np.intp), cv[:, None] * av[None, :]
        idx = (ch[None, :, None] * _PRIME + ah) & self._mask
        return idx.astype(np.intp), cv[None, :, None] * av

    def outer(
        self, context: Features, actions: Sequence[Features]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Indices and values of ``(ctx ∪ 1) ⊗ (action ∪ 1)``, shape (actions, 1 + ctx, 1 + width).

        ``[:, :, 0]`` are the context-only terms (shared by all actions), ``[:, 0, :]`` the
        action-only ones; actions with fewer features are padded with zero values.
        """
        ch, cv = self.context(context)
        return self.cross(ch, cv, *self.actions(actions))

    def actions(
        self, actions: Sequence[Features]
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
        """Hashes and values of every ``action ∪ 1``, shape (actions, 1, 1 + width), padded."""
        width = 1 + max(len(a.names) for a in actions)
        names: list[str] = []
        values: list[float] = []
        for a in actions:
            pad = width - 1 - len(a.names)
            names.append(_BIAS)
            names += a.names
            values.append(1.0)
            values += a.values
            if pad:
                names += [_BIAS] * pad
                values += [0.0] * pad
        hashes = self.hashes(names)[1:]
        shape = (len(actions), 1, width)
        return np.array(hashes, dtype=np.uint64).reshape(shape), np.array(values).reshape(shape)
