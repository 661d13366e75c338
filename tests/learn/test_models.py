"""Conformance suite run over every registered recommender."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models import MODELS, Recommender, create, load_model

N_USERS, N_ITEMS, GROUP_ITEMS, CONSUMED = 40, 20, 10, 6
TEST_PARAMS: dict[str, dict[str, Any]] = {
    "ease": {"l2": 20.0},
    "itemknn": {"neighbours": 10},
    "rp3beta": {"neighbours": 10},
    "ials": {"factors": 2, "iterations": 20},
    "bpr": {"factors": 8, "iterations": 300, "learning_rate": 0.05},
    "hybrid": {"base": "ease", "base_params": {"l2": 20.0}, "content_weight": 0.3},
}
PERSONALISED = sorted(set(MODELS) - {"popularity"})


def group_of_item(items: np.ndarray) -> np.ndarray:
    return np.asarray(items) // GROUP_ITEMS


def checkerboard(seed: int = 7) -> sp.csr_matrix:
    """First half of the users consume only items 0-9, second half only items 10-19."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(N_USERS):
        offset = GROUP_ITEMS * (user * 2 // N_USERS)
        chosen = rng.choice(GROUP_ITEMS, size=CONSUMED, replace=False) + offset
        rows += [user] * CONSUMED
        cols += chosen.tolist()
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(N_USERS, N_ITEMS))


def content() -> sp.csr_matrix:
    """Content vectors that agree with the checkerboard: one category per item group."""
    groups = group_of_item(np.arange(N_ITEMS))
    return sp.csr_matrix((np.ones(N_ITEMS, dtype=np.float32), (np.arange(N_ITEMS), groups)))


def fitted(name: str, matrix: sp.csr_matrix | None = None) -> Recommender:
    """``name`` fitted on the checkerboard; the models that learn from content get some."""
    return create(name, content=content(), **TEST_PARAMS.get(name, {})).fit(
        checkerboard() if matrix is None else matrix
    )


def row_of(items: list[int]) -> sp.csr_matrix:
    data = np.ones(len(items), dtype=np.float32)
    return sp.csr_matrix((data, ([0] * len(items), items)), shape=(1, N_ITEMS))


def test_registry_names_match_classes() -> None:
    assert set(MODELS) >= {"popularity", "itemknn", "ials", "bpr", "ease", "rp3beta", "hybrid"}
    for name, cls in MODELS.items():
        assert cls.name == name


def test_create_rejects_unknown_model() -> None:
    with pytest.raises(ValidationError):
        create("no-such-model")


