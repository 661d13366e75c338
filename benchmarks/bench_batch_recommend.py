"""In-process batch recommend (top 10, consumed items excluded) on ml-latest-small.

    python benchmarks/bench_batch_recommend.py [--repeats 20]

Every user's whole history (all 100 836 ratings as interactions) is one batch of 610 rows over
9 724 items. Ours: pruned EASE with the parameters the search picks on this data (keep 200,
λ 276, binary fit) and item-kNN, through ``Recommender.recommend`` (the compiled item-item
pass); the same EASE through scipy's sparse product and the numpy top-k it replaced (why the
kernel exists); peers: implicit's item-kNN (cosine, K=100) and ALS (64 factors), each through
its own batch ``recommend``. Wall clock and CPU time are both printed (2 cores).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import CosineRecommender
from threadpoolctl import threadpool_limits

from _report import publish
from _timing import users_per_second
from dataflywheel.learn.models import EASE, ItemKNN
from dataflywheel.learn.models.base import top_k

REPO = Path(__file__).resolve().parents[1]
K = 10


def matrix_of(path: Path) -> sp.csr_matrix:
    raw = np.loadtxt(path / "ratings.csv", delimiter=",", skiprows=1, usecols=(0, 1))
    users = np.unique(raw[:, 0], return_inverse=True)[1]
    items = np.unique(raw[:, 1], return_inverse=True)[1]
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    return sp.csr_matrix((np.ones(len(raw), dtype=np.float32), (users, items)), shape=shape)


def scipy_path(model: EASE, rows: sp.csr_matrix) -> np.ndarray:
    """The previous scoring: sparse product, densify, bar consumed items, numpy top-k."""
    scores = (rows @ model._sparse).toarray()
    scores += model._unseen
    scores[np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices] = -np.inf
    return top_k(scores, K)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "batch_recommend.md"
    )
    args = parser.parse_args()
    rows = matrix_of(args.data)
    n_users = rows.shape[0]
    ease = EASE(l2=276.0, fit_binary=True, keep=200).fit(rows)
    knn = ItemKNN(neighbours=100).fit(rows)
    implicit_knn = CosineRecommender(K=100)
    implicit_als = AlternatingLeastSquares(factors=64, iterations=10, random_state=0)
    with threadpool_limits(1, "blas"):
        implicit_knn.fit(rows, show_progress=False)
        implicit_als.fit(rows, show_progress=False)
    every = np.arange(n_users)
    same = np.array_equal(ease.recommend(rows, K)[0], scipy_path(ease, rows))
    load = os.getloadavg()[0]

    def timed(call: Callable[[], Any]) -> tuple[float, float]:
        return users_per_second(call, n_users, args.repeats)

    results = [
        (
            "ours: pruned EASE, compiled pass",
            timed(lambda: ease.recommend(rows, K)),
        ),
        (
            "ours: item-kNN (100), compiled pass",
            timed(lambda: knn.recommend(rows, K)),
        ),
        (
            "pruned EASE through scipy + numpy top-k",
            timed(lambda: scipy_path(ease, rows)),
        ),
        (
            "implicit item-kNN cosine (K=100)",
            timed(lambda: implicit_knn.recommend(every, rows, N=K)),
        ),
        (
            "implicit ALS (64 factors)",
            timed(lambda: implicit_als.recommend(every, rows, N=K)),
        ),
    ]
    ours = results[0][1][0]
    lines = [
        "# In-process batch recommend: ml-latest-small, top 10, consumed items excluded",
        "",
        f"Command: `python benchmarks/bench_batch_recommend.py --repeats {args.repeats}` "
        f"(machine: {os.cpu_count()} cores, no GPU; load average {load:.1f} at the start).",
        f"One batch = all {n_users} users' whole histories over {rows.shape[1]} items, "
        f"{args.repeats} batches timed after a warm-up.",
        "",
        "| what | users/s (wall) | users/s (CPU) | ours (pruned EASE) / this |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {wall:,.0f} | {cpu:,.0f} | {ours / wall:.2f}x |"
            for name, (wall, cpu) in results
        ),
        "",
        f"The compiled pass and the scipy path return the same lists: {same}.",
    ]
    publish(lines, args.output)


if __name__ == "__main__":
    main()
