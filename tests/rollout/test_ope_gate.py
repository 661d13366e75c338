"""The shadow gate's off-policy evidence on engine-served ε-greedy lists (ε = 0.05, spent on the
shadow's whole lists): a worse candidate is rejected and a better one passes with evidence, too
little traffic gives "no evidence", never a pass; the aimed exploration logs exact probabilities."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.evaluation.slate import anytime_multiplier
from dataflywheel.experiments.serving import REFRESH_SECONDS
from dataflywheel.serve.exploration import RankedList, ShadowExplore
from dataflywheel.store import schema
from serve.test_recommend import START, two_worlds

DAY = 86_400.0
USERS = 200
EPSILON = 0.05


@pytest.fixture
def shadowed(store_url: str) -> Iterator[tuple[dfw.Flywheel, str, float]]:
    """An item-kNN champion on two-group data and a popularity candidate in shadow mode."""
    with dfw.open(store_url, seed=0) as wheel:
        two_worlds(wheel, users=USERS)
        champion = wheel.train("itemknn", budget=5)
        assert champion["status"] == "champion"
        candidate = wheel.train("popularity", budget=5)["version"]
        since = START + DAY
        wheel.registry.set_status(candidate, "shadow", "test", since)
        wheel.loop.rollout.config = RolloutSettings(
            shadow=True, experiment="none", shadow_min_requests=1
        )
        time.sleep(REFRESH_SECONDS)  # serving re-reads the shadow versions once a second
        yield wheel, candidate, since


def serve(wheel: dfw.Flywheel, rounds: int, start: float, users: int = USERS) -> float:
    """Each user asks for 10 items per round and clicks at most one item of their own group
    (position-discounted); returns the clock after the last request."""
    rng = np.random.default_rng(1)
    clock = start
    for _ in range(rounds):
        events = []
        for u in range(users):
            clock += 10.0
            answer = wheel.recommend(f"u{u}", 10, now=clock)
            own = "a" if u % 2 == 0 else "b"
            for position, item in enumerate(answer["items"]):
                liked = item["item_id"].startswith(own)
                if rng.random() < (0.5 if liked else 0.02) / (position + 1) ** 0.5:
                    events.append(
                        {
                            "user_id": f"u{u}",
                            "item_id": item["item_id"],
                            "type": "click",
                            "timestamp": clock + 1,
                            "recommendation_id": answer["recommendation_id"],
                        }
                    )
                    break
        wheel.track_many(events)
    wheel.flush()
    return clock


def test_a_worse_candidate_is_rejected_with_evidence(
    shadowed: tuple[dfw.Flywheel, str, float],
) -> None:
    wheel, candidate, since = shadowed
    now = serve(wheel, 6, since)
    gate = wheel.loop.rollout.shadow_gate(candidate, since, now)
    evidence = gate.evidence["ope"]
    assert gate.passed is False, gate.detail
    assert evidence["verdict"] == "fail" and evidence["high"] < evidence["floor"], evidence
    assert evidence["ess"] >= 30 and evidence["estimator"] == "aimed", evidence
    # The interval holds at every look (the loop reads the growing log again and again).
    half = (evidence["high"] - evidence["low"]) / 2
    assert half == pytest.approx(evidence["std"] * anytime_multiplier(evidence["lists"]))
    step = wheel.loop.rollout.advance(now)
    assert step is not None and step["action"] == "kept", step
    assert wheel.registry.get(candidate)["status"] == "retired"


def test_too_little_traffic_is_no_evidence_and_never_promotes(
    shadowed: tuple[dfw.Flywheel, str, float],
) -> None:
    wheel, candidate, since = shadowed
    now = serve(wheel, 1, since, users=6)
    gate = wheel.loop.rollout.shadow_gate(candidate, since, now)
    evidence = gate.evidence["ope"]
    assert gate.passed is None and evidence["verdict"] == "no evidence", evidence
    assert "no evidence" in gate.detail and "more days" in gate.detail, gate.detail
    assert evidence["days_needed"] > 0 and 0 < evidence["epsilon_for_deadline"] <= 1, evidence
    step = wheel.loop.rollout.advance(now)
    assert step is not None and step["action"] == "waiting", step
    assert wheel.registry.get(candidate)["status"] == "shadow"
    # Past the deadline without evidence and without an online test: retired, not promoted.
    step = wheel.loop.rollout.advance(since + 3 * DAY)
    assert step is not None and step["action"] == "kept", step
    assert wheel.registry.get(candidate)["status"] == "retired"


@pytest.fixture
def shadowed_better(store_url: str) -> Iterator[tuple[dfw.Flywheel, str, float]]:
    """A popularity champion on two-group data and an item-kNN candidate in shadow mode."""
    with dfw.open(store_url, seed=0) as wheel:
        two_worlds(wheel, users=USERS)
        assert wheel.train("popularity", budget=5)["status"] == "champion"
        candidate = wheel.train("itemknn", budget=5)["version"]
        since = START + DAY
        wheel.registry.set_status(candidate, "shadow", "test", since)
        wheel.loop.rollout.config = RolloutSettings(
            shadow=True, experiment="none", shadow_min_requests=1
        )
        time.sleep(REFRESH_SECONDS)
        yield wheel, candidate, since


def aimed_lists(wheel: dfw.Flywheel, candidate: str) -> tuple[int, int, set[float]]:
    """Lists served while the shadow was explored, those the shadow chose, their propensities."""
    i = schema.impressions.c
    with wheel.store.read() as conn:
        rows = conn.execute(
            select(i.model_version, i.propensities).where(i.policy == "shadow_explore")
        ).all()
    own = [props for version, props in rows if version == candidate]
    return len(rows), len(own), {round(p, 9) for props in own for p in props}


def test_aimed_exploration_passes_a_better_candidate_with_weights_at_most_one_over_epsilon(
    shadowed_better: tuple[dfw.Flywheel, str, float],
) -> None:
    wheel, candidate, since = shadowed_better
    now = serve(wheel, 6, since)
    lists, own, props = aimed_lists(wheel, candidate)
    # The default ε = 0.05 is spent on the candidate's whole lists: about 5% of them.
    assert lists == 6 * USERS and 0.02 * lists <= own <= 0.09 * lists, (lists, own)
    assert props == {EPSILON}, props
    gate = wheel.loop.rollout.shadow_gate(candidate, since, now)
    evidence = gate.evidence["ope"]
    assert gate.passed is True, gate.detail
    assert evidence["verdict"] == "pass" and evidence["low"] > 0, evidence
    assert evidence["ess"] >= 30 and evidence["max_weight"] <= 1 / EPSILON + 1e-9, evidence


def test_aimed_exploration_fails_a_worse_candidate_with_weights_at_most_one_over_epsilon(
    shadowed: tuple[dfw.Flywheel, str, float],
) -> None:
    wheel, candidate, since = shadowed
    now = serve(wheel, 6, since)
    assert aimed_lists(wheel, candidate)[1] > 0
    evidence = wheel.loop.rollout.shadow_gate(candidate, since, now).evidence["ope"]
    assert evidence["verdict"] == "fail" and evidence["high"] < evidence["floor"], evidence
    assert evidence["max_weight"] <= 1 / EPSILON + 1e-9, evidence


@settings(max_examples=30, deadline=None)
@given(
    n_items=st.integers(3, 30),
    k=st.integers(1, 6),
    epsilon=st.floats(0.01, 0.9),
    m=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_mixture_logs_exact_probabilities(
    n_items: int, k: int, epsilon: float, m: int, seed: int
) -> None:
    """Over many draws, each branch is taken as often as the probability it logs, and each
    item sits at each position as often as the mixture's position marginals say."""
    rng = np.random.default_rng(seed)
    k = min(k, n_items)
    ids = np.arange(n_items)
    scores = [rng.normal(size=n_items) for _ in range(m + 1)]
    versions = [f"v{c}" for c in range(m)]
    mix = ShadowExplore(epsilon)
    lists: dict[str | None, RankedList] = {
        None: mix.branch(ids, scores[0], k, 1 - epsilon),
        **{v: mix.branch(ids, scores[c + 1], k, epsilon / m) for c, v in enumerate(versions)},
    }
    draws = 20_000
    counts = np.zeros((n_items, k))
    taken = dict.fromkeys(lists, 0)
    for _ in range(draws):
        chosen = mix.choose(versions, rng)
        taken[chosen] += 1
        counts[lists[chosen].items, np.arange(k)] += 1
    logged = {v: float(ranked.propensities[0]) for v, ranked in lists.items()}
    assert sum(logged.values()) == pytest.approx(1.0)
    for v, ranked in lists.items():
        assert np.all(ranked.propensities == logged[v])
        p = logged[v]
        assert abs(taken[v] / draws - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-3, (v, taken)
    marginals = mix.position_marginals(
        lists[None].items, [lists[v].items for v in versions], n_items
    )
    assert np.allclose(marginals.sum(axis=0), 1.0)
    for ranked in lists.values():
        shown = marginals[ranked.items, np.arange(k)]
        assert np.all((shown > 0) & (shown <= 1 + 1e-12)) and np.all(shown >= ranked.propensities)
    tolerance = 5 * np.sqrt(marginals * (1 - marginals) / draws) + 1e-3
    assert np.all(np.abs(counts / draws - marginals) <= tolerance)