@pytest.mark.parametrize("name", PERSONALISED)
def test_checkerboard_group_items_first(name: str) -> None:
    matrix = checkerboard()
    model = fitted(name, matrix)
    ids, scores = model.recommend(matrix, GROUP_ITEMS - CONSUMED)
    expected = (np.arange(N_USERS) * 2 // N_USERS)[:, None]
    assert (group_of_item(ids) == expected).all()
    assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("name", PERSONALISED)
def test_fold_in_unknown_user_follows_new_row(name: str) -> None:
    model = fitted(name)
    ids, _ = model.recommend(row_of([11, 13, 15, 17]), 4, user_ids=np.array([-1]))
    assert (group_of_item(ids) == 1).all()


@pytest.mark.parametrize("name", PERSONALISED)
def test_fold_in_changes_with_newest_events(name: str) -> None:
    """A trained user whose current row moved to group B gets group-B items."""
    model = fitted(name)
    ids, _ = model.recommend(row_of([10, 12, 14, 16, 18]), 4, user_ids=np.array([0]))
    assert (group_of_item(ids) == 1).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_consumed_items_excluded_by_default(name: str) -> None:
    matrix = checkerboard()
    ids, _ = fitted(name, matrix).recommend(matrix, 5)
    for user in range(N_USERS):
        assert not set(ids[user]) & set(matrix[user].indices)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_empty_exclude_allows_consumed_items(name: str) -> None:
    matrix = checkerboard()
    empty = sp.csr_matrix(matrix.shape, dtype=np.float32)
    ids, _ = fitted(name, matrix).recommend(matrix, N_ITEMS, exclude=empty)
    assert (ids >= 0).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_allowed_mask_respected(name: str) -> None:
    matrix = checkerboard()
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[[1, 5, 12, 19]] = True
    ids, scores = fitted(name, matrix).recommend(matrix, 6, allowed=allowed)
    valid = ids >= 0
    assert allowed[ids[valid]].all()
    assert np.isneginf(scores[~valid]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_k_beyond_catalogue_pads(name: str) -> None:
    matrix = checkerboard()
    ids, scores = fitted(name, matrix).recommend(matrix[:3], N_ITEMS + 5)
    assert ids.shape == scores.shape == (3, N_ITEMS + 5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ((ids >= 0).sum(axis=1) == N_ITEMS - CONSUMED).all()
    assert (ids[:, N_ITEMS - CONSUMED :] == -1).all()
    assert np.isneginf(scores[:, N_ITEMS - CONSUMED :]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_k_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        fitted(name).recommend(checkerboard(), 0)
    assert info.value.field == "k"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    matrix = checkerboard()
    model = fitted(name, matrix)
    model.save(tmp_path)
    manifest = json.loads((tmp_path / "model.json").read_text())
    assert manifest["name"] == name and manifest["params"] == model.params()
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model)
    before = model.recommend(matrix, 5)
    after = loaded.recommend(matrix, 5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-5)
    np.testing.assert_array_equal(model.similar_items(3, 4)[0], loaded.similar_items(3, 4)[0])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_result(name: str) -> None:
    matrix = checkerboard()
    first = fitted(name, matrix).recommend(matrix, 5)
    second = fitted(name, matrix).recommend(matrix, 5)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_allclose(first[1], second[1], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_matches_recommend(name: str) -> None:
    matrix = checkerboard()
    model = fitted(name, matrix)
    ids, scores = model.recommend(matrix[:4], 3)
    np.testing.assert_allclose(model.score(matrix[:4], ids), scores, rtol=1e-5)
    assert model.score(matrix[:4], np.array([0, 1])).shape == (4, 2)


@pytest.mark.parametrize("name", PERSONALISED)
def test_similar_items_stay_in_group(name: str) -> None:
    ids, _ = fitted(name).similar_items(2, 3)
    assert 2 not in ids
    assert (group_of_item(ids) == 0).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_corrupt_arrays_raise_model_error(name: str, tmp_path: Path) -> None:
    fitted(name).save(tmp_path)
    (tmp_path / "arrays.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelError):
        load_model(tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_missing_arrays_raise_model_error(name: str, tmp_path: Path) -> None:
    fitted(name).save(tmp_path)
    (tmp_path / "arrays.npz").unlink()
    with pytest.raises(ModelError, match=r"arrays\.npz"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_newer_format_raises_model_error(name: str, tmp_path: Path) -> None:
    fitted(name).save(tmp_path)
    manifest = json.loads((tmp_path / "model.json").read_text())
    manifest["format_version"] += 1
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="newer"):
        MODELS[name].load(tmp_path)


def test_missing_or_garbled_manifest_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError):
        load_model(tmp_path)


def test_popularity_ranks_by_column_sum() -> None:
    matrix = sp.csr_matrix(np.array([[1, 0, 3], [1, 0, 0], [0, 1, 1]], dtype=np.float32))
    ids, scores = (
        create("popularity").fit(matrix).recommend(matrix, 3, exclude=sp.csr_matrix((3, 3)))
    )
    np.testing.assert_array_equal(ids[0], [2, 0, 1])
    np.testing.assert_allclose(scores[0], [4, 2, 1])


def test_wrong_width_rows_rejected() -> None:
    with pytest.raises(ValidationError):
        fitted("ease").recommend(sp.csr_matrix((1, N_ITEMS + 1), dtype=np.float32), 3)
