"""Recommendation quality on MovieLens (ml-latest-small): our automatic search vs tuned peers.

Protocol: per-user temporal holdout (each user's last 20% by time to test, users with >= 5
interactions), full ranking over all items, consumed items excluded, NDCG@10 and Recall@10.
Every rating counts as one interaction (weight 1; the rating value is not used). Peers and ours
are tuned only on a validation split carved from the training part by the same rule.
``--with-metadata`` runs ours a second time with movies.csv as item metadata (genres as
categories, the title as an attribute, as ``flywheel import items movies.csv --map id=movieId
--map categories=genres`` stores them), so the search may pick the content hybrid.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import CosineRecommender
from threadpoolctl import threadpool_limits

from _report import publish
from _timing import users_per_second
from dataflywheel.evaluation.ranking import ndcg_at_k, recall_at_k
from dataflywheel.evaluation.splits import per_user_temporal
from dataflywheel.learn.item_content import content_vectors
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models.ease import EASE
from dataflywheel.learn.search import search

REPO = Path(__file__).resolve().parents[1]
K = 10


class Split:
    """Training events, the held-out matrix and the users to evaluate."""

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        shape: tuple[int, int],
        test: np.ndarray,
    ) -> None:
        self.train_mask = ~test
        self.users, self.items, self.times = users, items, times
        self.shape = shape
        self.train = binary(users[~test], items[~test], shape)
        self.heldout = binary(users[test], items[test], shape)
        self.eval_users = np.flatnonzero(self.heldout.getnnz(axis=1))

    def score(self, recommended: np.ndarray) -> tuple[float, float]:
        held = self.heldout[self.eval_users]
        return ndcg_at_k(recommended, held, K), recall_at_k(recommended, held, K)


def binary(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape)
    matrix.data[:] = 1.0
    return matrix


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.loadtxt(path / "ratings.csv", delimiter=",", skiprows=1)
    users = np.unique(raw[:, 0], return_inverse=True)[1].astype(np.int64)
    items = np.unique(raw[:, 1], return_inverse=True)[1].astype(np.int64)
    return users, items, raw[:, 3]


def movie_content(path: Path) -> sp.csr_matrix | None:
    """Content vectors of the rated movies by the dense ids :func:`load` gives them, built from
    the records an import of movies.csv upserts, by the function training applies to them."""
    rated = np.unique(np.loadtxt(path / "ratings.csv", delimiter=",", skiprows=1, usecols=1))
    position = {int(movie): idx for idx, movie in enumerate(rated)}
    records = []
    with (path / "movies.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            idx = position.get(int(row["movieId"]))
            if idx is not None:
                records.append((idx, row["genres"].split("|"), {"title": row["title"]}))
    return content_vectors(records, len(rated))


def implicit_recs(model: Any, split: Split) -> np.ndarray:
    rows = split.train[split.eval_users]
    ids, _ = model.recommend(split.eval_users, rows, N=K, filter_already_liked_items=True)
    return np.asarray(ids, dtype=np.int64)


def fit_ials(train: sp.csr_matrix, factors: int, regularization: float, alpha: float) -> Any:
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=alpha, iterations=15, random_state=0
    )
    model.fit(train, show_progress=False)
    return model


def fit_bpr(train: sp.csr_matrix, factors: int, learning_rate: float, regularization: float) -> Any:
    model = BayesianPersonalizedRanking(
        factors=factors,
        learning_rate=learning_rate,
        regularization=regularization,
        iterations=100,
        random_state=0,
    )
    model.fit(train, show_progress=False)
    return model


def fit_knn(train: sp.csr_matrix, neighbours: int) -> Any:
    model = CosineRecommender(K=neighbours)
    model.fit(train, show_progress=False)
    return model


class Ease:
    """Plain EASE peer: binary input, recommendations from the binary row."""

    def __init__(self, train: sp.csr_matrix, l2: float) -> None:
        self.model = EASE(l2=l2).fit(train)

    def recommend(
        self, userids: np.ndarray, rows: sp.csr_matrix, N: int, filter_already_liked_items: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.model.recommend(rows, N)


def tune(
    name: str, fit: Callable[..., Any], grid: list[dict[str, Any]], valid: Split, test: Split
) -> dict[str, Any]:
    """Pick the grid point with the best validation NDCG, refit on the full training part."""
    scored = [
        (valid.score(implicit_recs(fit(valid.train, **params), valid))[0], params)
        for params in grid
    ]
    best_valid, best = max(scored, key=lambda pair: pair[0])
    ndcg, recall = test.score(implicit_recs(fit(test.train, **best), test))
    print(f"  {name}: valid {best_valid:.4f} {best} -> test {ndcg:.4f}", flush=True)
    return {"name": name, "params": best, "valid": best_valid, "ndcg": ndcg, "recall": recall}


def run_ours(
    test: Split,
    valid_mask: np.ndarray,
    budget: float,
    content: sp.csr_matrix | None = None,
    label: str = "ours",
    max_trials: int | None = None,
) -> tuple[dict[str, Any], Any]:
    mask = test.train_mask
    users, items, times = test.users[mask], test.items[mask], test.times[mask]
    result = search(
        users,
        items,
        np.ones(len(users)),
        times,
        n_users=test.shape[0],
        n_items=test.shape[1],
        budget_seconds=budget,
        valid_mask=valid_mask,
        content=content,
        max_trials=max_trials,
    )
    rows = build_matrix(
        users,
        items,
        np.ones(len(users)),
        times,
        n_users=test.shape[0],
        n_items=test.shape[1],
        **result.matrix_params,
    )
    ids, _ = result.model.recommend(rows[test.eval_users], K, exclude=test.train[test.eval_users])
    ndcg, recall = test.score(ids)
    print(
        f"  {label}: {result.name} {result.params} {result.matrix_params}",
        f"valid {result.metrics['ndcg@10']:.4f} -> test {ndcg:.4f}",
        f"({len(result.leaderboard)} trials)",
        flush=True,
    )
    row = {
        "name": f"{label}: search -> {result.name}",
        "params": {**result.params, **result.matrix_params},
        "valid": result.metrics["ndcg@10"],
        "ndcg": ndcg,
        "recall": recall,
    }
    return row, result


def _speed(result: Any, rows: sp.csr_matrix) -> str:
    wall, cpu = users_per_second(lambda: result.model.recommend(rows, K), rows.shape[0], 3)
    return f"{result.name} {result.params}: {wall:,.0f} users/s wall, {cpu:,.0f} users/s CPU"


def _hybrid(result: Any) -> str:
    """The best hybrid trial's validation NDCG against the best trial without content."""
    hybrid = [row["ndcg@10"] for row in result.leaderboard if row["name"] == "hybrid"]
    plain = [row["ndcg@10"] for row in result.leaderboard if row["name"] != "hybrid"]
    if not hybrid or not plain:
        return ""
    return (
        f" ({len(hybrid)} hybrid; best hybrid valid {max(hybrid):.4f}, "
        f"best without content {max(plain):.4f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument(
        "--with-metadata",
        action="store_true",
        help="also run ours with movies.csv titles and genres as item metadata",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="stop each search after this many trials (with a large --budget: a result that "
        "does not depend on the machine's load)",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "quality_movielens.md"
    )
    args = parser.parse_args()
    users, items, times = load(args.data)
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    _, test_mask = per_user_temporal(users, items, times, fraction=0.2, min_interactions=5)
    test = Split(users, items, times, shape, test_mask)
    tm = ~test_mask
    _, valid_inner = per_user_temporal(
        users[tm], items[tm], times[tm], fraction=0.2, min_interactions=5
    )
    valid_mask = np.zeros(len(users), dtype=bool)
    valid_mask[np.flatnonzero(tm)[valid_inner]] = True
    valid = Split(users, items, times, shape, valid_mask | test_mask)
    valid.heldout = binary(users[valid_mask], items[valid_mask], shape)
    valid.eval_users = np.flatnonzero(valid.heldout.getnnz(axis=1))
    print(f"{shape[0]} users, {shape[1]} items, {len(users)} ratings; tuning peers", flush=True)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(1, "blas"):
        rows.append(
            tune(
                "implicit iALS",
                fit_ials,
                [
                    {"factors": f, "regularization": r, "alpha": a}
                    for f in (64, 128)
                    for r in (0.01, 0.1, 1.0)
                    for a in (1.0, 10.0)
                ],
                valid,
                test,
            )
        )
        rows.append(
            tune(
                "implicit BPR",
                fit_bpr,
                [
                    {"factors": f, "learning_rate": lr, "regularization": r}
                    for f in (64, 128)
                    for lr in (0.01, 0.05)
                    for r in (0.001, 0.01)
                ],
                valid,
                test,
            )
        )
        rows.append(
            tune(
                "implicit item-kNN (cosine)",
                fit_knn,
                [{"neighbours": n} for n in (20, 50, 100, 200, 400)],
                valid,
                test,
            )
        )
    rows.append(
        tune(
            "EASE (binary)",
            Ease,
            [{"l2": lam} for lam in (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)],
            valid,
            test,
        )
    )
    best_peer = max(rows, key=lambda row: row["ndcg"])
    arms = [run_ours(test, valid_mask[tm], args.budget, max_trials=args.max_trials)]
    if args.with_metadata:
        content = movie_content(args.data)
        label = "ours + titles, genres"
        arms.append(run_ours(test, valid_mask[tm], args.budget, content, label, args.max_trials))
    rows += [row for row, _ in arms]
    speeds = []
    for _, result in arms:
        served_rows = build_matrix(
            users[tm],
            items[tm],
            np.ones(int(tm.sum())),
            times[tm],
            n_users=shape[0],
            n_items=shape[1],
            **result.matrix_params,
        )
        speeds.append(_speed(result, served_rows))
    exact = EASE(l2=200.0).fit(test.train)
    exact_speed = users_per_second(lambda: exact.recommend(test.train, K), test.train.shape[0], 3)
    command = f"python benchmarks/bench_quality_movielens.py --budget {args.budget:g}"
    if args.max_trials is not None:
        command += f" --max-trials {args.max_trials}"
    if args.with_metadata:
        command += " --with-metadata"
    lines = [
        "# Recommendation quality: ml-latest-small, per-user temporal holdout",
        "",
        f"Command: `{command}` (machine: {os.cpu_count()} cores, {platform.machine()}, no GPU).",
        "Protocol: each user's last 20% of ratings by time to test (users with >= 5), full ranking",
        "over all items, consumed items excluded; every rating is one interaction (weight 1).",
        "Every model is tuned only on a validation split carved from the training part by the same",
        "rule, refit on the whole training part and scored once on test.",
        "",
        "| model | tuned params | valid NDCG@10 | test NDCG@10 | test Recall@10 |",
        "|---|---|---|---|---|",
        *(
            f"| {r['name']} | `{r['params']}` | {r['valid']:.4f} | {r['ndcg']:.4f} "
            f"| {r['recall']:.4f} |"
            for r in rows
        ),
        "",
        *(
            f"Ratio {row['name']} / best peer ({best_peer['name']}): "
            f"**{row['ndcg'] / best_peer['ndcg']:.3f}** (target 1.10); search: "
            f"{len(result.leaderboard)} trials in a {args.budget:g} s budget{_hybrid(result)}."
            for row, result in arms
        ),
        f"Batch recommend (k=10, {shape[1]} items, in-process, all {shape[0]} users, "
        f"load average {os.getloadavg()[0]:.1f}): ours {'; '.join(speeds)}; "
        f"exact EASE {exact_speed[0]:,.0f} users/s wall, {exact_speed[1]:,.0f} users/s CPU.",
    ]
    publish(lines, args.output)


if __name__ == "__main__":
    main()
