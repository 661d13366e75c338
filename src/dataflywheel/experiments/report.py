"""The status of an experiment: per-arm metrics, the analysis and a decision the loop can act on.

Every decision is taken from always-valid (sequential) intervals, so the loop may look after
each step without inflating false positives; a sample ratio mismatch blocks any decision.
Verdicts: ``collecting``, ``blocked``, ``treatment_better``, ``treatment_worse``,
``guardrail_failed``, ``not_worse``, ``inconclusive``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from dataflywheel.config import RolloutSettings
from dataflywheel.errors import ValidationError
from dataflywheel.experiments.analysis import AnalysisResult, analyze
from dataflywheel.experiments.interleaving import preference_test
from dataflywheel.experiments.metrics import DAY, ArmData, arm_data, interleaving_credit
from dataflywheel.experiments.power import power
from dataflywheel.experiments.ratio import ratio_metric
from dataflywheel.experiments.srm import srm
from dataflywheel.store import schema
from dataflywheel.store.store import Store

MAX_TIMELINE_POINTS = 60


def experiment_status(
    store: Store, experiment: dict[str, Any], rollout: RolloutSettings, now: float
) -> dict[str, Any]:
    """``experiment`` with ``arms`` metrics, ``analysis`` and ``decision`` filled in."""
    if experiment["type"] == "interleaving":
        return _interleaving_status(store, experiment, rollout)
    data = arm_data(store, experiment, rollout.pre_period_seconds, now)
    arms = [_arm_summary(arm, data[arm["name"]]) for arm in experiment["arms"]]
    counts = [len(data[a["name"]].users) for a in experiment["arms"]]
    shares = [a["weight"] for a in experiment["arms"]]
    srm_result = srm(counts, shares).to_dict() if sum(counts) > 0 else None
    control = experiment["arms"][0]["name"]
    comparisons = [
        _compare(experiment, data[control], data[arm["name"]], arm["name"], rollout)
        for arm in experiment["arms"][1:]
    ]
    decision = _decide(experiment, comparisons, srm_result, min(counts))
    return {**experiment, "arms": arms, "srm": srm_result, "analysis": comparisons, **decision}


def experiment_timeline(
    store: Store, experiment: dict[str, Any], rollout: RolloutSettings, now: float
) -> list[dict[str, Any]]:
    """The primary metric's cumulative lift per treatment arm at the end of each UTC day since
    the start, with the same sequential interval the status reports: each point is what the
    status said at that moment, and the last one (the end or ``now``) is the status itself.

    Interleaving experiments have no lift (their sign test is in the status): ``[]``.
    """
    if experiment["type"] == "interleaving":
        return []
    start = float(experiment["created_at"])
    end = max(float(experiment["stopped_at"] or now), start)
    i = schema.impressions.c
    with store.read() as conn:
        shown = conn.execute(
            select(i.user_id, i.ts).where(i.experiment_id == experiment["id"])
        ).all()
    days = list(range(int(start // DAY), int(end // DAY) + 1))
    if len(days) > MAX_TIMELINE_POINTS:  # evenly spaced days, always ending with the last
        step = len(days) / MAX_TIMELINE_POINTS
        days = [days[len(days) - 1 - int(k * step)] for k in range(MAX_TIMELINE_POINTS)][::-1]
    control = experiment["arms"][0]["name"]
    tuning = float(experiment["min_sample_size"] * len(experiment["arms"]))
    points: list[dict[str, Any]] = []
    for day in days:
        cutoff = min((day + 1) * DAY, end)
        seen: dict[str, int] = {}
        for user, ts in shown:
            if ts <= cutoff:
                seen[user] = seen.get(user, 0) + 1
        # Events are read up to the cutoff; impressions (and so users) must be cut the same way.
        raw = arm_data(
            store, {**experiment, "stopped_at": cutoff}, rollout.pre_period_seconds, cutoff
        )
        data = {arm: _until(values, seen) for arm, values in raw.items()}
        for arm in experiment["arms"][1:]:
            first, second = data[control], data[arm["name"]]
            if len(first.users) < 2 or len(second.users) < 2:
                continue
            try:
                result, _ = _metric(experiment["metric"], first, second, rollout.alpha, tuning)
            except ValidationError:  # e.g. no impressions yet for a ratio
                continue
            points.append(
                {
                    "arm": arm["name"],
                    "date": datetime.fromtimestamp(day * DAY, UTC).date().isoformat(),
                    "lift": result.lift,
                    "low": result.low,
                    "high": result.high,
                    "n_control": result.n_control,
                    "n_treatment": result.n_treatment,
                }
            )
    return points


def _until(data: ArmData, seen: dict[str, int]) -> ArmData:
    """``data`` restricted to the users exposed by the cutoff, with their impressions by then."""
    keep = np.array([user in seen for user in data.users], dtype=bool)
    return ArmData(
        users=[user for user in data.users if user in seen],
        impressions=np.array([seen[u] for u in data.users if u in seen], dtype=np.float64),
        values={name: values[keep] for name, values in data.values.items()},
        pre={name: values[keep] for name, values in data.pre.items()},
    )


def _arm_summary(arm: dict[str, Any], data: ArmData) -> dict[str, Any]:
    means = {name: _mean(values) for name, values in data.values.items()}
    total = float(data.impressions.sum())
    means["ctr"] = float(data.values["clicks"].sum()) / total if total else None
    return {**arm, "users": len(data.users), "impressions": int(total), "metrics": means}


def _mean(values: NDArray[np.float64]) -> float | None:
    return float(values.mean()) if values.size else None


def _metric(
    name: str, control: ArmData, treatment: ArmData, alpha: float, tuning: float
) -> tuple[AnalysisResult, bool]:
    """The sequential analysis of one metric, and whether CUPED adjusted it. ``tuning`` is the
    planned total sample, where the confidence sequence is tightest."""
    if name == "ctr":
        result = ratio_metric(
            control.values["clicks"],
            control.impressions,
            treatment.values["clicks"],
            treatment.impressions,
            method="sequential",
            alpha=alpha,
            sequential_tuning=tuning,
        )
        return result, False
    cuped = bool(control.pre) and bool(treatment.pre)
    result = analyze(
        control.values[name],
        treatment.values[name],
        control.pre.get(name) if cuped else None,
        treatment.pre.get(name) if cuped else None,
        method="sequential",
        alpha=alpha,
        sequential_tuning=tuning,
    )
    return result, cuped


def _compare(
    experiment: dict[str, Any],
    control: ArmData,
    treatment: ArmData,
    arm: str,
    rollout: RolloutSettings,
) -> dict[str, Any]:
    """Primary metric, non-inferiority of the primary, guardrails and power for one arm."""
    entry: dict[str, Any] = {"arm": arm, "metric": experiment["metric"], "result": None}
    if len(control.users) < 2 or len(treatment.users) < 2:
        return entry
    tuning = float(experiment["min_sample_size"] * len(experiment["arms"]))
    try:
        result, cuped = _metric(experiment["metric"], control, treatment, rollout.alpha, tuning)
    except ValidationError as exc:  # e.g. no impressions yet for a ratio
        return {**entry, "error": exc.message}
    margin = rollout.non_inferiority_margin * abs(result.control_mean)
    guardrails = []
    for guard in experiment["guardrails"]:
        try:
            check, _ = _metric(guard["metric"], control, treatment, rollout.alpha, tuning)
        except ValidationError as exc:
            guardrails.append({**guard, "passed": False, "error": exc.message})
            continue
        allowed = guard["margin"] * abs(check.control_mean)
        worst = check.low if guard["higher_is_better"] else -check.high
        guardrails.append({**guard, "passed": worst >= -allowed, "result": check.to_dict()})
    return {
        **entry,
        "result": result.to_dict(),
        "cuped": cuped,
        "not_worse": result.low >= -margin,
        "non_inferiority_margin": margin,
        "guardrails": guardrails,
        "power": _power(result, control, rollout),
    }


def _power(result: AnalysisResult, control: ArmData, rollout: RolloutSettings) -> float | None:
    """Power to detect a relative lift of ``mde`` with the users per arm seen so far."""
    n = min(result.n_control, result.n_treatment)
    sd = result.se * np.sqrt(n / 2.0)
    if n < 2 or sd <= 0 or result.control_mean == 0:
        return None
    try:
        return power(n, result.control_mean, float(sd), rollout.mde, rollout.alpha, relative=True)
    except ValidationError:
        return None


def _decide(
    experiment: dict[str, Any],
    comparisons: list[dict[str, Any]],
    srm_result: dict[str, Any] | None,
    n_min: int,
) -> dict[str, Any]:
    """The verdict for the best treatment arm; SRM blocks, significance needs guardrails."""
    if srm_result is not None and srm_result["mismatch"]:
        reason = f"sample ratio mismatch (p={srm_result['p_value']:.2g}); fix assignment first"
        return {"decision": {"verdict": "blocked", "arm": None, "reason": reason}}
    ready = [c for c in comparisons if c["result"] is not None]
    if not ready:
        return {"decision": {"verdict": "collecting", "arm": None, "reason": "too few users yet"}}
    best = max(ready, key=lambda c: c["result"]["lift"])
    result = best["result"]
    detail = (
        f"{best['metric']} lift {result['lift']:+.4g} "
        f"[{result['low']:+.4g}, {result['high']:+.4g}], p={result['p_value']:.3g}"
    )
    guards_ok = all(g["passed"] for g in best["guardrails"])
    if result["significant"] and result["lift"] > 0:
        verdict = "treatment_better" if guards_ok else "guardrail_failed"
    elif all(c["result"]["significant"] and c["result"]["lift"] < 0 for c in ready):
        verdict = "treatment_worse"
    elif n_min < experiment["min_sample_size"]:
        verdict = "collecting"
        detail += f"; {n_min} of {experiment['min_sample_size']} users per arm"
    elif best["not_worse"]:
        verdict = "not_worse" if guards_ok else "guardrail_failed"
    else:
        verdict = "inconclusive"
    return {"decision": {"verdict": verdict, "arm": best["arm"], "reason": detail}}


def _interleaving_status(
    store: Store, experiment: dict[str, Any], rollout: RolloutSettings
) -> dict[str, Any]:
    """Team-draft credit per user and the sign test, decided at the planned sample size."""
    credit_a, credit_b = interleaving_credit(store, experiment)
    first, second = experiment["arms"]
    arms = [
        {**first, "users": int(credit_a.size), "credit": float(credit_a.sum())},
        {**second, "users": int(credit_b.size), "credit": float(credit_b.sum())},
    ]
    if credit_a.size == 0:
        decision = {"verdict": "collecting", "arm": None, "reason": "no interleaved lists yet"}
        return {**experiment, "arms": arms, "srm": None, "analysis": None, "decision": decision}
    test = preference_test(credit_a, credit_b, alpha=rollout.alpha)
    detail = (
        f"{second['name']} preferred by {test.wins_b} users, {first['name']} by {test.wins_a} "
        f"({test.ties} ties), p={test.p_value:.3g}"
    )
    if credit_a.size < experiment["min_sample_size"]:
        verdict = "collecting"
        detail += f"; {credit_a.size} of {experiment['min_sample_size']} users"
    elif test.winner == "B":
        verdict = "treatment_better"
    elif test.winner == "A":
        verdict = "treatment_worse"
    else:
        verdict = "not_worse"
    decision = {"verdict": verdict, "arm": second["name"], "reason": detail}
    return {
        **experiment,
        "arms": arms,
        "srm": None,
        "analysis": test.to_dict(),
        "decision": decision,
    }
