"""Bad experiment specs and forbidden moves fail with an error naming the field, and leave the
store as it was: no experiment row, no model status changed, no audit entry.

The HTTP status codes of the common cases are in tests/api/test_rollout_api.py; this covers the
rest of the validation, the Python API and the CLI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dataflywheel as dfw
from dataflywheel.cli import main
from dataflywheel.errors import ConflictError, FlywheelError, NotFoundError, ValidationError

T0 = 1.7e9
V1 = {"name": "control", "model_version": "v1", "weight": 50}
V2 = {"name": "candidate", "model_version": "v2", "weight": 50}


def _registered(url: str) -> dfw.Flywheel:
    """v1 champion, v2 candidate, v3 retired (registry entries only: an experiment's design
    never loads an artifact)."""
    wheel = dfw.open(url)
    for n in range(3):
        wheel.registry.register(
            name="popularity",
            params={},
            metrics={},
            snapshot_id="s",
            artifact="none",
            fit_seconds=0.0,
            created_at=T0 + n,
        )
    wheel.registry.promote("v1", "first model", T0 + 3)
    wheel.registry.set_status("v3", "retired", "test", T0 + 3)
    return wheel


@pytest.fixture
def flywheel(store_url: str) -> Iterator[dfw.Flywheel]:
    wheel = _registered(store_url)
    try:
        yield wheel
    finally:
        wheel.close()


def _state(flywheel: dfw.Flywheel) -> tuple[Any, ...]:
    return (
        flywheel.loop.rollout.experiments.all(),
        [(m["version"], m["status"]) for m in flywheel.registry.versions()],
        flywheel.registry.transitions(),
    )


def _ab(**extra: Any) -> dict[str, Any]:
    return {"arms": [V1, V2], **extra}


def _arms(*arms: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"arms": list(arms), **extra}


EXPLORE = {"name": "explore", "policy": {"name": "greedy"}}
INVALID = ValidationError


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        (_arms(V1, {**V2, "weight": 0.6}), INVALID, "arms.weight"),
        (_arms({**V1, "weight": 0.5}, {**V2, "weight": 0.6}), INVALID, "arms.weight"),
        (_arms({**V1, "weight": 150}, {**V2, "weight": -50}), INVALID, "arms.weight"),
        (_arms(V1, {**V2, "weight": "half"}), INVALID, "arms.weight"),
        (_arms(V1), INVALID, "arms"),
        ({"arms": {"control": V1}}, INVALID, "arms"),
        (_arms(V1, {**V2, "name": "control"}), INVALID, "arms"),
        (_arms(V1, {**V2, "traffic": 1}), INVALID, "arms.1"),
        (_arms(V1, {**V2, "name": ""}), INVALID, "arms.1.name"),
        (_arms(V1, {**V2, "model_version": 2}), INVALID, "arms.1.model_version"),
        (_arms(V1, {**EXPLORE, "policy": {"name": "ucb"}}), INVALID, "name"),
        (_ab(type="multivariate"), INVALID, "type"),
        (_ab(kind="interleaving"), INVALID, "kind"),
        (_ab(metric="revenue"), INVALID, "metric"),
        (_ab(min_sample_size=1), INVALID, "min_sample_size"),
        (_ab(min_sample_size=True), INVALID, "min_sample_size"),
        (_ab(name="x" * 129), INVALID, "name"),
        (_ab(guardrails=[{"metric": "latency"}]), INVALID, "guardrails.0"),
        (_ab(guardrails=[{"metric": "ctr", "margin": -1}]), INVALID, "guardrails.0.margin"),
        (_arms(V1, V2, {**V2, "name": "third"}, type="interleaving"), INVALID, "arms"),
        (_arms(V1, EXPLORE, type="interleaving"), INVALID, "arms.1"),
        (_arms(V2, {**V1, "model_version": "v9"}), NotFoundError, "version"),
        (_arms(V2, {**V1, "model_version": "v3"}), ConflictError, "arms"),
        ([V1, V2], INVALID, "body"),
    ],
)
def test_a_bad_spec_changes_nothing(
    flywheel: dfw.Flywheel, spec: Any, error: type[FlywheelError], field: str
) -> None:
    before = _state(flywheel)
    with pytest.raises(error) as caught:
        flywheel.loop.rollout.experiments.create(spec)
    assert caught.value.details["field"] == field
    assert _state(flywheel) == before


def test_weights_may_be_fractions_or_percentages(flywheel: dfw.Flywheel) -> None:
    experiments = flywheel.loop.rollout.experiments
    spec = {"arms": [{**V1, "weight": 0.9}, {**V2, "weight": 0.1}]}
    created = experiments.create(spec, now=T0)
    assert [a["weight"] for a in created["arms"]] == pytest.approx([0.9, 0.1])
    experiments.finish(created["id"], "test", now=T0 + 1)
    thirds = experiments.create({"arms": [{"name": n, "model_version": "v2"} for n in "abc"]})
    assert [a["weight"] for a in thirds["arms"]] == pytest.approx([1 / 3] * 3)


def test_the_champion_is_frozen_while_an_experiment_runs(flywheel: dfw.Flywheel) -> None:
    experiments = flywheel.loop.rollout.experiments
    created = experiments.create({"arms": [V1, V2]}, now=T0)
    assert flywheel.registry.get("v2")["status"] == "experiment"
    assert flywheel.registry.get("v1")["status"] == "champion"  # the champion keeps its status
    before = _state(flywheel)
    for move in (lambda: flywheel.promote("v2"), lambda: flywheel.rollback()):
        with pytest.raises(ConflictError, match=created["id"]):
            move()
    with pytest.raises(ConflictError, match="running"):
        experiments.create({"arms": [V1, {**V2, "weight": 50}]})
    assert _state(flywheel) == before

    experiments.finish(created["id"], "test", now=T0 + 1)
    assert flywheel.registry.get("v2")["status"] == "candidate"
    with pytest.raises(ConflictError, match="already stopped"):
        experiments.finish(created["id"], "again")
    assert flywheel.promote("v2")["status"] == "champion"


def test_cli_errors_are_one_line_and_experiments_round_trip(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _registered(sqlite_url).close()
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> tuple[int, str, str]:
        """``flywheel experiment ARGS --db URL`` in this process: exit code, stdout, stderr."""
        monkeypatch.setattr(sys, "argv", ["flywheel", "experiment", *args, "--db", sqlite_url])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, stdout, stderr = run("create", "{not json")
    assert (code, stdout) == (2, "")
    assert stderr.startswith("error (spec): not valid JSON") and "Traceback" not in stderr
    code, _, stderr = run("create", json.dumps({"arms": [V1, {**V2, "weight": 40}]}))
    assert code == 2
    assert stderr.strip() == "error (arms.weight): arms.weight must sum to 1 (or 100%), got 90"

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "v2 vs v1", "arms": [V1, V2], "metric": "clicks"}))
    code, stdout, stderr = run("create", f"@{spec}", "--json")
    assert code == 0, stderr
    experiment = json.loads(stdout)
    assert experiment["name"] == "v2 vs v1" and experiment["metric"] == "clicks"
    assert experiment["status"] == "running"
    status = json.loads(run("status", experiment["id"], "--json")[1])
    assert status["decision"]["verdict"] == "collecting"
    assert [arm["users"] for arm in status["arms"]] == [0, 0]
    stopped = json.loads(run("stop", experiment["id"], "--json")[1])
    assert stopped["status"] == "stopped" and stopped["reason"] == "stopped from the CLI"
    code, _, stderr = run("stop", experiment["id"])
    assert code == 2 and "already stopped" in stderr
