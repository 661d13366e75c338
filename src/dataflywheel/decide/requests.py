"""Validation of what callers send: service settings, deployment names, action lists, exclusions
and multi-slot slots. Every refusal names the field and the reason."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from dataflywheel.decide.features import check_action_count
from dataflywheel.errors import ValidationError

DEFAULT_DEPLOYMENT = "default"
MODES = ("Online", "Apprentice", "LoggingOnly")
AGGREGATIONS = ("earliest", "sum")
MIN_WAIT_SECONDS = 5.0
MAX_WAIT_SECONDS = 2 * 86_400.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ServiceConfig:
    """A deployment's Personalizer-style service configuration, validated."""

    reward_wait_seconds: float = 600.0
    default_reward: float = 0.0
    reward_aggregation: str = "earliest"
    learning_mode: str = "Online"

    def __post_init__(self) -> None:
        wait = self.reward_wait_seconds
        if not is_number(wait) or not MIN_WAIT_SECONDS <= wait <= MAX_WAIT_SECONDS:
            raise ValidationError(
                f"reward wait time must be {MIN_WAIT_SECONDS:g} s to {MAX_WAIT_SECONDS:g} s",
                field="rewardWaitTime",
            )
        if not is_number(self.default_reward) or not -1.0 <= self.default_reward <= 1.0:
            raise ValidationError("defaultReward must be in [-1, 1]", field="defaultReward")
        if self.reward_aggregation not in AGGREGATIONS:
            raise ValidationError(
                f"rewardAggregation must be one of {', '.join(AGGREGATIONS)}",
                field="rewardAggregation",
            )
        if self.learning_mode not in MODES:
            raise ValidationError(
                f"learningMode must be one of {', '.join(MODES)}", field="learningMode"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ServiceConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValidationError(
                f"unknown service setting {sorted(unknown)[0]!r}", field="service"
            )
        return cls(**dict(values))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_reward(value: Any) -> float:
    if not is_number(value) or not -1.0 <= value <= 1.0:
        raise ValidationError("reward value must be a number in [-1, 1]", field="value")
    return float(value)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            "deployment names are 1-64 letters, digits, '_' or '-'", field="deployment"
        )


def check_event_id(event_id: Any) -> str:
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 256:
        raise ValidationError("eventId must be a string of 1 to 256 characters", field="eventId")
    return event_id


def check_kind(event_id: str, multislot: bool, wanted: bool) -> None:
    """A single-slot call on a multi-slot event, or the reverse, is a bad request."""
    if multislot != wanted:
        kind = "multi-slot" if multislot else "single-slot"
        raise ValidationError(
            f"event {event_id!r} is {kind}; use the {kind} endpoint", field="eventId"
        )


def as_list(context: Any) -> list[Any]:
    if context is None:
        return []
    return list(context) if isinstance(context, list | tuple) else [context]


def catalogue(actions: Any) -> tuple[tuple[str, ...], Sequence[Any]]:
    """Validated ids of an action list, and the list. Built from the cache's private copy, so
    the pending decisions of every rank with the same actions share one copy of them (rank
    rate × wait time decisions are held in memory)."""
    return action_ids(actions), actions


def action_ids(actions: Any) -> tuple[str, ...]:
    """Ids of a list of 1..50 actions; full feature validation happens in the learner."""
    check_action_count(actions)
    ids = []
    for i, action in enumerate(actions):
        action_id = action.get("id") if isinstance(action, Mapping) else None
        if not isinstance(action_id, str) or not action_id:
            raise ValidationError(f"actions[{i}].id must be a non-empty string", field="actions")
        ids.append(action_id)
    if len(set(ids)) != len(ids):
        raise ValidationError("action ids must be unique", field="actions")
    return tuple(ids)


def excluded_ids(excluded: Any, ids: Sequence[str], where: str) -> set[str]:
    if excluded is None:
        return set()
    if not isinstance(excluded, list | tuple) or not all(isinstance(e, str) for e in excluded):
        raise ValidationError(f"{where} must be a list of action ids", field=where)
    unknown = set(excluded) - set(ids)
    if unknown:
        raise ValidationError(f"{where} names unknown action {sorted(unknown)[0]!r}", field=where)
    return set(excluded)


def slot_specs(slots: Any, ids: Sequence[str]) -> list[tuple[str, str, set[str], list[Any]]]:
    """Validate multi-slot ``slots``: (id, baseline action, excluded ids, features) each."""
    if not isinstance(slots, list) or not 1 <= len(slots) <= len(ids):
        raise ValidationError("slots must be a list of 1 to len(actions) slots", field="slots")
    out = []
    seen: set[str] = set()
    baselines: set[str] = set()
    for i, slot in enumerate(slots):
        where = f"slots[{i}]"
        if not isinstance(slot, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        slot_id, baseline = slot.get("id"), slot.get("baselineAction")
        if not isinstance(slot_id, str) or not slot_id or slot_id in seen:
            raise ValidationError(f"{where}.id must be a unique non-empty string", field=where)
        if not isinstance(baseline, str) or baseline not in ids or baseline in baselines:
            raise ValidationError(
                f"{where}.baselineAction must be a distinct action id", field=where
            )
        skip = excluded_ids(slot.get("excludedActions"), ids, f"{where}.excludedActions")
        if baseline in skip:
            raise ValidationError(f"{where} excludes its own baseline action", field=where)
        features = slot.get("features") or []
        if not isinstance(features, list):
            raise ValidationError(f"{where}.features must be a list of objects", field=where)
        seen.add(slot_id)
        baselines.add(baseline)
        out.append((slot_id, baseline, skip, features))
    return out
