"""The curated public surface of dataflywheel.experiments."""

from __future__ import annotations

import inspect

import dataflywheel.experiments as experiments


def test_all_is_complete_and_importable() -> None:
    public = {
        name
        for name, value in vars(experiments).items()
        if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
    }
    assert public == set(experiments.__all__)
    assert all(hasattr(experiments, name) for name in experiments.__all__)


def test_contract_signatures() -> None:
    analyze = inspect.signature(experiments.analyze).parameters
    assert list(analyze)[:6] == [
        "control",
        "treatment",
        "pre_control",
        "pre_treatment",
        "method",
        "alpha",
    ]
    assert analyze["method"].default == "fixed" and analyze["alpha"].default == 0.05
    assert list(inspect.signature(experiments.srm).parameters)[:2] == [
        "observed_counts",
        "expected_shares",
    ]
    assert list(inspect.signature(experiments.assign).parameters) == ["unit_id", "salt", "arms"]
