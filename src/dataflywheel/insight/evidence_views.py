"""Each health condition's evidence as things a person reads at a glance: facts with units and
plain labels, small charts and tables. Never a raw mapping or a list of tuples.

The health report's evidence keys are its own business (:mod:`dataflywheel.insight.health`);
known keys get a tailored view, and any other key still gets a labelled, formatted row, so a
new piece of evidence shows up readable without a change here.

A view is one of ``{"kind": "facts", "items": [{"label", "value"}]}``,
``{"kind": "bars"|"line", "title", "x": [...], "series": [{"name", "y": [...]}],
"percent": bool, "highlight": [...]}`` or ``{"kind": "table", "title", "columns", "rows"}``
with every table cell already a display string.
"""

from __future__ import annotations

import math
from typing import Any

# Plain-language labels of known evidence keys; unknown keys are humanised from their name.
LABELS = {
    "strong_events": "Strong-signal events",
    "feedback_events": "Feedback events",
    "strong_share": "Strong-signal share",
    "strong_share_earlier": "Strong share, earlier half",
    "strong_share_recent": "Strong share, recent half",
    "models": "Model versions trained",
    "retrained_on_new_data": "Retrained on new data",
    "current": "Champion",
    "current_is_champion": "Champion in place",
    "current_data_until": "Champion learned from data until",
    "data_lag_days": "Champion's data lag",
    "coverage": "Data the champion learned from",
    "newest": "Newest version",
    "newest_coverage": "Data the newest version learned from",
    "newest_data_lag_days": "Newest version's data lag",
    "data_to_model_seconds_median": "Data-to-model latency (median)",
    "unused_data_waiting_seconds": "Oldest unused data waiting",
    "metric": "Offline metric",
    "impressions": "Lists served",
    "engaged_impressions": "Lists engaged with",
    "paired_days": "Days paired (CTR → next-day DAU)",
    "dau_growth": "DAU growth, last week vs first",
    "ctr_variation": "Spread of daily CTR (coefficient of variation)",
    "lists": "Model-served lists checked",
    "uniform_share": "Lists that look random",
    "next_day_dau": "Daily CTR → next day's DAU",
    "return_rate": "Daily CTR → that day's return rate",
}
_PERCENT_WORDS = ("share", "coverage", "ctr", "rate", "lift", "growth")
_HANDLED = {
    "thresholds",
    "event_types",
    "strong_types",
    "metric_trend",
    "ctr_by_version",
    "serving",
    "model_vs_exploration",
    "comparison",
    "response_to_ctr",
    "user_response",
}


def label(key: str) -> str:
    return LABELS.get(key) or key.replace("_", " ").capitalize()


def fmt(value: Any, key: str = "") -> str:
    """A value as text with its unit, guessed from the key where the value alone is a number."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and not math.isfinite(value):
        return "—"
    name = key.lower()
    if isinstance(value, int | float):
        if "seconds" in name:
            return duration(float(value))
        if name.endswith("days") and "user_days" not in name:
            return f"{value:g} day" + ("" if value == 1 else "s")
        if "variation" not in name and any(w in name for w in _PERCENT_WORDS):
            return percent(float(value))
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) if v is not None else "no model" for v in value) or "—"
    if isinstance(value, dict):
        return " · ".join(f"{label(k)} {fmt(v, k)}" for k, v in value.items())
    return str(value)


def percent(value: float) -> str:
    shown = value * 100
    return f"{shown:.1f} %" if abs(shown) >= 1 or shown == 0 else f"{shown:.2f} %"


def duration(seconds: float) -> str:
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if abs(seconds) >= size:
            amount = seconds / size
            return f"{amount:.1f} {unit}s" if round(amount, 1) != 1 else f"1 {unit}"
    return f"{seconds:.0f} s"


def views(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The views of one condition's evidence, most telling first."""
    out: list[dict[str, Any]] = []
    facts = [
        {"label": label(k), "value": fmt(v, k)}
        for k, v in evidence.items()
        if k not in _HANDLED and not isinstance(v, dict | list)
    ]
    if isinstance(evidence.get("metric_trend"), dict):
        out.append(_metric_trend(evidence["metric_trend"], str(evidence.get("metric") or "")))
    if isinstance(evidence.get("event_types"), dict):
        strong = set(evidence.get("strong_types") or {})
        types = sorted(evidence["event_types"].items(), key=lambda kv: -kv[1])
        out.append(
            {
                "kind": "bars",
                "title": "Events by type (strong signals highlighted)",
                "x": [k for k, _ in types],
                "series": [{"name": "events", "y": [v for _, v in types]}],
                "highlight": [k in strong for k, _ in types],
                "percent": False,
            }
        )
    if isinstance(evidence.get("ctr_by_version"), list):
        rows = evidence["ctr_by_version"]
        out.append(
            {
                "kind": "bars",
                "title": "Click-through of served lists, by model version",
                "x": [r.get("version") or "no model" for r in rows],
                "series": [{"name": "CTR", "y": [r.get("ctr") for r in rows]}],
                "hover": [f"{r.get('impressions', 0):,} lists" for r in rows],
                "percent": True,
            }
        )
    for key in ("comparison", "model_vs_exploration", "user_response"):
        if isinstance(evidence.get(key), dict):
            out.append(comparison(evidence[key], key))
    if isinstance(evidence.get("response_to_ctr"), dict):
        out.append(_correlations(evidence["response_to_ctr"]))
    if isinstance(evidence.get("serving"), dict):
        serving = evidence["serving"]
        facts.append({"label": label("lists"), "value": fmt(serving.get("lists"), "lists")})
        facts.append(
            {"label": label("uniform_share"), "value": fmt(serving.get("uniform_share"), "share")}
        )
    for key, value in evidence.items():  # evidence this module does not know yet
        if key not in _HANDLED and isinstance(value, dict | list):
            out.append(_generic(key, value))
    if facts:
        out.insert(0, {"kind": "facts", "items": facts})
    if isinstance(evidence.get("thresholds"), dict):
        out.append(
            {
                "kind": "note",
                "text": "Thresholds: " + fmt(evidence["thresholds"]),
            }
        )
    return out


