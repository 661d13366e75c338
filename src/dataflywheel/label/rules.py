"""Declarative trigger rules: JSON conditions checked against an event, without ``eval``.

A condition is ``{"field": F, "op": OP, "value": V}``, or ``{"all": [...]}`` / ``{"any": [...]}``
/ ``{"not": C}`` of conditions. Fields name the event (``type``, ``value``, ``user_id``,
``item_id``, ``context.K``), what served it (``score``, ``rank``, ``propensity``,
``shadow_overlap``: the lowest overlap of a shadow with that list), the entities
(``item.K``/``user.K`` attributes, ``item.categories``) and rates (``rate.T``: the share of the
item's events that have type T).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dataflywheel.errors import ValidationError

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "exists")
_ROOTS = ("type", "value", "user_id", "item_id", "score", "rank", "propensity", "shadow_overlap")
_PREFIXES = ("context.", "item.", "user.", "rate.")
MAX_DEPTH = 5


def validate(rule: Any, where: str = "when", depth: int = 0) -> None:
    """Raise ValidationError unless ``rule`` is a well-formed condition that can match."""
    if depth > MAX_DEPTH or not isinstance(rule, Mapping) or len(rule) == 0:
        raise ValidationError(
            "a condition is a non-empty object (nested at most 5 deep)", field=where
        )
    for combinator in ("all", "any"):
        if combinator in rule:
            parts = rule[combinator]
            if set(rule) != {combinator} or not isinstance(parts, list) or not parts:
                raise ValidationError(f"{combinator} takes a non-empty list", field=where)
            for index, part in enumerate(parts):
                validate(part, f"{where}.{combinator}.{index}", depth + 1)
            if combinator == "all":
                _check_satisfiable(parts, where)
            return
    if "not" in rule:
        if set(rule) != {"not"}:
            raise ValidationError("not takes one condition", field=where)
        validate(rule["not"], f"{where}.not", depth + 1)
        return
    field, op = rule.get("field"), rule.get("op")
    if set(rule) - {"field", "op", "value"} or not isinstance(field, str):
        raise ValidationError("a condition has field, op and value", field=where)
    if field not in _ROOTS and not (field.startswith(_PREFIXES) and "." in field[:-1]):
        raise ValidationError(f"unknown field {field!r}", field=f"{where}.field")
    if op not in OPS:
        raise ValidationError(f"op must be one of {OPS}", field=f"{where}.op")
    value = rule.get("value")
    if op in ("lt", "le", "gt", "ge") and not _number(value):
        raise ValidationError(f"{op} compares with a number", field=f"{where}.value")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ValidationError(f"{op} takes a list", field=f"{where}.value")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_satisfiable(parts: list[Any], where: str) -> None:
    """Reject an ``all`` whose comparisons on one field exclude each other (a conflicting rule)."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    equal: dict[str, Any] = {}
    for part in parts:
        field, op, value = part.get("field"), part.get("op"), part.get("value")
        if field is None:
            continue
        if op == "eq":
            if field in equal and equal[field] != value:
                raise ValidationError(f"{field} cannot equal two values", field=where)
            equal[field] = value
        elif op in ("gt", "ge"):
            low[field] = max(low.get(field, -math.inf), float(value))
        elif op in ("lt", "le"):
            high[field] = min(high.get(field, math.inf), float(value))
    for field in set(low) & set(high):
        if low[field] >= high[field]:
            raise ValidationError(f"the conditions on {field} can never all hold", field=where)
    for field, value in equal.items():
        if _number(value) and not low.get(field, -math.inf) <= value <= high.get(field, math.inf):
            raise ValidationError(f"the conditions on {field} can never all hold", field=where)


def matches(rule: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether ``record`` (see the module docstring for its fields) satisfies ``rule``."""
    if "all" in rule:
        return all(matches(part, record) for part in rule["all"])
    if "any" in rule:
        return any(matches(part, record) for part in rule["any"])
    if "not" in rule:
        return not matches(rule["not"], record)
    found, actual = _lookup(record, rule["field"])
    op: str = rule["op"]
    expected: Any = rule.get("value")
    if op == "exists":
        return found == bool(expected if expected is not None else True)
    if not found or actual is None:
        return op in ("ne", "not_in")
    if op in ("lt", "le", "gt", "ge"):
        if not _number(actual):
            return False
        return {
            "lt": actual < expected,
            "le": actual <= expected,
            "gt": actual > expected,
            "ge": actual >= expected,
        }[op]
    if op == "contains":
        return isinstance(actual, list | str) and expected in actual
    return {
        "eq": actual == expected,
        "ne": actual != expected,
        "in": actual in expected,
        "not_in": actual not in expected,
    }[op]


def _lookup(record: Mapping[str, Any], field: str) -> tuple[bool, Any]:
    """(present, value) of a dotted field in ``record``."""
    current: Any = record
    for part in field.split(".", 1) if "." in field else [field]:
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current
