"""A population whose ground truth comes from a real ratings file (MovieLens format).

A truncated SVD of the bias-removed rating matrix gives user and item factors; the item bias
(shrunk mean rating) is the item's quality; items released late in the data's history are released
late in the simulation; items far more popular than their ratings justify are the bait.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from dataflywheel.errors import ValidationError
from dataflywheel.simulate.population import Population, category_of, release_days

__all__ = ["REQUIRED_COLUMNS", "population_from_ratings"]

REQUIRED_COLUMNS = ("userId", "movieId", "rating")
# Target spread of the taste term θ·φ over random pairs, the same as generated populations.
TASTE_STD = 0.45
SHRINKAGE = 10.0


def read_ratings(path: Path) -> pa.Table:
    """The file as a table with the required columns, or a clear error naming what is wrong."""
    if not path.is_file():
        raise ValidationError(f"ratings file {path} does not exist", field="ratings")
    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"cannot read {path} as CSV: {exc}", field="ratings") from None
    for column in REQUIRED_COLUMNS:
        if column not in table.column_names:
            raise ValidationError(
                f"{path} has no column {column!r}; expected MovieLens format "
                "userId,movieId,rating[,timestamp]",
                field="ratings",
            )
        if not pa.types.is_integer(table[column].type) and not pa.types.is_floating(
            table[column].type
        ):
            raise ValidationError(f"column {column!r} of {path} must be numeric", field="ratings")
    if table.num_rows == 0:
        raise ValidationError(f"{path} holds no ratings", field="ratings")
    return table


def population_from_ratings(
    path: Path, days: int, rng: np.random.Generator, max_items: int = 1500, dim: int = 8
) -> Population:
    """Fit factors to the ``max_items`` most rated items of ``path``; see the module docstring."""
    table = read_ratings(path)
    users = table["userId"].to_numpy()
    movies = table["movieId"].to_numpy().astype(np.int64)
    ratings = table["rating"].to_numpy().astype(np.float64)
    movie_ids, movie_index, counts = np.unique(movies, return_inverse=True, return_counts=True)
    keep_movies = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    remap = np.full(movie_ids.size, -1)
    remap[keep_movies] = np.arange(keep_movies.size)
    rows_kept = remap[movie_index] >= 0
    item = remap[movie_index][rows_kept]
    _, user = np.unique(users[rows_kept], return_inverse=True)
    rating = ratings[rows_kept]
    n_users, n_items = int(user.max()) + 1, keep_movies.size
    if min(n_users, n_items) <= dim:
        raise ValidationError(
            f"{path} has too few users or items ({n_users}, {n_items}) to fit {dim} factors",
            field="ratings",
        )

    mean = rating.mean()
    item_count = np.bincount(item, minlength=n_items).astype(np.float64)
    bias = np.bincount(item, weights=rating - mean, minlength=n_items) / (item_count + SHRINKAGE)
    residual = sp.csr_matrix((rating - mean - bias[item], (user, item)), shape=(n_users, n_items))
    u, s, vt = svds(residual, k=dim, random_state=int(rng.integers(2**31)))
    user_factors, item_factors = u * np.sqrt(s), vt.T * np.sqrt(s)
    pairs = rng.integers(0, [n_users, n_items], size=(2000, 2))
    spread = np.std(np.sum(user_factors[pairs[:, 0]] * item_factors[pairs[:, 1]], axis=1))
    factor_scale = np.sqrt(TASTE_STD / max(spread, 1e-9))
    user_factors, item_factors = user_factors * factor_scale, item_factors * factor_scale

    z_quality = (bias - bias.mean()) / (bias.std() + 1e-9)
    log_count = np.log1p(item_count)
    z_pop = (log_count - log_count.mean()) / (log_count.std() + 1e-9)
    quality = 0.5 * z_quality + 0.2 * z_pop - 0.3
    bait = np.clip(z_pop - z_quality - 1.0, 0.0, 2.0)

    order = _release_order(table, rows_kept, item, n_items)
    return Population(
        user_pool=user_factors,
        item_factors=item_factors,
        quality=quality,
        bait=bait,
        release_day=release_days(n_items, days, order, rng),
        item_ids=[f"m{int(m)}" for m in movie_ids[keep_movies]],
        categories=category_of(item_factors),
    )


def _release_order(
    table: pa.Table, rows_kept: np.ndarray, item: np.ndarray, n_items: int
) -> np.ndarray:
    """Items by the time of their first rating (by id when the file has no timestamps)."""
    if "timestamp" not in table.column_names:
        return np.arange(n_items, dtype=np.int64)
    stamps = pc.cast(table["timestamp"], pa.float64()).to_numpy()[rows_kept]
    first = np.full(n_items, np.inf)
    np.minimum.at(first, item, stamps)
    return np.argsort(first, kind="stable").astype(np.int64)
