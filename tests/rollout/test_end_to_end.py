"""The whole rollout on one store: a better candidate goes candidate → shadow → experiment →
champion by itself, a worse one stops at a gate, and labels of triggered cases reach the next
snapshot."""

from __future__ import annotations

import time

import numpy as np

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.report import experiment_status
from dataflywheel.experiments.serving import REFRESH_SECONDS
from dataflywheel.learn.snapshot import take_snapshot
from rollout.sim import World


def _open(url: str) -> dfw.Flywheel:
    wheel = dfw.open(
        url,
        retrain_min_new_events=50,
        train_budget_seconds=30,
        train_max_trials=3,  # a trial count, not the clock, so the test is the same under load
        train_model="ease",
        seed=0,
    )
    wheel.loop.rollout.config = RolloutSettings(
        shadow=True,
        experiment="ab",
        shadow_min_requests=100,
        shadow_min_matches=5,
        min_sample_size=40,
        pre_period_seconds=0,
    )
    return wheel


def test_better_candidate_is_promoted_and_labels_flow_back(store_url: str) -> None:
    world = World()
    with _open(store_url) as wheel:
        organic = world.history()
        wheel.track_many(organic[: len(organic) // 2])
        first = wheel.train("popularity", now=world.tick())
        assert first["status"] == "champion"
        queue = wheel.loop.rollout.queue
        queue.add_trigger(
            {
                "name": "disliked near the top",
                "task": "relevance",
                "priority": 5,
                "when": {
                    "all": [
                        {"field": "type", "op": "eq", "value": "dislike"},
                        {"field": "rank", "op": "lt", "value": 3},
                    ]
                },
            }
        )
        wheel.track_many(organic[len(organic) // 2 :])

        # New data makes the loop train a candidate; the offline gate sends it to shadow mode.
        step = wheel.run_loop_once(now=world.tick())
        assert step["action"] == "shadowing", step
        candidate = step["version"]
        assert wheel.registry.get(candidate)["status"] == "shadow"
        time.sleep(REFRESH_SECONDS)

        # Shadow scoring runs beside the champion; then the off-policy gate starts an A/B test.
        world.serve_round(wheel)
        step = wheel.run_loop_once(now=world.tick())
        assert step["action"] == "experimenting", step
        shadow_gate = step["gates"][0]
        assert shadow_gate["passed"] is not False and "overlap@k" in shadow_gate["detail"]
        experiment = wheel.loop.rollout.experiments.get(step["experiment"])
        time.sleep(REFRESH_SECONDS)  # serving re-reads the running experiment once a second
        answer = wheel.recommend("u1", 5, now=world.tick())
        assert answer["experiment"]["id"] == experiment["id"]
        assert answer["model_version"] in (first["version"], candidate)

        for _ in range(12):
            world.serve_round(wheel)
            step = wheel.run_loop_once(now=world.tick())
            if step["action"] != "waiting":
                break
        assert step["action"] == "promoted", step
        assert wheel.registry.champion()["version"] == candidate
        reasons = [t["reason"] for t in wheel.registry.transitions() if t["version"] == candidate]
        assert any("experiment" in r for r in reasons[-1:]), reasons
        done = experiment_status(
            wheel.store,
            wheel.loop.rollout.experiments.get(experiment["id"]),
            wheel.loop.rollout.config,
            world.clock,
        )
        assert done["status"] == "completed"
        assert done["srm"]["mismatch"] is False
        ctr = {arm["name"]: arm["metrics"]["ctr"] for arm in done["arms"]}
        assert ctr["candidate"] > ctr["control"]

        # A worse configuration is stopped at the offline gate, and the log says why.
        worse = wheel.train("popularity", now=world.tick())
        step = wheel.loop.gate(worse, wheel.registry.champion(), world.tick())
        assert step["action"] == "kept"
        assert wheel.registry.get(worse["version"])["status"] == "retired"
        assert "holdout NDCG@10" in wheel.registry.transitions()[-1]["reason"]

        # The trigger queued disliked top items; labels come back as strong signal.
        pending = queue.pending()
        assert pending and all(case["task"] == "relevance" for case in pending)
        labels = wheel.loop.rollout.labels
        labels_before = wheel.stats()["events_by_type"].get("label", 0)
        batch = [
            {"id": case["id"], "value": -1.0, "correction": "i0", "suite": "hard"}
            for case in pending[:5]
        ]
        labels.submit(batch)
        snapshot = take_snapshot(wheel.store, record=False)
        assert wheel.stats()["events_by_type"]["label"] == labels_before + 2 * len(batch)
        users = wheel.store.lookup_ids("users", [pending[0]["user_id"]])
        items = wheel.store.lookup_ids("items", [pending[0]["item_id"]])
        ev = snapshot.events
        mask = (ev.user_idx == users[pending[0]["user_id"]]) & (
            ev.item_idx == items[pending[0]["item_id"]]
        )
        assert np.isclose(ev.weight[mask], -4.0).any()
        assert not any(c["id"] in {b["id"] for b in batch} for c in queue.pending())
        assert len(labels.suites()["hard"]) >= len(batch)
