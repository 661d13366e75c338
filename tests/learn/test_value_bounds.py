"""Huge event values: refused at ingest on every path, clipped when training on what is stored,
and a model that fails in the search is skipped instead of stopping it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import dataflywheel as dfw
from dataflywheel.api.app import create_app
from dataflywheel.config import load_settings
from dataflywheel.errors import TrainingError, ValidationError
from dataflywheel.ingest.importer import EventImporter
from dataflywheel.learn.matrix import MAX_WEIGHT, build_matrix
from dataflywheel.learn.models import MODELS, Popularity, create
from dataflywheel.learn.search import search
from dataflywheel.learn.snapshot import take_snapshot
from dataflywheel.store.bulk import insert_events, select_keys

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


def history(n_users: int = 30, per_user: int = 10) -> list[dict[str, object]]:
    """Each user watches ``per_user`` items of one of two groups, an hour apart."""
    start = time.time() - 10 * 86_400
    return [
        {
            "user_id": f"u{u}",
            "item_id": f"i{(u % 2) * 20 + (u + j) % 20}",
            "type": "click",
            "timestamp": start + (u * per_user + j) * 3_600,
        }
        for u in range(n_users)
        for j in range(per_user)
    ]


# --- ingest: one rule for HTTP, import and Python ---------------------------------------------


def test_python_track_refuses_values_out_of_bounds(tmp_path: Path) -> None:
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}") as wheel:
        with pytest.raises(ValidationError) as caught:
            wheel.track(user_id="u", item_id="i", type="watch", value=1e308)
        assert caught.value.field == "value"
        assert "value_bounds" in caught.value.message
        with pytest.raises(ValidationError):
            wheel.track(user_id="u", item_id="i", type="rating", value=-101)
        wheel.track(user_id="u", item_id="i", type="rating", value=100)
        wheel.track(user_id="u", item_id="i", type="watch", value=-1e6)


def test_bounds_are_configurable_per_type(tmp_path: Path) -> None:
    settings = {"value_bounds": {"rating": (1.0, 5.0)}}
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}", **settings) as wheel:
        with pytest.raises(ValidationError, match=r"outside \[1, 5\]"):
            wheel.track(user_id="u", item_id="i", type="rating", value=6)
        # Without a "*" entry the other types keep the built-in ±1e6.
        with pytest.raises(ValidationError):
            wheel.track(user_id="u", item_id="i", type="watch", value=2e6)
        wheel.track(user_id="u", item_id="i", type="watch", value=500.0)


def test_http_batch_rejects_only_the_event_out_of_bounds(tmp_path: Path) -> None:
    settings = load_settings(db=f"sqlite:///{tmp_path / 'f.db'}")
    events = [
        {"user_id": "u1", "item_id": "i1", "type": "click"},
        {"user_id": "u1", "item_id": "i2", "type": "watch", "value": 1e308},
        {"user_id": "u2", "item_id": "i1", "type": "rating", "value": 150},
        {"user_id": "u2", "item_id": "i3", "type": "rating", "value": 4.5},
        # The per-event path (a context) applies the same rule.
        {"user_id": "u3", "item_id": "i3", "type": "watch", "value": -5e6, "context": {"a": 1}},
    ]
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/events", json={"events": events})
        assert response.status_code == 200
        payload = response.json()
        assert payload["accepted"] == 2
        assert [(r["index"], r["field"]) for r in payload["rejected"]] == [
            (1, "value"),
            (2, "value"),
            (4, "value"),
        ]
        assert "outside" in payload["rejected"][0]["error"]
        assert client.get("/v1/stats").json()["events"] == 2


def test_import_rejects_rows_out_of_bounds(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,type,value\n"
        "u1,i1,click,1\n"
        "u1,i2,watch,1e308\n"
        "u2,i1,rating,-100\n"
        "u2,i2,rating,100.5\n"
        "u3,i3,watch,999999\n"
    )
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}") as wheel:
        result = EventImporter(wheel.store).run(path)
    assert (result.accepted, result.rejected) == (3, 2)
    assert [(e["row"], e["field"]) for e in result.to_dict()["errors"]] == [
        (2, "value"),
        (4, "value"),
    ]


def test_import_with_one_type_for_the_file_applies_its_bounds(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("user_id,item_id,value\nu1,i1,4\nu1,i2,1000\n")
    with dfw.open(f"sqlite:///{tmp_path / 'f.db'}") as wheel:
        result = EventImporter(wheel.store).run(path, default_type="rating")
    assert (result.accepted, result.rejected) == (1, 1)


# --- training on values stored before the bounds ----------------------------------------------


@pytest.fixture
def poisoned(store_url: str, tmp_path: Path) -> Iterator[dfw.Flywheel]:
    """A store whose history holds a 1e308 watch and a -1e308 rating, written past ingest."""
    wheel = dfw.open(store_url, artifacts=str(tmp_path / "artifacts"), train_max_trials=1)
    try:
        wheel.track_many(history())
        now = time.time()
        with wheel.store.write() as conn:
            user = select_keys(conn, "users", "user_id", ["u0"])["u0"]
            item = select_keys(conn, "items", "item_id", ["i1"])["i1"]
            insert_events(
                conn,
                [
                    ("huge-1", user, item, "watch", 1e308, now - 60, now, None, None),
                    ("huge-2", user, item + 1, "rating", -1e308, now - 30, now, None, None),
                ],
            )
        yield wheel
    finally:
        wheel.close()


def test_snapshot_clips_stored_values_to_their_bounds(poisoned: dfw.Flywheel) -> None:
    events = take_snapshot(poisoned.store, record=False).events
    assert np.isfinite(events.weight).all()
    # watch: 2 × 1e6; rating: 1 × (-100 - 2.5).
    assert events.weight.max() == 2e6
    assert events.weight.min() == -102.5


def test_ials_trains_on_a_store_holding_a_huge_value(poisoned: dfw.Flywheel) -> None:
    version = poisoned.train(model="ials", budget=30)
    assert version["name"] == "ials"
    assert np.isfinite(version["metrics"]["ndcg@10"])
    recs = poisoned.recommend("u0", k=5)
    assert len(recs["items"]) == 5
    assert all(np.isfinite(item["score"]) for item in recs["items"])


def test_matrix_caps_huge_and_non_finite_weights() -> None:
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 0, 1, 2, 0, 1])
    weights = np.array([1e308, 1e308, np.inf, np.nan, 3.0, -np.inf])
    matrix = build_matrix(users, items, weights, np.zeros(6), n_users=3, n_items=3)
    assert np.isfinite(matrix.data).all()
    assert matrix.toarray().tolist() == [[MAX_WEIGHT, 0, 0], [0, MAX_WEIGHT, 0], [3.0, 0, 0]]
    model = create("ials", factors=8, alpha=50.0, regularization=1e-3).fit(_grid(matrix))
    _, scores = model.recommend(_grid(matrix)[:3], 3)
    assert np.isfinite(scores).all()


def _grid(corner: sp.csr_matrix) -> sp.csr_matrix:
    """``corner`` in the top left of a 40 × 20 checkerboard of ones."""
    dense = np.add.outer(np.arange(40), np.arange(20)) % 2 == 0
    grid = dense.astype(np.float32)
    grid[:3, :3] = corner.toarray()
    return sp.csr_matrix(grid)


# --- the search survives a failing model ------------------------------------------------------


class Broken(Popularity):
    """A model that always fails to fit."""

    name = "broken"

    def _fit(self, matrix: sp.csr_matrix) -> None:
        raise FloatingPointError("factors diverged")


@pytest.fixture
def broken_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "broken", Broken)


def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(40), 10)
    items = (users % 2) * 15 + rng.integers(0, 15, users.size)
    return users, items, np.ones(users.size), np.tile(np.arange(10.0), 40) * 3_600


@pytest.mark.usefixtures("broken_model")
def test_a_model_that_raises_is_skipped_and_reported() -> None:
    u, i, w, t = _arrays()
    result = search(
        u,
        i,
        w,
        t,
        n_users=40,
        n_items=30,
        budget_seconds=30,
        models=["broken", "popularity"],
        max_trials=4,
        incumbent=("broken", {}, {}),
    )
    assert result.name == "popularity"
    assert {row["name"] for row in result.leaderboard} == {"popularity"}
    assert result.incumbent is None
    assert result.failed and {row["name"] for row in result.failed} == {"broken"}
    assert result.failed[0]["trial"] == "incumbent"
    assert "FloatingPointError: factors diverged" in result.failed[0]["error"]


@pytest.mark.usefixtures("broken_model")
def test_a_search_where_every_model_fails_names_the_error() -> None:
    u, i, w, t = _arrays()
    with pytest.raises(TrainingError, match="factors diverged"):
        search(
            u, i, w, t, n_users=40, n_items=30, budget_seconds=30, models=["broken"], max_trials=2
        )
