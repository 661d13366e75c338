"""Cold start: ranking a given list, new items served from their content at once, content
vectors kept incrementally, and segment popularity for users without events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import dataflywheel as dfw
from dataflywheel.errors import ValidationError
from dataflywheel.learn.content import ContentIndex, profiles
from dataflywheel.serve.content import ContentScorer, _dot_rows, _profile

START = 1_700_000_000.0
WORDS = [
    "amber",
    "birch",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "indigo",
    "jasper",
    "kestrel",
    "lumen",
]


def title(n: int) -> str:
    """A distinct two-word title per item, as real titles are (no word shared by a genre)."""
    return f"{WORDS[n % len(WORDS)]} {WORDS[(n * 5 + 3) % len(WORDS)]}{n}"


def catalogue(wheel: dfw.Flywheel, items: int = 40, users: int = 60, seed: int = 0) -> None:
    """Even users click only action items a*, odd users only drama items b*."""
    half = items // 2
    wheel.upsert_items(
        [
            {
                "id": f"{kind}{i}",
                "categories": [genre],
                "attributes": {"title": title(n * half + i)},
            }
            for n, (kind, genre) in enumerate([("a", "action"), ("b", "drama")])
            for i in range(half)
        ]
    )
    rng = np.random.default_rng(seed)
    events = [
        {
            "user_id": f"u{u}",
            "item_id": f"{'a' if u % 2 == 0 else 'b'}{i}",
            "type": "click",
            "timestamp": START + u * 100 + n,
        }
        for u in range(users)
        for n, i in enumerate(rng.choice(half, size=8, replace=False))
    ]
    assert wheel.track_many(events).accepted == len(events)


@pytest.fixture
def trained(store_url: str) -> Iterator[dfw.Flywheel]:
    with dfw.open(store_url, exploration={"name": "greedy"}) as wheel:
        catalogue(wheel)
        assert wheel.train("itemknn", budget=5)["status"] == "champion"
        yield wheel


def ids(answer: dict[str, object]) -> list[str]:
    return [item["item_id"] for item in answer["items"]]  # type: ignore[attr-defined]


def test_a_new_item_reaches_its_genre_fans_on_the_next_request(trained: dfw.Flywheel) -> None:
    before = trained.recommend("u0", 10)
    assert set(i[0] for i in ids(before)) == {"a"}
    trained.upsert_items(
        [{"id": "fresh", "categories": ["action"], "attributes": {"title": "Quartz Voyage"}}]
    )
    after = trained.recommend("u0", 10)
    assert "fresh" in ids(after), ids(after)
    fresh = next(i for i in after["items"] if i["item_id"] == "fresh")
    assert np.isfinite(fresh["score"]) and fresh["propensity"] == 1.0
    # A drama fan does not get it in their top 10: it is ranked by content, not pushed.
    assert "fresh" not in ids(trained.recommend("u1", 10))


def test_with_content_cold_start_off_a_new_item_waits_for_a_retrain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with dfw.open(url, exploration={"name": "greedy"}, content_cold_start=False) as wheel:
        catalogue(wheel)
        wheel.train("itemknn", budget=5)
        wheel.upsert_items(
            [{"id": "fresh", "categories": ["action"], "attributes": {"title": "Quartz Voyage"}}]
        )
        assert "fresh" not in ids(wheel.recommend("u0", 40))


def test_rank_returns_only_the_candidates_ranked(trained: dfw.Flywheel) -> None:
    trained.upsert_items([{"id": "new-drama", "categories": ["drama"]}])
    candidates = ["b3", "a19", "new-drama", "a18", "a19"]
    answer = trained.rank("u0", candidates)
    assert set(answer) == {"recommendation_id", "model_version", "policy", "experiment", "items"}
    assert answer["model_version"] == "v1"
    ranked = ids(answer)
    consumed = {i for i in candidates if i in trained_consumed(trained, "u0")}
    assert sorted(ranked) == sorted(set(candidates) - consumed)  # each once, consumed left out
    actions = [n for n, i in enumerate(ranked) if i.startswith("a")]
    others = [n for n, i in enumerate(ranked) if not i.startswith("a")]
    assert max(actions, default=-1) < min(others), ranked  # the user's genre first
    assert all(item["propensity"] == 1.0 for item in answer["items"])
    assert ids(trained.rank("u0", candidates, k=1)) == ranked[:1]
    kept = trained.rank("u0", ["a0", "a1", "a2"], exclude_consumed=False)
    assert sorted(ids(kept)) == ["a0", "a1", "a2"]
    trained.flush()
    with trained.store.read() as conn:
        logged = conn.execute(
            text("SELECT count(*) FROM impressions WHERE recommendation_id = :rid"),
            {"rid": answer["recommendation_id"]},
        ).scalar_one()
    assert logged == 1


def trained_consumed(wheel: dfw.Flywheel, user_id: str) -> set[str]:
    with wheel.store.read() as conn:
        return {
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT i.item_id FROM events e JOIN items i ON i.idx = e.item_idx "
                f"JOIN users u ON u.idx = e.user_idx WHERE u.user_id = '{user_id}'"
            )
        }


def test_rank_rejects_unknown_ids_by_index_and_bad_lists(trained: dfw.Flywheel) -> None:
    with pytest.raises(ValidationError) as unknown:
        trained.rank("u0", ["a1", "never-seen"])
    assert unknown.value.field == "candidates[1]"
    for bad in ([], "a1", [1]):
        with pytest.raises(ValidationError) as error:
            trained.rank("u0", bad)  # type: ignore[arg-type]
        assert error.value.field in ("candidates", "candidates[0]")
    with pytest.raises(ValidationError) as k:
        trained.rank("u0", ["a1"], k=0)
    assert k.value.field == "k"


def test_rank_caps_the_list_at_the_setting(store_url: str) -> None:
    with dfw.open(store_url, max_candidates=3) as wheel:
        catalogue(wheel, users=4)
        assert len(ids(wheel.rank("u0", ["b1", "b2", "b3"]))) == 3
        with pytest.raises(ValidationError) as error:
            wheel.rank("u0", ["b1", "b2", "b3", "b4"])
        assert error.value.field == "candidates"


def test_items_known_but_never_used_are_ranked_by_content(store_url: str) -> None:
    """Items in the catalogue at training time with no interaction are cold to the champion:
    their (meaningless) model scores are replaced by content scores."""
    with dfw.open(store_url, exploration={"name": "greedy"}) as wheel:
        catalogue(wheel)
        # Created first, so an unfixed tie between the two model scores (no column) puts the
        # drama item first.
        wheel.upsert_items([{"id": "idle-drama", "categories": ["drama"]}])
        wheel.upsert_items([{"id": "idle-action", "categories": ["action"]}])
        wheel.train("itemknn", budget=5)
        answer = wheel.rank("u0", ["idle-drama", "idle-action"])
        assert ids(answer) == ["idle-action", "idle-drama"]


def test_content_index_is_incremental() -> None:
    index = ContentIndex()
    index.update(
        [
            (1, ["action"], {"title": "red planet"}),
            (2, ["drama"], {"title": "blue lagoon"}),
            (3, [], {"title": "red lagoon", "studio": "Ghibli"}),
        ]
    )
    first = index.matrix(4)
    assert first.shape[0] == 4 and first[0].nnz == 0
    assert np.allclose(np.asarray(first.multiply(first).sum(axis=1)).ravel()[1:], 1.0)
    # A new item with a category never seen before is vectorised alone, with a new column.
    index.update([(4, ["western"], {"title": "red dust"})])
    second = index.matrix(5)
    assert second.shape[1] == first.shape[1] + 1
    assert (second[:4, : first.shape[1]] != first).nnz == 0
    user = profiles(np.array([[0, 0, 0, 0, 1.0]]), second)
    similarity = (second @ user.T).toarray().ravel()
    assert similarity.argmax() == 4 and similarity[1] > similarity[2]  # "red" is shared
    # A complete reload without item 2 (erased) drops its vector.
    index.update([(1, ["action"], {"title": "red planet"})], complete=True)
    assert index.matrix(5)[2].nnz == 0


class _Rebuilt(ContentIndex):
    """A catalogue whose content matrix is replaced every time an item arrives, the previous
    one freed first: the next matrix then usually takes its memory, and so its id()."""

    def __init__(self, items: int) -> None:
        super().__init__()
        self.items = items
        self.current = self._build()

    def _build(self) -> sp.csr_matrix:
        ones = np.ones(self.items, dtype=np.float32)
        columns = np.zeros(self.items, dtype=np.int32)
        indptr = np.concatenate([[0, 0], np.arange(1, self.items)]).astype(np.int32)
        return sp.csr_matrix((ones[1:], columns[1:], indptr), shape=(self.items, 1))

    def add(self) -> None:
        self.items += 1
        self.current = None  # type: ignore[assignment]
        self.current = self._build()

    def matrix(self, size: int) -> sp.csr_matrix:
        return self.current


def test_every_item_added_after_the_champion_is_scored_from_content() -> None:
    # An answer cached for an old content matrix must never be taken for a new one, even when
    # the new one sits where the old one was freed.
    index = _Rebuilt(11)  # items 1..10 described (0 is no item)
    popularity = np.ones(11)  # the champion knows items 1..10, all warm
    scorer = ContentScorer(index)
    for new in range(11, 111):
        index.add()
        allowed = np.ones(new + 1, dtype=bool)
        assert scorer.unseen(allowed, 11, popularity).tolist() == list(range(11, new + 1))


def test_a_new_user_with_a_segment_gets_what_the_segment_likes(store_url: str) -> None:
    with dfw.open(store_url, exploration={"name": "greedy"}) as wheel:
        wheel.upsert_users(
            [{"id": f"kid{u}", "attributes": {"segment": "kids"}} for u in range(5)]
            + [{"id": f"adult{u}", "attributes": {"segment": "adults"}} for u in range(20)]
        )
        events = [
            {"user_id": f"kid{u}", "item_id": f"toy{(u + i) % 4}", "type": "click"}
            for u in range(5)
            for i in range(6)
        ] + [
            {"user_id": f"adult{u}", "item_id": f"film{(u + i) % 4}", "type": "click"}
            for u in range(20)
            for i in range(6)
        ]
        assert wheel.track_many(events).accepted == len(events)
        wheel.train("itemknn", budget=5)
        wheel.upsert_users([{"id": "newkid", "attributes": {"segment": "kids", "age": 7}}])
        answer = wheel.recommend("newkid", 4)
        assert answer["model_version"] is None  # no events: not personal
        assert sorted(ids(answer)) == ["toy0", "toy1", "toy2", "toy3"]
        # Without a declared segment (or one nobody acted in): everyone's popularity.
        wheel.upsert_users([{"id": "plain"}, {"id": "alien", "attributes": {"segment": "x"}}])
        assert sorted(ids(wheel.recommend("plain", 4))) == ["film0", "film1", "film2", "film3"]
        assert sorted(ids(wheel.recommend("alien", 4))) == ["film0", "film1", "film2", "film3"]


def test_candidates_without_any_score_are_ranked_last(trained: dfw.Flywheel) -> None:
    """A new item with no metadata has no content score: recommend() leaves it out, rank()
    still returns it, after the scored ones."""
    trained.upsert_items([{"id": "bare"}])
    assert "bare" not in ids(trained.recommend("u0", 40))
    assert ids(trained.rank("u0", ["bare", "b7", "a11"]))[-1] == "bare"


@settings(max_examples=40, deadline=None)
@given(
    genres=st.lists(st.integers(0, 3), min_size=12, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_calibration_keeps_the_content_order_within_the_champion_range(
    genres: list[int], seed: int
) -> None:
    """A cold item's score rises with its content score and stays within the user's champion
    scores: ranking cold items among themselves is ranking them by content."""
    rng = np.random.default_rng(seed)
    index = ContentIndex()
    n = len(genres)
    index.update(
        (i, [f"g{g}", f"h{rng.integers(3)}"], {"title": f"w{rng.integers(5)}"})
        for i, g in enumerate(genres)
    )
    popularity = rng.integers(0, 4, n).astype(float)
    scores = rng.normal(size=n)
    wanted = np.flatnonzero(popularity == 0)
    row = np.zeros((1, n))
    row[0, rng.choice(n, size=3, replace=False)] = 1.0
    vectors = index.matrix(n)
    cosine = (vectors[wanted] @ profiles(row, vectors).T).toarray().ravel()
    warm = scores[popularity > 0]
    ContentScorer(index, prior_weight=0.0).fill(scores, sp.csr_matrix(row), wanted, popularity)
    filled = scores[wanted]
    assert np.isfinite(filled).all()
    if warm.size:
        assert (filled >= warm.min() - 1e-9).all() and (filled <= warm.max() + 1e-9).all()
    order = np.argsort(cosine, kind="stable")
    assert (np.diff(filled[order]) >= -1e-9).all()


@settings(max_examples=40, deadline=None)
@given(n_described=st.integers(10, 40), seed=st.integers(0, 10_000))
def test_the_content_prior_fits_whatever_the_fold_draw(n_described: int, seed: int) -> None:
    # Ten described items are enough for five folds: each fold must hold some and leave some.
    rng = np.random.default_rng(seed)
    vectors = sp.csr_matrix(rng.random((n_described, 6)).astype(np.float32))
    popularity = rng.integers(1, 50, n_described).astype(np.float64)
    scorer = ContentScorer(ContentIndex(), prior_weight=0.1, seed=seed)
    fit = scorer._make(vectors, popularity)
    assert np.isfinite(fit.prior(vectors, np.arange(n_described))).all()


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(1, 30),
    width=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_the_request_path_content_products_match_scipy(
    n_items: int, width: int, density: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    vectors = sp.random(
        n_items, width, density=density, format="csr", dtype=np.float32, random_state=rng
    )
    history = sp.random(1, n_items + 3, density=0.5, format="csr", random_state=rng)
    history.data -= 0.3  # some negative weights, which a profile ignores
    dense = rng.normal(size=width)
    rows = rng.integers(0, n_items, size=rng.integers(0, 8))  # repeats and none too
    assert np.allclose(_dot_rows(vectors, rows, dense), vectors[rows] @ dense, atol=1e-5)
    expected = profiles(history, vectors).toarray().ravel()
    assert np.allclose(_profile(history, vectors), expected, atol=1e-5)