def _metric_trend(trend: dict[str, Any], metric: str) -> dict[str, Any]:
    points = [p for p in trend.get("versions") or [] if isinstance(p, dict)]
    return {
        "kind": "line",
        "title": f"Offline {metric or 'metric'} by model version"
        + (f" (first {fmt(trend.get('first'))}, last {fmt(trend.get('last'))})" if points else ""),
        "x": [p.get("version") for p in points],
        "series": [{"name": metric, "y": [p.get(metric) for p in points]}],
        "percent": False,
    }


# The key names of a two-group comparison, per evidence kind: (group count, rate, count unit).
_SIDES = {
    "user_response": (
        ("poorly served user-days", "user_days_poorly_served", "return_rate_poorly_served"),
        ("well served user-days", "user_days_well_served", "return_rate_well_served"),
        "user-days",
        "next-day return",
    ),
}


def comparison(result: dict[str, Any], key: str) -> dict[str, Any]:
    """A two-group comparison (older/newer, with a difference and its 95 % interval) as a table."""
    if key in _SIDES:
        older, newer, unit, rate = _SIDES[key]
        sides = [
            (older[0], result.get(older[1]), result.get(older[2])),
            (newer[0], result.get(newer[1]), result.get(newer[2])),
        ]
    else:
        unit = "slots" if key == "model_vs_exploration" else "lists"
        rate = "click-through"
        sides = [
            (_group(result.get("older")), result.get("impressions_older"), result.get("ctr_older")),
            (_group(result.get("newer")), result.get("impressions_newer"), result.get("ctr_newer")),
        ]
    rows = [[name, fmt(count), fmt(value, "rate")] for name, count, value in sides]
    lift = result.get("relative_lift")
    interval = (
        f"{_points(result.get('diff'))} (95 % interval {_points(result.get('diff_low'))} to "
        f"{_points(result.get('diff_high'))})"
        if result.get("diff") is not None
        else "—"
    )
    titles = {
        "comparison": "Online comparison: " + str(result.get("method") or "newer vs older"),
        "model_vs_exploration": "Model's picks vs exploration's picks, at the same positions",
        "user_response": "Do users come back more after well-served days?",
    }
    return {
        "kind": "table",
        "title": titles.get(key, label(key)),
        "columns": ["Group", unit.capitalize(), rate.capitalize()],
        "rows": rows,
        "footer": f"Difference {interval}"
        + (f"; relative lift {fmt(lift, 'lift')}" if lift is not None else ""),
    }


def _group(value: Any) -> str:
    if isinstance(value, list):
        return "versions " + fmt(value)
    return "—" if value is None else str(value)


def _points(value: Any) -> str:
    """A difference of two rates, in percentage points."""
    if not isinstance(value, int | float):
        return "—"
    return f"{value * 100:+.1f} pts"


def _correlations(found: dict[str, Any]) -> dict[str, Any]:
    rows = [
        [label(k), fmt(v.get("rho")), fmt(v.get("p_value"))]
        for k, v in found.items()
        if isinstance(v, dict)
    ]
    return {
        "kind": "table",
        "title": "Day-level response to click-through (Spearman)",
        "columns": ["Pairing", "ρ", "p-value"],
        "rows": rows,
    }


def _generic(key: str, value: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """Unknown structured evidence: a mapping as label/value rows, a list of mappings as a table."""
    if isinstance(value, dict):
        rows = [[label(k), fmt(v, k)] for k, v in value.items()]
        return {"kind": "table", "title": label(key), "columns": ["", ""], "rows": rows}
    records = [v for v in value if isinstance(v, dict)]
    if not records:
        return {"kind": "facts", "items": [{"label": label(key), "value": fmt(value)}]}
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {
        "kind": "table",
        "title": label(key),
        "columns": [label(c) for c in columns],
        "rows": [[fmt(r.get(c), c) for c in columns] for r in records],
    }
