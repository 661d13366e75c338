"""The shadow gate's off-policy evidence on engine-served ε-greedy lists (ε = 0.05): a worse
candidate is rejected with evidence, and too little traffic gives "no evidence", never a pass."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.serving import REFRESH_SECONDS
from serve.test_recommend import START, two_worlds

DAY = 86_400.0
USERS = 200


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
    assert evidence["ess"] >= 30 and evidence["estimator"] in ("item-ips", "iips"), evidence
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
