"""Context in ranking: a re-ranker learned from logged impressions and clicks, switched on only
when its off-policy check on newer logs beats the champion's ranking; context filters; bad
context settings and values."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.errors import ConfigError, ValidationError
from dataflywheel.learn.context_rerank import LoggedLists, adjust, fit
from dataflywheel.loop.context_gate import fit_and_check, switch_off

DAY = 86_400.0
START = time.time() - 30 * DAY
ITEMS = [f"{kind}{i}" for kind in "ab" for i in range(6)]
# The champion (popularity) ranks the categories alternately: its top 3 mixes them for everyone.
RANKED = [f"{kind}{i}" for i in range(6) for kind in "ab"]
SETTINGS: dict[str, Any] = {
    "exploration": {"name": "epsilon_greedy", "epsilon": 0.4, "shadow": False},
    "seed": 0,
    "context_fields": ["device"],
    "content_cold_start": False,
}
LISTS = 3_000


def click_rate(signal: bool, device: str, item: str) -> float:
    """With signal, mobile users click category A, desktop users category B."""
    if not signal:
        return 0.2
    return 0.35 if item[0] == ("a" if device == "mobile" else "b") else 0.05


def generate(url: str, signal: bool, seed: int = 0) -> float:
    """A popularity champion, then LISTS requests served with ε-greedy (exact propensities),
    each with a device, and clicks drawn from the truth; returns the time after the last."""
    rng = np.random.default_rng(seed)
    with dfw.open(url, **SETTINGS) as wheel:
        wheel.upsert_items(
            [{"id": item, "categories": ["A" if item[0] == "a" else "B"]} for item in ITEMS]
        )
        users = [f"u{n}" for n in range(1_000)]
        weights = np.arange(len(RANKED), 0, -1, dtype=float)
        first = RANKED + list(rng.choice(RANKED, size=len(users), p=weights / weights.sum()))
        views = [
            {"user_id": user, "item_id": item, "type": "view", "timestamp": START + n}
            for n, (user, item) in enumerate(zip(users, first, strict=False))
        ]
        # A panel with longer histories gives the trainer its temporal holdout.
        views += [
            {"user_id": f"p{n}", "item_id": item, "type": "view", "timestamp": START + m}
            for n in range(60)
            for m, item in enumerate(
                rng.choice(RANKED, size=6, replace=False, p=weights / weights.sum())
            )
        ]
        assert wheel.track_many(views).accepted == len(views)
        assert wheel.train("popularity", budget=5)["status"] == "champion"
        clicks: list[dict[str, Any]] = []
        ts = START + DAY
        for n in range(LISTS):
            ts = START + DAY + n * 60.0
            device = "mobile" if rng.random() < 0.5 else "desktop"
            user = str(rng.choice(users))
            answer = wheel.recommend(user, 3, context={"device": device}, now=ts)
            assert answer["model_version"] == "v1"
            clicks += [
                {
                    "user_id": user,
                    "item_id": item["item_id"],
                    "type": "click",
                    "timestamp": ts + 1,
                    "recommendation_id": answer["recommendation_id"],
                }
                for item in answer["items"]
                if rng.random() < click_rate(signal, device, item["item_id"])
            ]
            if n % 25 == 24:  # clicks reach serving's histories as they would live
                assert wheel.track_many(clicks).accepted == len(clicks)
                clicks = []
        assert wheel.track_many(clicks).accepted == len(clicks)
        wheel.flush()
    return ts + 60.0


def top(wheel: dfw.Flywheel, device: str | None) -> list[str]:
    context = None if device is None else {"device": device}
    answer = wheel.recommend("u20", 3, context=context, exclude_consumed=False)
    return [item["item_id"] for item in answer["items"]]


def greedy(url: str) -> dfw.Flywheel:
    return dfw.open(url, **{**SETTINGS, "exploration": {"name": "greedy"}})


@pytest.mark.slow
def test_a_reranker_with_signal_passes_and_reorders_by_device(store_url: str) -> None:
    end = generate(store_url, signal=True)
    with greedy(store_url) as wheel:
        before = {device: top(wheel, device) for device in ("mobile", "desktop", None)}
        assert before["mobile"] == before["desktop"] == before[None]
        assert {item[0] for item in before[None]} == {"a", "b"}  # the base mixes categories

        report = fit_and_check(wheel.store, wheel.registry, wheel.settings, now=end)
        assert report["verdict"] == "pass" and report["active"], report["reason"]
        lifts = report["reranker"]["lifts"]["device"]
        assert lifts["mobile"]["A"] > 0 > lifts["mobile"]["B"]
        assert lifts["desktop"]["B"] > 0 > lifts["desktop"]["A"]
        evaluation = report["evaluation"]
        assert evaluation["reranked"]["low"] > evaluation["base"]["value"]
        assert evaluation["lists"] > 1_000 and report["fit"]["lists"] > 1_000

        wheel.serving.invalidate()
        mobile, desktop = top(wheel, "mobile"), top(wheel, "desktop")
        assert all(item.startswith("a") for item in mobile), mobile
        assert all(item.startswith("b") for item in desktop), desktop
        assert top(wheel, None) == before[None]  # no declared context: the base ranking
        assert top(wheel, "tablet") == before[None]  # a value never logged: no adjustment

        switch_off(wheel.store, reason="test")
        wheel.serving.invalidate()
        assert top(wheel, "mobile") == before["mobile"]


@pytest.mark.slow
def test_context_without_signal_is_refused(sqlite_url: str) -> None:
    end = generate(sqlite_url, signal=False)
    with greedy(sqlite_url) as wheel:
        before = top(wheel, "mobile")
        report = fit_and_check(wheel.store, wheel.registry, wheel.settings, now=end)
        assert report["verdict"] == "refused" and not report["active"]
        assert report["evaluation"]["reranked"]["low"] <= report["evaluation"]["base"]["value"]
        wheel.serving.invalidate()
        assert top(wheel, "mobile") == top(wheel, "desktop") == before


def test_the_fit_weights_clicks_by_inverse_propensity() -> None:
    """Half the users love A, half B, on either device, and each clicks the loved category at
    0.6, the other at 0.1: under uniform display every (device, category) cell is 0.35. On
    mobile the champion shows A-lovers A with probability 0.9, everyone else A or B at 0.5.
    Unweighted, mobile's A shows go to A-lovers and its B shows to B-lovers, so B looks
    better than A on mobile; weighted by one over the logged propensity, they are even."""
    rng = np.random.default_rng(1)
    n = 100_000
    mobile = rng.random(n) < 0.5
    loves_a = rng.random(n) < 0.5
    p_a = np.where(mobile & loves_a, 0.9, 0.5)
    shows_a = rng.random(n) < p_a
    clicked = rng.random(n) < np.where(shows_a == loves_a, 0.6, 0.1)

    def logs(pscore: np.ndarray) -> LoggedLists:
        return LoggedLists(
            [str(i) for i in range(n)],
            np.zeros(n, dtype=np.int64),
            np.arange(n, dtype=float),
            ["v1"] * n,
            ["epsilon_greedy"] * n,
            [{"device": "mobile" if m else "desktop"} for m in mobile],
            np.where(shows_a, 0, 1)[:, None],
            pscore[:, None],
            clicked.astype(float)[:, None],
            {0: ["A"], 1: ["B"]},
        )

    weighted = fit(logs(np.where(shows_a, p_a, 1 - p_a)), ["device"]).lifts["device"]
    naive = fit(logs(np.ones(n)), ["device"]).lifts["device"]
    assert naive["mobile"]["B"] - naive["mobile"]["A"] > 0.1
    assert abs(weighted["mobile"]["B"] - weighted["mobile"]["A"]) < 0.05
    assert abs(weighted["desktop"]["B"] - weighted["desktop"]["A"]) < 0.05


def test_adjustment_is_bounded_and_keeps_the_top_candidates_on_top() -> None:
    scores = np.arange(150, dtype=float)  # 50..149 are the top 100
    lifts = np.zeros(150)
    lifts[60] = 1.0
    lifts[149] = -1.0
    out = adjust(scores, lifts)
    spread = 149.0 - 50.0
    assert out[60] - scores[60] == pytest.approx(0.5 * spread)
    assert out[149] - scores[149] == pytest.approx(-0.5 * spread)
    assert out[:50].max() < out[50:].min()  # outside the top 100 stays below it
    assert np.argsort(-out)[0] == 148


def test_a_context_filter_keeps_the_items_whose_attribute_matches(sqlite_url: str) -> None:
    settings = {"context_fields": ["page"], "context_filters": {"page": "section"}}
    with dfw.open(sqlite_url, **settings) as wheel:
        wheel.upsert_items(
            [
                {"id": f"i{n}", "attributes": {"section": "sports" if n % 2 else "home"}}
                for n in range(8)
            ]
        )
        wheel.track_many([{"user_id": "u", "item_id": f"i{n}", "type": "view"} for n in range(8)])
        sports = wheel.recommend("new", 8, context={"page": "sports"})
        assert {i["item_id"] for i in sports["items"]} == {"i1", "i3", "i5", "i7"}
        own = wheel.recommend(
            "new", 8, context={"page": "sports"}, filter={"attributes": {"section": "home"}}
        )
        assert {i["item_id"] for i in own["items"]} == {"i0", "i2", "i4", "i6"}
        assert len(wheel.recommend("new", 8, context={"other": 1})["items"]) == 8
        with pytest.raises(ValidationError) as bad:
            wheel.recommend("new", 8, context={"page": ["sports"]})
        assert bad.value.field == "context.page"


def test_a_bad_declared_context_value_is_a_422_naming_it(sqlite_url: str) -> None:
    from dataflywheel.api.app import create_app
    from dataflywheel.config import load_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    settings = load_settings(db=sqlite_url, context_fields=["device"])
    with TestClient(create_app(settings)) as client:
        bad = client.post("/v1/recommendations", json={"user_id": "u", "context": {"device": {}}})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "context.device"
        fine = {"user_id": "u", "context": {"device": "mobile", "other": {"x": [1]}}}
        assert client.post("/v1/recommendations", json=fine).status_code == 200


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"context_fields": ["dev ice"]}, "context_fields.0"),
        ({"context_fields": ["device", "device"]}, "context_fields"),
        ({"context_fields": ["device"], "context_filters": {"page": "section"}}, "context_filters"),
    ],
)
def test_bad_context_settings_name_the_field(
    sqlite_url: str, settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as bad:
        dfw.open(sqlite_url, **settings)
    assert bad.value.details["field"] == field
    assert field.split(".")[0] in str(bad.value)


def test_fitting_without_declared_fields_names_the_setting(sqlite_url: str) -> None:
    with dfw.open(sqlite_url) as wheel, pytest.raises(ConfigError) as bad:
        fit_and_check(wheel.store, wheel.registry, wheel.settings)
    assert bad.value.details["field"] == "context_fields"
