"""Feature flattening, validation and hashing of Personalizer-style requests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataflywheel.decide import FeatureHasher, parse_request
from dataflywheel.decide.features import JsonCache, parse_actions
from dataflywheel.errors import ValidationError


def actions(n: int) -> list[dict[str, object]]:
    return [{"id": f"a{i}", "features": [{"price": float(i)}]} for i in range(n)]


def test_flattens_nested_objects_strings_lists_and_booleans() -> None:
    context = [{"user": {"tier": "gold", "age": 31, "vip": True, "geo": [47.6, -122.1]}}]
    acts = [{"id": "x", "features": [{"tags": ["red", "sale"], "dims": {"w": 2}}]}]
    req = parse_request(context, acts)
    ctx = dict(zip(req.context.names, req.context.values, strict=True))
    assert ctx == {
        "user.tier=gold": 1.0,
        "user.age": 31,
        "user.vip=true": 1.0,
        "user.geo[0]": 47.6,
        "user.geo[1]": -122.1,
    }
    assert req.actions[0].names == ["tags=red", "tags=sale", "dims.w", "_id=x"]
    assert req.action_ids == ["x"]


@pytest.mark.parametrize(
    ("context", "acts", "field"),
    [
        ([{"u": {"age": math.nan}}], actions(2), "context_features[0].u.age"),
        ([{"geo": [1.0, math.inf]}], actions(2), "context_features[0].geo[1]"),
        ([], [{"id": "a", "features": [{"p": -math.inf}]}], "actions[0].features[0].p"),
        ([], [], "actions"),
        ([], actions(51), "actions"),
        ([], [{"id": "a"}, {"id": "a"}], "actions[1].id"),
        ([], [{"features": []}], "actions[0].id"),
        ("text", actions(1), "context_features"),
        ([3], actions(1), "context_features[0]"),
        ([{"f": object()}], actions(1), "context_features[0].f"),
    ],
)
def test_bad_requests_name_the_field(context: object, acts: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_request(context, acts)
    assert err.value.field == field


def test_fifty_actions_are_accepted() -> None:
    assert len(parse_request([], actions(50)).actions) == 50


def test_hashing_is_stable_across_instances_and_covers_the_outer_product() -> None:
    req = parse_request([{"a": 1.0, "b": "x"}], actions(3))
    idx1, val1 = FeatureHasher(16).outer(req.context, req.actions)
    idx2, val2 = FeatureHasher(16).outer(req.context, req.actions)
    assert np.array_equal(idx1, idx2) and np.array_equal(val1, val2)
    # (1 bias + 2 context) x (1 bias + price + id), for each of the 3 actions
    assert idx1.shape == (3, 3, 3)
    assert val1[2, 1, 1] == 1.0 * 2.0  # context "a" times action 2's price
    assert idx1.max() < 1 << 16
    # context x "price" is one weight shared by all actions; context x "_id=..." one per action
    assert len(np.unique(idx1[:, 1:, 1:])) == 2 + 2 * 3


def test_json_cache_builds_once_per_json_text_and_never_caches_failures() -> None:
    calls: list[object] = []

    def build(value: object) -> int:
        calls.append(value)
        if value == [{"p": None}]:
            raise ValueError("null")
        return len(calls)

    cache = JsonCache(build)
    assert cache([{"id": "a"}]) == cache([{"id": "a"}]) == 1
    assert cache(({"id": "a"},)) == 1  # a tuple has the same JSON text
    assert cache([{"id": "b"}]) == 2
    with pytest.raises(ValueError):
        cache([{"p": None}])
    with pytest.raises(ValueError):
        cache([{"p": None}])
    assert len(calls) == 4


def test_json_cache_never_lets_nan_pass_as_a_cached_null() -> None:
    """NaN serialises to null, so values holding null are always checked afresh."""
    good = [{"id": "a", "features": [{"p": None}]}]
    bad = [{"id": "a", "features": [{"p": math.nan}]}]
    cache = JsonCache(lambda actions: parse_actions(actions))
    assert cache(good)[0] == ["a"]
    with pytest.raises(ValidationError) as err:
        cache(bad)
    assert err.value.field == "actions[0].features[0].p"


def test_json_cache_checks_values_that_are_not_plain_json() -> None:
    class Tag(str):
        pass

    cache = JsonCache(lambda actions: parse_actions(actions))
    assert cache([{"id": "a", "features": [{"t": "x"}]}])[1][0].names == ["t=x", "_id=a"]
    with pytest.raises(ValidationError):
        cache([{"id": "a", "features": [{"t": Tag("x")}]}])


def test_json_cache_stays_bounded() -> None:
    built: list[object] = []

    def build(value: object) -> int:
        built.append(value)
        return len(built)

    cache = JsonCache(build, size=4)
    for i in range(10):
        cache([i])
    cache([9])
    assert len(built) == 10  # the latest entries are kept
    cache([0])
    assert len(built) == 11  # early ones were dropped


def test_a_private_json_cache_builds_from_its_own_copy() -> None:
    seen: list[object] = []

    def build(value: object) -> object:
        seen.append(value)
        return value

    cache = JsonCache(build, private=True)
    plain = [{"id": "a"}]
    assert cache(plain) == plain and seen[-1] is not plain
    assert cache([{"id": "a"}]) is seen[-1]
    with_null = [{"id": "a", "p": None}]
    assert cache(with_null) is with_null  # never cached, so the caller's own object
