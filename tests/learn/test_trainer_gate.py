"""The loop's offline gate reuses the scores the candidate's search computed on the same split;
they must equal what refitting both configurations on that split gives."""

from __future__ import annotations

import dataflywheel as dfw
from dataflywheel.learn.snapshot import take_snapshot
from dataflywheel.learn.trainer import Holdout
from serve.test_recommend import START, two_worlds


def test_reused_scores_equal_a_refit(store_url: str) -> None:
    with dfw.open(store_url, train_max_trials=4, seed=0) as wheel:
        _check(wheel)


def _check(wheel: dfw.Flywheel) -> None:
    two_worlds(wheel)
    champion = wheel.train("popularity", budget=5, now=START + 86_400)
    wheel.track_many(
        [
            {"user_id": f"u{n}", "item_id": f"a{n % 20}", "type": "click", "timestamp": START + n}
            for n in range(0, 60, 2)
        ]
    )
    candidate = wheel.train("auto", budget=60, now=START + 2 * 86_400)
    incumbent = candidate["metrics"]["incumbent"]
    assert incumbent["version"] == champion["version"]
    holdout = Holdout.of(take_snapshot(wheel.store, record=False))
    for version, reused in ((champion, incumbent), (candidate, candidate["metrics"])):
        params = version["params"]
        refit = holdout.evaluate(version["name"], params["model"], params["matrix"])
        assert refit["ndcg@10"] == reused["ndcg@10"], version["name"]

    step = wheel.loop.gate(candidate, wheel.registry.champion(), START + 2 * 86_400)
    assert step["action"] == "promoted"
    assert f"vs champion {incumbent['ndcg@10']:.4f}" in step["reason"]
