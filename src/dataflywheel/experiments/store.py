"""Experiments in the store: create (validated as a whole), read, list, stop.

An experiment splits users between arms by a salted hash (A/B) or interleaves two versions in
every list (team draft). Each arm serves a registered model version or, with ``policy``, the
champion under another exploration policy. One experiment runs at a time, so a user is never in
two and the loop knows which candidate is under test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from dataflywheel.errors import ConflictError, NotFoundError, ValidationError
from dataflywheel.experiments import _validate
from dataflywheel.experiments.tables import experiments
from dataflywheel.learn.registry import Registry
from dataflywheel.store.store import Store

KINDS = ("ab", "interleaving")
METRICS = (
    "ctr",
    "clicks",
    "engagement",
    "watch_time",
    "strong_events",
    "conversions",
    "return_rate",
)
SERVABLE = ("candidate", "shadow", "experiment", "champion")
_SPEC_FIELDS = {"name", "type", "arms", "metric", "guardrails", "min_sample_size"}
X = experiments.c


def _public(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "type": row.kind,
        "status": row.status,
        "arms": row.arms,
        "metric": row.metric,
        "guardrails": row.guardrails,
        "min_sample_size": row.min_sample_size,
        "salt": row.salt,
        "created_at": row.created_at,
        "stopped_at": row.stopped_at,
        "decision": row.decision,
        "reason": row.reason,
    }


class Experiments:
    """CRUD over the ``experiments`` table; model versions move to status ``experiment``."""

    def __init__(
        self, store: Store, registry: Registry, validate_policy: Callable[[Any], object]
    ) -> None:
        # Serving owns the exploration policies: it hands over its parser, which raises a
        # ValidationError for a policy arm it could not serve.
        self.store = store
        self.registry = registry
        self.validate_policy = validate_policy

    def create(self, spec: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """Validate ``spec`` completely, then store it and mark its versions as under test."""
        now = time.time() if now is None else now
        design = self._validate(spec)
        running = self.running()
        if running is not None:
            raise ConflictError(
                f"experiment {running['id']} is running; stop it first", field="experiment"
            )
        experiment_id = uuid.uuid4().hex[:12]
        with self.store.write() as conn:
            conn.execute(
                insert(experiments).values(
                    id=experiment_id,
                    status="running",
                    salt=experiment_id,
                    created_at=now,
                    **design,
                )
            )
        for version in self._versions(design["arms"]):
            if self.registry.get(version)["status"] != "champion":
                self.registry.set_status(
                    version, "experiment", f"arm of experiment {experiment_id}", now
                )
        return self.get(experiment_id)

    def get(self, experiment_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(select(experiments).where(X.id == experiment_id)).first()
        if row is None:
            raise NotFoundError(f"unknown experiment {experiment_id!r}", field="id")
        return _public(row)

    def all(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(experiments).order_by(X.created_at)).all()
        return [_public(row) for row in rows]

    def running(self) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(experiments).where(X.status == "running")).first()
        return None if row is None else _public(row)

    def finish(
        self,
        experiment_id: str,
        reason: str,
        decision: Mapping[str, Any] | None = None,
        *,
        status: str = "stopped",
        now: float | None = None,
    ) -> dict[str, Any]:
        """End a running experiment; versions still under test go back to ``candidate``."""
        now = time.time() if now is None else now
        experiment = self.get(experiment_id)
        if experiment["status"] != "running":
            raise ConflictError(
                f"experiment {experiment_id} is already {experiment['status']}", field="id"
            )
        with self.store.write() as conn:
            conn.execute(
                update(experiments)
                .where(X.id == experiment_id)
                .values(
                    status=status,
                    stopped_at=now,
                    reason=reason,
                    decision=dict(decision) if decision else None,
                )
            )
        for version in self._versions(experiment["arms"]):
            if self.registry.get(version)["status"] == "experiment":
                self.registry.set_status(
                    version, "candidate", f"experiment {experiment_id} ended: {reason}", now
                )
        return self.get(experiment_id)

    def _validate(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The stored design of ``spec``, or a ValidationError/NotFoundError naming the field."""
        if not isinstance(spec, Mapping):
            raise ValidationError("an experiment is a JSON object", field="body")
        unknown = set(spec) - _SPEC_FIELDS
        if unknown:  # e.g. "kind" for "type": ignoring it would start the wrong experiment
            raise ValidationError(
                f"unknown experiment fields {sorted(unknown)}; known: {sorted(_SPEC_FIELDS)}",
                field=min(unknown),
            )
        kind = spec.get("type", "ab")
        if kind not in KINDS:
            raise ValidationError(f"type must be one of {KINDS}, got {kind!r}", field="type")
        arms = _arms(spec.get("arms"), kind, self.validate_policy)
        for version in self._versions(arms):
            status = self.registry.get(version)["status"]  # NotFoundError for unknown versions
            if status not in SERVABLE:
                raise ConflictError(f"model {version} is {status}; it cannot serve", field="arms")
        metric = spec.get("metric", "ctr")
        if metric not in METRICS:
            raise ValidationError(
                f"metric must be one of {METRICS}, got {metric!r}", field="metric"
            )
        min_sample = spec.get("min_sample_size", 100)
        if isinstance(min_sample, bool) or not isinstance(min_sample, int) or min_sample < 2:
            raise ValidationError(
                "min_sample_size must be an integer >= 2", field="min_sample_size"
            )
        name = spec.get("name") or f"{' vs '.join(a['name'] for a in arms)}"
        if not isinstance(name, str) or len(name) > 128:
            raise ValidationError("name must be a string of at most 128 characters", field="name")
        return {
            "name": name,
            "kind": kind,
            "arms": arms,
            "metric": metric,
            "guardrails": _guardrails(spec.get("guardrails", [])),
            "min_sample_size": min_sample,
        }

    @staticmethod
    def _versions(arms: Sequence[Mapping[str, Any]]) -> list[str]:
        return [str(a["model_version"]) for a in arms if a.get("model_version")]


