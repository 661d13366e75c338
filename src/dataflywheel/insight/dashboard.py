"""Dashboard data (one JSON document, aggregated server-side) and the HTML page and report.

The page is static: it fetches ``/v1/dashboard`` every few seconds and draws with the plotly.js
that ships inside the ``plotly`` package, so it works offline. The report is the same page with
plotly.js and the data inlined into one self-contained file.
"""

from __future__ import annotations

import re
import time
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, MetaData, Table, func, inspect, select

from dataflywheel.insight.days import parse_day
from dataflywheel.insight.evidence_views import views
from dataflywheel.insight.health import health
from dataflywheel.insight.kpis import data_span, kpis
from dataflywheel.insight.pages import model_history, slots_by_day
from dataflywheel.insight.quality import transitions, version_days
from dataflywheel.store.store import Store

STATIC = Path(__file__).with_name("static")
# Day rows up to this many days; longer ranges are shown by week so the page stays light.
MAX_DAY_ROWS = 400
OPTIONAL_ROWS = 20
_PLACEHOLDER = re.compile(r"\{\{(STYLE|PLOTLY|DATA|APP)\}\}")
# The page's script, in order: helpers, the overview, the other pages, then the router.
SCRIPTS = ("ui.js", "overview.js", "pages.js", "app.js")
EXPERIMENT_TABLES = ("experiments",)
LABEL_TABLES = ("label_queue", "labels")


def dashboard_data(
    store: Store, start: str | None = None, end: str | None = None
) -> dict[str, Any]:
    """Everything the dashboard draws, for [start, end] (default: all the data)."""
    low, high = parse_day(start, "from"), parse_day(end, "to")
    verdict = health(store)  # refreshes the rollups first: the span below must include today's
    with store.read() as conn:
        span = data_span(conn)
    first = low if low is not None else span[0] if span else 0
    last = high if high is not None else span[1] if span else 0
    grain = "day" if last - first < MAX_DAY_ROWS else "week"
    for condition in verdict["conditions"]:
        condition["views"] = views(condition.get("evidence") or {})
    document: dict[str, Any] = {
        "generated_at": time.time(),
        "kpis": kpis(store, start, end, grain),
        "health": verdict,
    }
    with store.read() as conn:
        document["versions_by_day"] = version_days(conn, first, last) if span else []
        document["slots_by_day"] = slots_by_day(conn, store.settings, first, last) if span else []
        document["transitions"] = transitions(conn)
        document["model_history"] = model_history(
            document["kpis"].get("models") or [], transitions(conn, limit=1_000)
        )
        document["experiments"] = optional_table(conn, EXPERIMENT_TABLES)
        document["labels"] = optional_table(conn, LABEL_TABLES)
    return document


def optional_table(conn: Connection, names: tuple[str, ...]) -> dict[str, Any]:
    """The newest rows of the first of ``names`` that exists, or an empty state."""
    inspector = inspect(conn)
    for name in names:
        if inspector.has_table(name):
            table = Table(name, MetaData(), autoload_with=conn)
            count = conn.execute(select(func.count()).select_from(table)).scalar_one()
            key = next(iter(table.primary_key.columns), next(iter(table.columns)))
            rows = conn.execute(select(table).order_by(key.desc()).limit(OPTIONAL_ROWS))
            return {
                "available": True,
                "table": name,
                "count": int(count),
                # Reflected column names are SQLAlchemy ``quoted_name`` objects, which orjson
                # refuses as keys: plain strings from here on.
                "rows": [{str(k): _plain(v) for k, v in row._mapping.items()} for row in rows],
            }
    return {"available": False, "table": None, "count": 0, "rows": []}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


@cache
def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@cache
def plotly_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def render_page(data: dict[str, Any] | None = None) -> str:
    """The dashboard page: live (fetches its data) or, given ``data``, a self-contained report."""
    if data is None:
        plotly_tag = '<script src="/dashboard/plotly.min.js"></script>'
        embedded = "null"
    else:
        plotly_tag = f"<script>{_script_safe(plotly_path().read_text(encoding='utf-8'))}</script>"
        embedded = script_json(data)
    parts = {
        "STYLE": _asset("dashboard.css"),
        "PLOTLY": plotly_tag,
        "DATA": embedded,
        "APP": "\n".join(_asset(name) for name in SCRIPTS),
    }
    # One pass, so inlined text is never searched for placeholders.
    return _PLACEHOLDER.sub(lambda m: parts[m[1]], _asset("dashboard.html"))


def render_report(store: Store, start: str | None = None, end: str | None = None) -> str:
    """``flywheel report`` / ``GET /v1/report``: the dashboard as one offline HTML file."""
    return render_page(dashboard_data(store, start, end))


def _script_safe(text: str) -> str:
    """Keep inlined script code (plotly.js, not data) from closing its <script> element."""
    return text.replace("</", "<\\/")


# Inside JSON these characters occur only in strings, where the escapes mean the same: the
# result parses to the same value, and data can neither end the <script> element nor open an
# HTML comment or a nested <script> (which would make the parser swallow the rest of the page).
_JSON_IN_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe to place inside an HTML <script> element."""
    return orjson.dumps(data).decode().translate(_JSON_IN_HTML)
