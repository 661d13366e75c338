"""A VW learner saved under a directory whose path holds spaces loads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataflywheel.decide import create_learner, load_learner
from dataflywheel.decide.vw import MODEL_FILE


def test_vw_model_round_trips_under_a_path_with_spaces(tmp_path: Path) -> None:
    learner = create_learner({"algorithm": "vw", "seed": 3})
    actions = [{"id": f"a{i}", "features": [{"shape": f"s{i}"}]} for i in range(3)]
    context = [{"user": {"color": "red"}}]
    for _ in range(30):
        ranking = learner.rank(context, actions)
        reward = float(ranking.chosen_index == 1)
        learner.learn(context, actions, ranking.chosen_index, ranking.chosen_probability, reward)
    directory = tmp_path / "my models" / "vw  learner -i x"
    learner.save(directory)
    assert (directory / MODEL_FILE).is_file()
    loaded = load_learner(directory)
    before, after = learner.rank(context, actions), loaded.rank(context, actions)
    assert before.action_ids == after.action_ids
    assert np.allclose(before.probabilities, after.probabilities, atol=1e-6)
