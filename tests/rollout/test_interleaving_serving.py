"""Interleaving at serve time: while an interleaving experiment runs, every list is a team draft
of both arms' own rankings, the teams are logged, clicks credit the team that drafted the item,
and the loop promotes the better ranker and retires the worse one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.metrics import interleaving_credit
from dataflywheel.experiments.serving import REFRESH_SECONDS
from dataflywheel.experiments.tables import interleaving_teams
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from rollout.sim import World

K = 5


@pytest.fixture
def world() -> World:
    return World(users=120, items=200, seed=3)


@pytest.fixture
def flywheel(store_url: str, world: World) -> Iterator[dfw.Flywheel]:
    with dfw.open(
        store_url,
        exploration={"name": "greedy"},
        retrain_min_new_events=10**9,
        retrain_interval_seconds=10**9,
        seed=0,
    ) as handle:
        handle.track_many(world.history())
        handle.loop.rollout.config = RolloutSettings(
            experiment="interleaving", min_sample_size=60, pre_period_seconds=0
        )
        yield handle


def _interleave(flywheel: dfw.Flywheel, control: str, candidate: str, now: float) -> str:
    arms = [
        {"name": "control", "model_version": control},
        {"name": "candidate", "model_version": candidate},
    ]
    spec = {"type": "interleaving", "arms": arms, "min_sample_size": 60}
    experiment = flywheel.loop.rollout.experiments.create(spec, now=now)
    time.sleep(REFRESH_SECONDS)  # serving re-reads the running experiment once a second
    return str(experiment["id"])


def _teams(flywheel: dfw.Flywheel, recommendation_id: str) -> list[str]:
    flywheel.flush()
    t = interleaving_teams.c
    with flywheel.store.read() as conn:
        teams = conn.execute(select(t.teams).where(t.recommendation_id == recommendation_id))
        return list(teams.scalar_one())


def test_served_lists_are_team_drafts_of_both_arms(flywheel: dfw.Flywheel, world: World) -> None:
    flywheel.train("popularity", budget=1, now=world.tick())  # v1, the champion
    flywheel.train("itemknn", budget=1, now=world.tick())  # v2
    flywheel.train("ease", budget=1, now=world.tick())  # v3
    for version in ("v2", "v3"):
        flywheel.registry.set_status(version, "shadow", "reference rankings", world.tick())
    time.sleep(REFRESH_SECONDS)

    # Shadow scoring records each version's own top-k for a request: the rankings to draft from.
    users = world.users[:12]
    first = {user: flywheel.recommend(user, K, now=world.tick()) for user in users}
    flywheel.flush()
    s = shadow_results.c
    with flywheel.store.read() as conn:
        rows = conn.execute(
            select(s.recommendation_id, s.version, s.item_ids).where(
                s.recommendation_id.in_([a["recommendation_id"] for a in first.values()])
            )
        ).all()
    own = {(rec, version): items for rec, version, items in rows}
    assert len(own) == 2 * len(users)

    experiment = _interleave(flywheel, "v2", "v3", world.tick())
    mixed = 0
    for user in users:
        answer = flywheel.recommend(user, K, now=world.tick())
        assert answer["experiment"] == {"id": experiment, "arm": "interleaved"}
        assert answer["model_version"] == "v2+v3"
        merged = [entry["item_id"] for entry in answer["items"]]
        teams = _teams(flywheel, answer["recommendation_id"])
        assert len(teams) == len(merged) == K
        assert abs(teams.count("A") - teams.count("B")) <= 1
        rec = first[user]["recommendation_id"]
        ranking = {"A": own[(rec, "v2")], "B": own[(rec, "v3")]}
        for position, (item, team) in enumerate(zip(merged, teams, strict=True)):
            # Each team drafts its highest-ranked item not already in the list.
            expected = next(i for i in ranking[team] if i not in merged[:position])
            assert item == expected, (user, position, merged, teams, ranking)
        mixed += set(ranking["A"]) != set(ranking["B"])
    assert mixed > 0  # the two rankings differ, so the draft really mixes them

    i = schema.impressions.c
    with flywheel.store.read() as conn:
        logged = conn.execute(
            select(i.policy, i.arm, i.model_version).where(i.experiment_id == experiment)
        ).all()
    assert set(logged) == {("team_draft", "interleaved", "v2+v3")}


def test_clicks_credit_the_drafting_team_and_the_better_ranker_wins(
    flywheel: dfw.Flywheel, world: World
) -> None:
    champion = flywheel.train("popularity", budget=1, now=world.tick())
    candidate = flywheel.train("ease", budget=1, now=world.tick())
    step = flywheel.loop.gate(candidate, champion, world.tick())
    assert step["action"] == "experimenting", step  # shadow mode off: straight to interleaving
    experiment = flywheel.loop.rollout.experiments.get(step["experiment"])
    assert experiment["type"] == "interleaving"
    time.sleep(REFRESH_SECONDS)

    answer = flywheel.recommend("u7", K, now=world.tick())
    teams = _teams(flywheel, answer["recommendation_id"])
    before = _credit(flywheel, experiment)
    for team in ("B", "A"):
        item = answer["items"][teams.index(team)]["item_id"]
        click = world.event("u7", item, "click", answer["recommendation_id"])
        flywheel.track_many([click])
        after = _credit(flywheel, experiment)
        gained = {t: after[t].get("u7", 0.0) - before[t].get("u7", 0.0) for t in ("A", "B")}
        assert gained == ({"A": 0.0, "B": 1.0} if team == "B" else {"A": 1.0, "B": 1.0})
    flywheel.track_many([world.event("u7", answer["items"][0]["item_id"], "skip")])
    assert _credit(flywheel, experiment) == after  # negative feedback earns no credit

    step = _run_until_decided(flywheel, world)
    assert step["action"] == "promoted", step
    assert _champion(flywheel) == candidate["version"]
    assert "preferred" in step["reason"]

    # The same stage stops a worse ranker: popularity against the promoted EASE model.
    worse = flywheel.train("popularity", budget=1, now=world.tick())
    _interleave(flywheel, candidate["version"], worse["version"], world.tick())
    step = _run_until_decided(flywheel, world)
    assert step["action"] == "kept", step
    assert flywheel.registry.get(worse["version"])["status"] == "retired"
    assert _champion(flywheel) == candidate["version"]


def _champion(flywheel: dfw.Flywheel) -> str | None:
    champion = flywheel.registry.champion()
    return None if champion is None else str(champion["version"])


def _credit(flywheel: dfw.Flywheel, experiment: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per-user credit of each team (users in the order interleaving_credit reports them)."""
    flywheel.flush()
    a, b = interleaving_credit(flywheel.store, experiment)
    i = schema.impressions.c
    with flywheel.store.read() as conn:
        users = sorted(
            set(
                conn.execute(select(i.user_id).where(i.experiment_id == experiment["id"])).scalars()
            )
        )
    return {
        "A": dict(zip(users, a.tolist(), strict=True)),
        "B": dict(zip(users, b.tolist(), strict=True)),
    }


def _run_until_decided(flywheel: dfw.Flywheel, world: World, rounds: int = 6) -> dict[str, Any]:
    step: dict[str, Any] = {}
    for _ in range(rounds):
        world.serve_round(flywheel, k=K)
        step = flywheel.run_loop_once(now=world.tick())
        if step["action"] != "waiting":
            break
    return step
