"""The value of data on generated stores where the answer is known."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.errors import TrainingError, ValidationError
from dataflywheel.learn.value import assess, value_report
from dataflywheel.learn.value.cache import cache_path
from dataflywheel.learn.value.curve import fit
from dataflywheel.learn.value.slices import verdict
from value_data import START, worlds_with_noise

VERDICTS = {"carries value", "no detectable value", "harmful"}


@pytest.fixture
def noisy(tmp_path: Path) -> Iterator[dfw.Flywheel]:
    handle = dfw.open(f"sqlite:///{tmp_path / 'f.db'}")
    worlds_with_noise(handle)
    try:
        yield handle
    finally:
        handle.close()


def by_name(document: dict[str, object]) -> dict[str, dict[str, object]]:
    return {s["name"]: s for s in document["slices"]}  # type: ignore[attr-defined,index]


def test_informative_type_carries_value_and_noise_does_not(wheel: dfw.Flywheel) -> None:
    worlds_with_noise(wheel)
    document = assess(wheel.store, wheel.registry, budget=120, replicates=400)
    slices = by_name(document)
    click, view = slices["click"], slices["view"]
    assert click["kind"] == "event_type" and click["verdict"] == "carries value", click
    assert click["delta"] > 0 and click["low"] > 0  # type: ignore[operator]
    assert view["verdict"] in ("no detectable value", "harmful"), view
    kinds = {a["kind"] for a in document["advice"]}  # type: ignore[attr-defined]
    assert kinds & {"drop-signal", "no-value-signal"}
    assert document["complete"] is True and document["skipped"] == []


def test_curve_rises_with_the_share_of_data(noisy: dfw.Flywheel) -> None:
    document = assess(noisy.store, noisy.registry, budget=120, replicates=400)
    curve = document["curve"]
    assert [p["fraction"] for p in curve] == [0.125, 0.25, 0.5, 1.0]
    events = [p["events"] for p in curve]
    assert events == sorted(events) and events[-1] == document["train_events"]
    assert curve[-1]["ndcg"] > curve[0]["high"]
    for point in [*curve, *document["curve_by_time"]]:
        assert point["low"] <= point["ndcg"] <= point["high"]
    doubling = document["next_doubling"]
    assert doubling["low"] <= doubling["high"] and math.isfinite(doubling["gain"])
    # A re-measurement adds holdout noise to the fit's uncertainty: the wider interval.
    assert doubling["measured_low"] <= doubling["low"] <= doubling["high"]
    assert doubling["high"] <= doubling["measured_high"]
    assert document["curve_basis"] == "users"


def test_document_shape_matches_the_contract(noisy: dfw.Flywheel) -> None:
    document = assess(noisy.store, noisy.registry, budget=120, replicates=200)
    assert {"curve", "next_doubling", "slices", "advice", "complete"} <= set(document)
    for point in document["curve"]:
        assert set(point) >= {"fraction", "events", "ndcg", "low", "high"}
    assert set(document["next_doubling"]) >= {"gain", "low", "high"}
    for entry in document["slices"]:
        assert set(entry) >= {"kind", "name", "delta", "low", "high", "verdict"}
        assert entry["verdict"] in VERDICTS and entry["low"] <= entry["high"]
    for advice in document["advice"]:
        assert set(advice) >= {"kind", "message", "evidence"}
    # The segment attribute (3 values) is judged; the e-mail (one value per user) is not.
    segments = {s["name"] for s in document["slices"] if s["kind"] == "segment"}
    assert segments == {"segment=s0", "segment=s1", "segment=s2"}
    triggers = [a["trigger"] for a in document["advice"] if "trigger" in a]
    assert triggers and all(t["when"]["op"] == "in" for t in triggers)


def test_label_events_are_their_own_kind(noisy: dfw.Flywheel) -> None:
    noisy.track_many(
        [
            {"user_id": f"u{u}", "item_id": f"{'ab'[u % 2]}{u % 20}", "type": "label"}
            | {"timestamp": START + 10 * 86_400.0 + u}
            for u in range(120)
        ]
    )
    labels = by_name(assess(noisy.store, noisy.registry, budget=120, replicates=200))["label"]
    assert labels["kind"] == "labels" and labels["verdict"] in VERDICTS


def test_the_champion_configuration_is_measured(noisy: dfw.Flywheel) -> None:
    noisy.train("popularity", budget=5)
    document = assess(noisy.store, noisy.registry, budget=120, replicates=200)
    assert document["model"]["name"] == "popularity" and document["model"]["version"] == "v1"


def test_over_budget_the_document_says_so(noisy: dfw.Flywheel) -> None:
    document = assess(noisy.store, noisy.registry, budget=1e-6, replicates=200)
    assert document["complete"] is False
    assert any("over budget" in s for s in document["skipped"])
    assert document["curve"][-1]["fraction"] == 1.0  # the full data is always measured


def test_cache_is_kept_per_watermark(noisy: dfw.Flywheel, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    first = value_report(noisy.store, noisy.registry, artifacts, budget=120)
    assert first["cached"] is False and cache_path(noisy.store, artifacts).exists()
    again = value_report(noisy.store, noisy.registry, artifacts, refresh=True, budget=120)
    assert again["cached"] is True and again["computed_at"] == first["computed_at"]
    noisy.track(user_id="u1", item_id="b1", type="click", timestamp=START + 40 * 86_400.0)
    stale = value_report(noisy.store, noisy.registry, artifacts, budget=120)
    assert stale["cached"] is True and stale["stale"] is True
    fresh = value_report(noisy.store, noisy.registry, artifacts, refresh=True, budget=120)
    assert fresh["cached"] is False and fresh["watermark"] == first["watermark"] + 1


def test_too_little_data_and_bad_budgets_are_clear_errors(tmp_path: Path) -> None:
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}") as wheel:
        wheel.track(user_id="u", item_id="i", type="click")
        with pytest.raises(TrainingError, match="need 20"):
            assess(wheel.store, wheel.registry)
        for budget in (0, -1, math.nan, 1e9):
            with pytest.raises(ValidationError) as info:
                value_report(wheel.store, wheel.registry, tmp_path, budget=budget)
            assert info.value.field == "budget"


def test_fit_recovers_a_known_power_law() -> None:
    n = np.array([1_000.0, 2_000.0, 4_000.0, 8_000.0])
    curve = 0.5 - 3.0 * n**-0.5
    result = fit(n, np.vstack([curve, 0.1 + 0.02 * np.log2(n)]))
    gains = result.predict(16_000.0) - result.predict(8_000.0)
    truth = 3.0 * 8_000.0**-0.5 * (1 - 2**-0.5)
    assert gains[0] == pytest.approx(truth, rel=0.05)
    assert gains[1] == pytest.approx(0.02, rel=1e-6)  # the log-linear form: b per doubling


def test_verdict_follows_the_interval() -> None:
    assert verdict(0.01, 0.05) == "carries value"
    assert verdict(-0.01, 0.05) == "no detectable value"
    assert verdict(0.0, 0.0) == "no detectable value"
    assert verdict(-0.05, -0.01) == "harmful"


def test_health_shows_the_cached_measure_and_never_measures(noisy: dfw.Flywheel) -> None:
    def evidence() -> dict[int, dict[str, object]]:
        return {c["id"]: c["evidence"] for c in noisy.health()["conditions"]}

    before = evidence()
    assert "value_by_slice" not in before[1] and "value_of_more_data" not in before[2]
    assert not cache_path(noisy.store, noisy.settings.artifacts_dir()).exists()
    measured = value_report(noisy.store, noisy.registry, noisy.settings.artifacts_dir(), budget=120)
    after = evidence()
    shown = after[1]["value_by_slice"]
    assert shown["watermark"] == measured["watermark"] and shown["stale"] is False  # type: ignore[index]
    names = {s["name"] for s in shown["slices"]}  # type: ignore[index]
    assert {"click", "view"} <= names
    assert after[2]["value_of_more_data"]["next_doubling"] == measured["next_doubling"]  # type: ignore[index]
    noisy.track(user_id="u1", item_id="b1", type="click", timestamp=START + 40 * 86_400.0)
    assert evidence()[1]["value_by_slice"]["stale"] is True  # type: ignore[index]
