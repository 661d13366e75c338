"""The ``ugc`` scenario: creators upload items with content every day, the same seed gives the
same run and the same catalogue, and engaged creators upload more."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

import dataflywheel as dfw
from dataflywheel.simulate.creators import TOPICS, Creators, generate_ugc_population
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.scenarios import get_scenario
from dataflywheel.store import schema

USERS, DAYS, SEED = 120, 6, 5
DAY = 86_400.0


def run(db: Path, seed: int = SEED) -> tuple[dict[str, Any], list[tuple[Any, ...]], float]:
    """The run's document, its catalogue (id, categories, attributes, created_at) and the start
    of its first day."""
    scenario = get_scenario("ugc")
    url = f"sqlite:///{db}"
    with open_engine(scenario, seed, db=url) as engine:
        simulation = new_simulation(engine, scenario, days=DAYS, users=USERS, seed=seed)
        simulation.run()
    items = schema.items.c
    with dfw.open(url) as wheel, wheel.store.read() as conn:
        catalogue = [
            tuple(row)
            for row in conn.execute(
                select(
                    items.item_id, items.categories, items.attributes, items.created_at
                ).order_by(items.idx)
            )
        ]
    return simulation.document(seed), catalogue, simulation.start


@cache
def first_run(tmp: str) -> tuple[dict[str, Any], list[tuple[Any, ...]], float]:
    return run(Path(tmp) / "first.db")


def test_same_seed_same_run_and_catalogue(tmp_path_factory: Any) -> None:
    tmp = str(tmp_path_factory.getbasetemp())
    document, catalogue, start = first_run(tmp)
    again, catalogue_again, start_again = run(Path(tmp) / "again.db")
    assert again == document
    shift = start_again - start
    assert [(i, c, a, t + shift) for i, c, a, t in catalogue] == catalogue_again
    assert document["summary"]["items_uploaded"] > 0


def test_new_items_every_day_carry_content_tied_to_their_vector(tmp_path_factory: Any) -> None:
    document, catalogue, start = first_run(str(tmp_path_factory.getbasetemp()))
    uploads = [row for row in catalogue if "creator_id" in row[2]]
    days = {int((row[3] - start) // DAY) + 1 for row in uploads}
    assert days == set(range(1, DAYS + 1))
    assert len(uploads) == document["summary"]["items_uploaded"]
    on_topic = 0
    for _, categories, attributes, _ in uploads:
        assert len(categories) == 2 and set(categories) <= set(TOPICS)
        assert attributes["creator_id"].startswith("u")
        words = attributes["title"].split() + attributes["description"].split()
        on_topic += sum(w in TOPICS[categories[0]] for w in words) > len(words) / 3
    # The words follow the latent vector: most items talk mostly about their top category.
    assert on_topic >= 0.8 * len(uploads)


def test_supply_kpis_of_a_run(tmp_path_factory: Any) -> None:
    tmp = Path(tmp_path_factory.getbasetemp())
    first_run(str(tmp))
    with dfw.open(f"sqlite:///{tmp / 'first.db'}") as wheel:
        doc = wheel.kpis()
    rows = doc["rows"]
    assert all(row["new_items"] > 0 for row in rows[1:])
    assert any(row["active_creators"] > 0 for row in rows)
    supply = doc["supply"]
    assert supply["items_shown"] > 0 and supply["median_seconds_to_first_impression"] is not None
    assert 0.0 < supply["new_item_click_share"] <= 1.0


def test_creators_whose_items_get_clicks_upload_more() -> None:
    rng = np.random.default_rng(3)
    population = generate_ugc_population(100, 50, 40, rng)
    creators = Creators(population, 50, np.random.default_rng(4))
    taste = population.user_pool[0]
    creators.enlist([("clicked", taste), ("ignored", taste)])
    fan, loner = creators.creators
    for day in range(1, 41):
        creators.upload(day, day * DAY, {"clicked": 0.25, "ignored": 0.25})
        for item, owner in creators.owner.items():
            if owner is fan and population.release_day[item] == day:
                for _ in range(3):
                    creators.clicked(item)
    assert fan.engagement > loner.engagement
    assert fan.uploads > 1.5 * loner.uploads
    assert creators.next_item == 50 + fan.uploads + loner.uploads


def test_withheld_content_keeps_the_same_draws_and_only_the_creator() -> None:
    uploads = []
    for content in (True, False):
        population = generate_ugc_population(100, 20, 5, np.random.default_rng(1))
        creators = Creators(population, 20, np.random.default_rng(2), content=content)
        creators.enlist([("u0", population.user_pool[0])])
        initial = creators.initial_items(0.0)
        items = [i for day in range(1, 6) for i in creators.upload(day, day * DAY, {"u0": 1.0})]
        uploads.append((initial, items, population.item_factors))
    (initial, items, factors), (bare_initial, bare, bare_factors) = uploads
    assert items and len(bare) == len(items)
    assert np.array_equal(factors, bare_factors)
    assert all("categories" not in item for item in bare + bare_initial)
    assert [item["attributes"] for item in bare] == [{"creator_id": "u0"}] * len(bare)
    assert all(item["categories"] and item["attributes"]["title"] for item in items + initial)
