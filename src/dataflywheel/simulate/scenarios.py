"""Named scenarios: the full loop, and one per flywheel condition broken.

Each scenario is carried out by the simulator's own behaviour (which events it sends, whether it
asks the engine to retrain); two change engine settings: ``imperceptible``'s exploration policy
becomes a softmax so hot that every candidate is equally likely (serving ignores the model, and
still logs the exact propensities), and ``staged`` turns on shadow mode and interleaving tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dataflywheel.errors import ValidationError

__all__ = ["SCENARIOS", "Scenario", "get_scenario"]

Retrain = Literal["daily", "once", "never"]


@dataclass(frozen=True)
class Scenario:
    """How a run deviates from the full loop, and which flywheel condition that breaks."""

    name: str
    description: str
    retrain: Retrain = "daily"
    sent_types: frozenset[str] | None = None
    elastic: bool = True
    ugc: bool = False
    # ``ugc`` only: whether uploads carry content (categories, title, description).
    content: bool = True
    engine_settings: dict[str, Any] = field(default_factory=dict)

    def sends(self, event_type: str) -> bool:
        """Whether the product collects events of this type in this scenario."""
        return self.sent_types is None or event_type in self.sent_types


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "flywheel",
            "The full loop: rich feedback is collected, the engine retrains every day and promotes "
            "a candidate that beats the champion, users feel the difference and come back.",
        ),
        Scenario(
            "staged",
            "The full loop with staged rollout: a candidate that passes the holdout gate serves "
            "in shadow beside the champion, then in an interleaving test on live users, and is "
            "promoted only if both say it is not worse (slower to promote, never blind).",
            engine_settings={
                "rollout": {
                    "shadow": True,
                    "experiment": "interleaving",
                    "shadow_min_requests": 200,
                    "min_sample_size": 100,
                    "shadow_max_seconds": 86_400.0,
                    "experiment_max_seconds": 2 * 86_400.0,
                }
            },
        ),
        Scenario(
            "static",
            "The model is trained once, at the end of the first day with enough data, and never "
            "again (breaks condition 2 over time: new users and items never reach the model).",
            retrain="once",
        ),
        Scenario(
            "weak-signal",
            "Only impressions and clicks are collected: no watch time, likes, dislikes, ratings "
            "or corrections (breaks condition 1; clickbait fools the model).",
            sent_types=frozenset({"click"}),
        ),
        Scenario(
            "no-learning",
            "Every event is collected but no model is ever trained: serving stays on the "
            "cold-start list (breaks condition 2).",
            retrain="never",
        ),
        Scenario(
            "imperceptible",
            "The engine retrains, but serving ignores the model and shows random items "
            "(exploration = uniform softmax; breaks condition 3).",
            engine_settings={"exploration": {"name": "softmax", "temperature": 1e9}},
        ),
        Scenario(
            "inelastic",
            "Users visit, stay and leave at fixed rates whatever the quality of what they are "
            "shown (breaks condition 4).",
            elastic=False,
        ),
        Scenario(
            "ugc",
            "The full loop on a catalogue that changes every day: creators among the users "
            "upload items with categories and titles (more when their items get clicks), so "
            "much of what users could like is new and known only by its content.",
            ugc=True,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``, or an error listing the valid names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        valid = ", ".join(SCENARIOS)
        raise ValidationError(
            f"unknown scenario {name!r}; choose one of: {valid}", field="scenario"
        ) from None
