"""Trigger rules: every operator and combinator, the fields a scan fills in, and rules that are
malformed or can never match rejected with an error naming where (data, never code)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflywheel as dfw
from dataflywheel.errors import ConflictError, ValidationError
from dataflywheel.label.rules import OPS, matches, validate

RECORD: dict[str, Any] = {
    "type": "dislike",
    "value": 2.5,
    "user_id": "u1",
    "item_id": "i7",
    "score": 0.9,
    "rank": 1,
    "propensity": 0.95,
    "shadow_overlap": 0.2,
    "context": {"device": "tv"},
    "user": {"plan": "free"},
    "item": {"genre": "drama", "categories": ["film", "new"]},
    "rate": {"dislike": 0.4},
}


def _c(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (_c("type", "eq", "dislike"), True),
        (_c("type", "eq", "click"), False),
        (_c("type", "ne", "click"), True),
        (_c("type", "ne", "dislike"), False),
        (_c("value", "lt", 3), True),
        (_c("value", "lt", 2.5), False),
        (_c("value", "le", 2.5), True),
        (_c("value", "le", 2), False),
        (_c("value", "gt", 2), True),
        (_c("value", "gt", 2.5), False),
        (_c("value", "ge", 2.5), True),
        (_c("value", "ge", 3), False),
        (_c("type", "in", ["dislike", "skip"]), True),
        (_c("type", "in", ["click"]), False),
        (_c("type", "not_in", ["click"]), True),
        (_c("type", "not_in", ["dislike"]), False),
        (_c("item.categories", "contains", "new"), True),
        (_c("item.categories", "contains", "old"), False),
        (_c("item.genre", "contains", "ram"), True),
        (_c("item.genre", "contains", 5), False),  # a number is never inside a string
        (_c("context.device", "exists"), True),
        (_c("context.os", "exists"), False),
        (_c("context.os", "exists", False), True),
        (_c("score", "ge", 0.8), True),
        (_c("rank", "lt", 1), False),
        (_c("propensity", "gt", 0.9), True),
        (_c("shadow_overlap", "lt", 0.5), True),
        (_c("user.plan", "eq", "free"), True),
        (_c("item.genre", "eq", "comedy"), False),
        (_c("rate.dislike", "ge", 0.3), True),
        (_c("rate.click", "ge", 0.0), False),  # absent: comparisons fail
        (_c("rate.click", "ne", 0.0), True),  # absent: negations hold
        (_c("rate.click", "not_in", [0.0]), True),
        ({"all": [_c("type", "eq", "dislike"), _c("rank", "lt", 3)]}, True),
        ({"all": [_c("type", "eq", "dislike"), _c("rank", "gt", 3)]}, False),
        ({"any": [_c("type", "eq", "click"), _c("score", "gt", 0.5)]}, True),
        ({"any": [_c("type", "eq", "click"), _c("score", "gt", 0.95)]}, False),
        ({"not": _c("type", "eq", "click")}, True),
        ({"not": {"any": [_c("type", "eq", "dislike"), _c("score", "gt", 0.95)]}}, False),
    ],
)
def test_operators_fields_and_combinators(condition: dict[str, Any], expected: bool) -> None:
    validate(condition)
    assert matches(condition, RECORD) is expected


def test_a_comparison_with_a_non_number_is_false() -> None:
    assert not matches(_c("value", "gt", 1), {"value": "high"})
    assert not matches(_c("value", "gt", 1), {"value": True})
    assert not matches(_c("value", "gt", 1), {"value": None})


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ("__import__('os').system('true')", "when"),
        ({}, "when"),
        ({"field": "__class__", "op": "eq", "value": 1}, "when.field"),
        ({"field": "item.", "op": "eq", "value": 1}, "when.field"),
        ({"field": "type", "op": "matches", "value": ".*"}, "when.op"),
        ({"field": "type", "op": "eq", "value": 1, "code": "x"}, "when"),
        ({"field": "value", "op": "gt", "value": "3"}, "when.value"),
        ({"field": "value", "op": "gt", "value": True}, "when.value"),
        ({"field": "value", "op": "le", "value": math.inf}, "when.value"),
        ({"field": "type", "op": "in", "value": "click"}, "when.value"),
        ({"all": []}, "when"),
        ({"any": {"field": "type"}}, "when"),
        ({"all": [_c("type", "eq", "x")], "any": [_c("type", "eq", "y")]}, "when"),
        ({"not": _c("type", "eq", "x"), "field": "type"}, "when"),
        ({"any": [_c("type", "eq", "x"), {"field": "nope", "op": "eq"}]}, "when.any.1.field"),
        ({"not": {"all": [_c("type", "eq", "x"), _c("rank", "lt", "3")]}}, "when.not.all.1.value"),
    ],
)
def test_invalid_rules_name_the_field(rule: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate(rule)
    assert caught.value.field == field


def test_nesting_is_bounded() -> None:
    rule: dict[str, Any] = _c("type", "eq", "x")
    for _ in range(5):
        rule = {"not": rule}
    validate(rule)
    with pytest.raises(ValidationError):
        validate({"not": rule})


@pytest.mark.parametrize(
    "parts",
    [
        [_c("type", "eq", "click"), _c("type", "eq", "dislike")],
        [_c("value", "gt", 3), _c("value", "lt", 2)],
        [_c("value", "gt", 3), _c("value", "le", 3)],
        [_c("value", "ge", 3), _c("value", "lt", 3)],
        [_c("value", "gt", 3), _c("value", "eq", 3)],
        [_c("value", "eq", 1), _c("value", "ge", 2)],
        [_c("value", "eq", "high"), _c("value", "lt", 2)],
    ],
)
def test_conditions_that_exclude_each_other_are_rejected(parts: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError, match=r"never|two values"):
        validate({"all": parts})


def test_touching_inclusive_bounds_are_satisfiable() -> None:
    rule = {"all": [_c("value", "ge", 3), _c("value", "le", 3), _c("value", "eq", 3)]}
    validate(rule)
    assert matches(rule, {"value": 3})


# Property tests ------------------------------------------------------------------------------

numbers = st.integers(-5, 5).map(float) | st.floats(-5, 5, allow_nan=False)
comparisons = st.builds(
    lambda op, value: _c("value", op, value),
    st.sampled_from(["lt", "le", "gt", "ge", "eq"]),
    numbers,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(comparisons, min_size=1, max_size=4))
def test_all_of_bounds_is_accepted_exactly_when_some_value_satisfies_it(
    parts: list[dict[str, Any]],
) -> None:
    """A witness exists iff one exists among the bounds, their midpoints and beyond them."""
    bounds = sorted({p["value"] for p in parts})
    probes = [bounds[0] - 1, bounds[-1] + 1, *bounds]
    probes += [(a + b) / 2 for a, b in itertools.pairwise(bounds)]
    rule = {"all": parts}
    satisfiable = any(matches(rule, {"value": x}) for x in probes)
    try:
        validate(rule)
    except ValidationError:
        assert not satisfiable, parts
    else:
        assert satisfiable, parts


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3) | st.sampled_from("ab"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=6,
)
fields = st.sampled_from(["value", "type", "score", "item.a", "user.b", "context.a", "rate.a"])
leaves = st.builds(
    _c,
    fields,
    st.sampled_from(OPS),
    st.one_of(numbers, st.sampled_from(["a", "b"]), st.lists(st.sampled_from(["a", 1.0]))),
)
conditions = st.recursive(
    leaves,
    lambda inner: (
        st.builds(lambda c: {"not": c}, inner)
        | st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3))
    ),
    max_leaves=5,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "value": json_values,
        "type": json_values,
        "score": json_values,
        "item": st.dictionaries(st.sampled_from("ab"), json_values),
        "user": st.dictionaries(st.sampled_from("ab"), json_values),
        "context": json_values,
        "rate": st.dictionaries(st.sampled_from("ab"), numbers),
    },
)


@settings(max_examples=400, deadline=None)
@given(conditions, records)
def test_a_valid_rule_evaluates_any_record_to_a_bool(
    rule: dict[str, Any], record: dict[str, Any]
) -> None:
    """Records carry whatever clients sent; a valid rule may never crash the scan."""
    try:
        validate(rule)
    except ValidationError:
        return
    result = matches(rule, record)
    assert isinstance(result, bool)
    assert matches({"not": rule}, record) is not result
    assert matches({"any": [rule, {"not": rule}]}, record)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["lt", "le", "gt", "ge"]), numbers, json_values)
def test_comparisons_hold_only_for_numbers(op: str, bound: float, actual: Any) -> None:
    opposite = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}[op]
    one = matches(_c("value", op, bound), {"value": actual})
    other = matches(_c("value", opposite, bound), {"value": actual})
    is_number = isinstance(actual, int | float) and not isinstance(actual, bool)
    assert (one != other) if is_number else not (one or other)


# Triggers on a store -------------------------------------------------------------------------


def test_a_scan_fills_in_served_entity_and_rate_fields(store_url: str) -> None:
    with dfw.open(store_url, exploration={"name": "greedy"}) as wheel:
        wheel.upsert_items(
            [
                {"id": f"i{n}", "attributes": {"tier": n % 3}, "categories": [f"c{n % 2}"]}
                for n in range(8)
            ]
        )
        wheel.upsert_users([{"id": "u0", "attributes": {"plan": "pro"}}])
        history = [
            {
                "user_id": f"u{u}",
                "item_id": f"i{(u + j) % 8}",
                "type": "click",
                "timestamp": 1e9 + j,
            }
            for u in range(1, 8)
            for j in range(5)
        ]
        wheel.track_many(history)
        wheel.train("popularity", budget=1)
        answer = wheel.recommend("u0", 4)
        served = [entry["item_id"] for entry in answer["items"]]
        rec = answer["recommendation_id"]
        feedback = [
            {"user_id": "u0", "item_id": item, "type": "dislike", "recommendation_id": rec}
            for item in served
        ]
        feedback.append({"user_id": "u0", "item_id": "i9", "type": "dislike"})  # not served
        feedback.append(
            {"user_id": "u0", "item_id": "i1", "type": "click", "context": {"device": "tv"}}
        )
        wheel.track_many(feedback)
        wheel.flush()
        queue = wheel.loop.rollout.queue
        specs = {
            "top two": {"all": [_c("type", "eq", "dislike"), _c("rank", "lt", 2)]},
            "confident": {"all": [_c("type", "eq", "dislike"), _c("score", "gt", 0.0)]},
            "served at all": _c("propensity", "exists"),
            "pro users": {"all": [_c("user.plan", "eq", "pro"), _c("type", "eq", "dislike")]},
            "tier zero": {
                "all": [_c("item.tier", "eq", 0), _c("item.categories", "contains", "c0")]
            },
            "on tv": _c("context.device", "eq", "tv"),
            "mostly disliked": _c("rate.dislike", "ge", 0.5),
        }
        for name, when in specs.items():
            queue.add_trigger({"name": name, "task": name.replace(" ", "-"), "when": when})
        queued = queue.scan()
        by_task: dict[str, set[str]] = {}
        for case in queue.pending(limit=1000):
            by_task.setdefault(case["task"], set()).add(case["item_id"])

    assert by_task["top-two"] == set(served[:2])
    assert by_task["confident"] == set(served)
    assert by_task["served-at-all"] == set(served)
    assert by_task["pro-users"] == {*served, "i9"}
    assert by_task["tier-zero"] == {f"i{n}" for n in range(8) if n % 3 == 0 and n % 2 == 0}
    assert by_task["on-tv"] == {"i1"}
    assert by_task["mostly-disliked"] == {"i9"}  # disliked once, never clicked
    assert queued["top two"] == 2


def test_conflicting_triggers_are_rejected(sqlite_url: str) -> None:
    rule = {"all": [_c("type", "eq", "dislike"), _c("rank", "lt", 3)]}
    with dfw.open(sqlite_url) as wheel:
        queue = wheel.loop.rollout.queue
        queue.add_trigger({"name": "dislikes", "task": "relevance", "when": rule})
        with pytest.raises(ConflictError) as same_rule:
            queue.add_trigger({"name": "again", "task": "relevance", "when": rule})
        assert same_rule.value.details["field"] == "when"
        with pytest.raises(ConflictError) as same_name:
            queue.add_trigger({"name": "dislikes", "task": "other", "when": _c("type", "eq", "x")})
        assert same_name.value.details["field"] == "name"
        queue.add_trigger({"name": "other task", "task": "safety", "when": rule})
        with pytest.raises(ValidationError) as bad:
            queue.add_trigger({"name": "x", "when": rule, "lambda": "1"})
        assert bad.value.field == "lambda"
        with pytest.raises(ValidationError) as bad_priority:
            queue.add_trigger({"name": "y", "when": _c("type", "eq", "y"), "priority": -1})
        assert bad_priority.value.field == "priority"
        assert [t["name"] for t in queue.triggers()] == ["dislikes", "other task"]
