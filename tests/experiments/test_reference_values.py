"""Agreement with GrowthBook's gbstats 0.8.0 (values computed with it on the same data).

gbstats pins numpy < 2, so it is not a dependency; these figures were produced by its
``TwoSidedTTest`` / ``SequentialTwoSidedTTest`` (absolute difference, tuning 5000) on the arrays
built below. ``benchmarks/bench_statistics.py`` recomputes them live when gbstats is available.
"""

from __future__ import annotations

import numpy as np
import pytest

from dataflywheel.experiments import analyze

GBSTATS = {
    "fixed": (0.28112232370703527, 0.0009517849142570145, 0.5612928624998135, 0.049229433656569066),
    "cuped": (0.252493267718501, 0.09404829199169645, 0.41093824344530555, 0.0018384391445043224),
    "sequential": (
        0.28112232370703527,
        -0.24992070370823793,
        0.8121653511223085,
        0.5462621333265946,
    ),
}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    x_c, x_t = rng.normal(5, 2, 300), rng.normal(5, 2, 280)
    y_c = 0.7 * x_c + rng.exponential(1, 300)
    y_t = 0.7 * x_t + rng.exponential(1, 280) + 0.2
    return {"y_c": y_c, "y_t": y_t, "x_c": x_c, "x_t": x_t}


@pytest.mark.parametrize("case", sorted(GBSTATS))
def test_matches_gbstats(data: dict[str, np.ndarray], case: str) -> None:
    kwargs: dict[str, object] = {"control": data["y_c"], "treatment": data["y_t"]}
    if case == "cuped":
        kwargs |= {"pre_control": data["x_c"], "pre_treatment": data["x_t"]}
    if case == "sequential":
        kwargs["method"] = "sequential"
    result = analyze(**kwargs)  # type: ignore[arg-type]
    assert (result.lift, result.low, result.high, result.p_value) == pytest.approx(
        GBSTATS[case], rel=1e-9
    )
