"""The server's loop measures the value of data on its schedule, in a child process."""

from __future__ import annotations

from pathlib import Path

import dataflywheel as dfw
from dataflywheel.learn.value.cache import cache_path, load
from dataflywheel.loop.scheduler import Loop
from value_data import START, worlds_with_noise


def test_the_loop_measures_when_due_and_not_again_while_fresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with dfw.open(
        url, value_budget_seconds=60, retrain_min_new_events=10**9, retrain_interval_seconds=10**12
    ) as wheel:
        worlds_with_noise(wheel)
        wheel.train("popularity", budget=5)
        loop = Loop(wheel.store, wheel.registry, wheel.trainer, wheel.settings, isolated=True)
        path = cache_path(wheel.store, wheel.settings.artifacts_dir())
        assert not path.exists()

        now = START + 60 * 86_400.0
        step = loop.run_once(now)
        assert step["action"] == "skipped"
        assert step["value"]["watermark"] == wheel.store.latest_event_id(), step
        cached = load(path)
        assert cached is not None and cached["slices"]

        # Fresh: the next tick does not measure again, even after new events...
        wheel.track(user_id="u1", item_id="b1", type="click", timestamp=START + 41 * 86_400.0)
        assert "value" not in loop.run_once(now + 60)
        # ...until the interval has passed; without new events it stays as it is.
        assert "value" in loop.run_once(cached["computed_at"] + 86_401.0)
        assert "value" not in loop.run_once(cached["computed_at"] + 2 * 86_401.0)
