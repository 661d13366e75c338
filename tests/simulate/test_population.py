"""Generated and ratings-based populations: shapes, release over time, validation of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.simulate.population import generate_population
from dataflywheel.simulate.ratings import population_from_ratings


def test_generated_population_releases_items_over_time() -> None:
    pop = generate_population(100, 300, days=30, rng=np.random.default_rng(1))
    assert pop.n_items == 300 == len(pop.categories)
    assert (pop.release_day <= 0).sum() == 210
    assert pop.release_day.max() == 30
    tastes = pop.draw_users(5, np.random.default_rng(2))
    day_one = pop.utility(tastes, 1)
    assert day_one.shape == (5, 300)
    assert np.isneginf(day_one[:, pop.release_day > 1]).all()
    assert np.isfinite(pop.utility(tastes, 30)).all()
    assert len(set(pop.categories)) > 3


def test_new_items_are_more_appealing_than_old_ones() -> None:
    pop = generate_population(50, 400, days=30, rng=np.random.default_rng(3))
    tastes = pop.draw_users(50, np.random.default_rng(4))
    utility = pop.utility(tastes, 30).mean(axis=0)
    fresh = pop.release_day >= 25
    old = pop.release_day <= -30
    assert utility[fresh].mean() > utility[old].mean()


def write_ratings(path: Path, header: str = "userId,movieId,rating,timestamp") -> Path:
    rng = np.random.default_rng(5)
    rows = [header]
    for user in range(60):
        for movie in rng.choice(80, size=25, replace=False):
            rows.append(f"{user},{movie},{rng.integers(1, 11) / 2},{1_000_000 + movie * 100}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_population_from_ratings(tmp_path: Path) -> None:
    pop = population_from_ratings(
        write_ratings(tmp_path / "ratings.csv"), days=10, rng=np.random.default_rng(6)
    )
    assert pop.n_items == 80
    assert pop.item_ids[0].startswith("m")
    assert pop.user_pool.shape == (60, 8)
    # The movies first rated last are released during the simulation.
    late = [int(pop.item_ids[i][1:]) for i in np.flatnonzero(pop.release_day > 0)]
    assert min(late) >= 50


def test_ratings_file_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = write_ratings(tmp_path / "ratings.csv", header="userId,itemId,rating,timestamp")
    with pytest.raises(ValidationError, match="movieId") as caught:
        population_from_ratings(path, days=10, rng=np.random.default_rng(0))
    assert caught.value.field == "ratings"


def test_missing_ratings_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        population_from_ratings(tmp_path / "nope.csv", days=10, rng=np.random.default_rng(0))
