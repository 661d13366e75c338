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
    """Reject an ``all`` whose comparisons on one field exclude each other (a conflicting rule).

    Bounds are kept as (value, strict): ``ge 3`` and ``le 3`` admit 3, ``gt 3`` and ``le 3``
    admit nothing; an equality must fall inside the field's bounds, and comparisons only hold
    for numbers.
    """
    low: dict[str, tuple[float, bool]] = {}
    high: dict[str, tuple[float, bool]] = {}
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
            low[field] = max(low.get(field, (-math.inf, False)), (float(value), op == "gt"))
        elif op in ("lt", "le"):
            bound = (float(value), op == "lt")
            high[field] = min(high.get(field, (math.inf, False)), bound, key=_tighter_high)
    for field in set(low) & set(high):
        (lo, lo_strict), (hi, hi_strict) = low[field], high[field]
        if lo > hi or (lo == hi and (lo_strict or hi_strict)):
            raise ValidationError(f"the conditions on {field} can never all hold", field=where)
    for field, value in equal.items():
        if field not in low and field not in high:
            continue
        lo, lo_strict = low.get(field, (-math.inf, False))
        hi, hi_strict = high.get(field, (math.inf, False))
        inside = _number(value) and (lo < value or (lo == value and not lo_strict))
        inside = inside and (value < hi or (value == hi and not hi_strict))
        if not inside:
            raise ValidationError(f"the conditions on {field} can never all hold", field=where)


def _tighter_high(bound: tuple[float, bool]) -> tuple[float, bool]:
    """Sort key of upper bounds: the smaller value, and at equal values the strict one, first."""
    return bound[0], not bound[1]


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
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, list) and expected in actual
    # One branch per operator: evaluating all of them (a dict of results) would apply ``in`` to
    # the value of an ``eq`` rule, a TypeError for numbers.
    if op in ("eq", "ne"):
        return (actual == expected) is (op == "eq")
    return (actual in expected) is (op == "in")


def _lookup(record: Mapping[str, Any], field: str) -> tuple[bool, Any]:
    """(present, value) of a dotted field in ``record``."""
    current: Any = record
    for part in field.split(".", 1) if "." in field else [field]:
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current
