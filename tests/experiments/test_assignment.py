"""Deterministic salted hash assignment."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import assign, assign_many, bucket, buckets

ARMS = [("control", 0.5), ("treatment", 0.5)]


def test_known_values_never_change() -> None:
    """Values fixed in another process: stable across processes, machines and hash seeds.

    Changing the hash scheme would silently reshuffle every running experiment.
    """
    got = [bucket(u, "exp-1") for u in ("u1", "u2", "alice")]
    assert got == pytest.approx([0.36401728136811545, 0.14146203794226153, 0.7517019313864483])
    assert [assign(u, "exp-1", ARMS) for u in ("u1", "u2", "alice")] == [
        "control",
        "control",
        "treatment",
    ]


def test_salt_separates_experiments() -> None:
    ids = [f"u{i}" for i in range(20_000)]
    first = assign_many(ids, "exp-a", ARMS) == "treatment"
    second = assign_many(ids, "exp-b", ARMS) == "treatment"
    # Independent experiments: the overlap of two 50% treatments is ~25%.
    assert np.mean(first & second) == pytest.approx(0.25, abs=0.015)
    assert bucket("c", "ab") != bucket("bc", "a")


def test_percentages_and_zero_weight_arms() -> None:
    ids = [str(i) for i in range(5000)]
    arms = assign_many(ids, "s", [("a", 0), ("b", 100), ("c", 0)])
    assert set(arms) == {"b"}
    assert assign("42", "s", [("a", 25), ("b", 75)]) in {"a", "b"}


@pytest.mark.parametrize(
    "arms",
    [
        [],
        [("a", 0.5), ("b", 0.4)],
        [("a", 0.5), ("a", 0.5)],
        [("a", 1.2), ("b", -0.2)],
        [("", 1.0)],
        [("a", float("nan")), ("b", 1.0)],
        ["ab"],
    ],
)
def test_bad_arms_name_the_field(arms: list[tuple[str, float]]) -> None:
    with pytest.raises(ValidationError) as info:
        assign("u", "s", arms)
    assert info.value.field == "arms"


@settings(max_examples=100, deadline=None)
@given(unit_id=st.text(max_size=30), salt=st.text(max_size=30))
def test_deterministic_and_in_unit_interval(unit_id: str, salt: str) -> None:
    value = bucket(unit_id, salt)
    assert 0.0 <= value < 1.0
    assert bucket(unit_id, salt) == value
    assert assign(unit_id, salt, ARMS) == assign(unit_id, salt, ARMS)
    assert assign(unit_id, salt, ARMS) == assign_many([unit_id], salt, ARMS)[0]


@settings(max_examples=25, deadline=None)
@given(
    raw=st.lists(st.integers(1, 100), min_size=2, max_size=5),
    salt=st.text(max_size=10),
)
def test_respects_weights(raw: list[int], salt: str) -> None:
    weights = np.array(raw) / sum(raw)
    arms = [(f"arm{i}", float(w)) for i, w in enumerate(weights)]
    n = 20_000
    got = assign_many((str(i) for i in range(n)), salt, arms)
    shares = np.array([np.mean(got == name) for name, _ in arms])
    tolerance = 4 * np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(shares - weights) <= tolerance)


def test_buckets_are_uniform() -> None:
    values = buckets((f"id{i}" for i in range(50_000)), "uniform")
    histogram, _ = np.histogram(values, bins=10, range=(0, 1))
    assert histogram.min() > 4700 and histogram.max() < 5300