def _arms(raw: Any, kind: str, validate_policy: Callable[[Any], object]) -> list[dict[str, Any]]:
    """Arms as stored: name, model_version or policy, weight as a fraction summing to 1."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise ValidationError("arms must be a list of at least two arms", field="arms")
    if kind == "interleaving" and len(raw) != 2:
        raise ValidationError("an interleaving experiment compares exactly two arms", field="arms")
    arms: list[dict[str, Any]] = []
    for index, arm in enumerate(raw):
        where = f"arms.{index}"
        if not isinstance(arm, Mapping) or set(arm) - {"name", "model_version", "policy", "weight"}:
            raise ValidationError(
                "an arm has name, model_version or policy, and weight", field=where
            )
        name, version, policy = arm.get("name"), arm.get("model_version"), arm.get("policy")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise ValidationError("arm name must be 1-64 characters", field=f"{where}.name")
        if version is not None and not isinstance(version, str):
            raise ValidationError("model_version must be a string", field=f"{where}.model_version")
        if policy is not None:
            if kind == "interleaving":
                raise ValidationError("interleaving compares model versions", field=where)
            validate_policy(policy)
        if kind == "interleaving" and version is None:
            raise ValidationError("interleaving arms need a model_version", field=where)
        arms.append({"name": name, "model_version": version, "policy": policy})
    if len({a["name"] for a in arms}) != len(arms):
        raise ValidationError("arm names must be unique", field="arms")
    default = [100.0 / len(raw)] * len(raw)
    weights = [arm.get("weight", d) for arm, d in zip(raw, default, strict=True)]
    if kind == "interleaving":
        weights = default
    shares = _validate.shares(weights, "arms.weight")
    for arm, share in zip(arms, shares.tolist(), strict=True):
        arm["weight"] = share
    return arms


def _guardrails(raw: Any) -> list[dict[str, Any]]:
    """Guardrails: a metric that must not get worse by more than a relative margin."""
    if not isinstance(raw, list):
        raise ValidationError("guardrails must be a list", field="guardrails")
    out = []
    for index, guard in enumerate(raw):
        where = f"guardrails.{index}"
        if not isinstance(guard, Mapping) or guard.get("metric") not in METRICS:
            raise ValidationError(f"a guardrail names a metric from {METRICS}", field=where)
        margin = _validate.positive(guard.get("margin", 0.05), f"{where}.margin")
        higher = guard.get("higher_is_better", True)
        if not isinstance(higher, bool):
            raise ValidationError("higher_is_better must be true or false", field=where)
        out.append({"metric": guard["metric"], "margin": margin, "higher_is_better": higher})
    return out


def guard_promotion(store: Store, version: str | None) -> None:
    """Refuse a manual promotion or rollback while an experiment is running."""
    with store.read() as conn:
        running = conn.execute(select(X.id).where(X.status == "running")).scalar_one_or_none()
    if running is not None:
        raise ConflictError(
            f"experiment {running} is running; stop it before changing the champion",
            field="version",
        )
