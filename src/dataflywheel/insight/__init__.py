"""Insight: KPIs from incremental daily rollups, the flywheel health verdict, the dashboard.

refresh(store)                    bring the rollups up to date (every reader does it first)
kpis(store, start, end, grain)    the GET /v1/kpis object
health(store)                     the GET /v1/health/flywheel object
dashboard_data(store, start, end) what the dashboard draws (GET /v1/dashboard)
render_report(store, start, end)  the dashboard as one self-contained HTML file
"""

from __future__ import annotations

from dataflywheel.insight.dashboard import dashboard_data, render_page, render_report
from dataflywheel.insight.health import health
from dataflywheel.insight.kpis import kpis
from dataflywheel.insight.rollups import RefreshResult, refresh

__all__ = [
    "RefreshResult",
    "dashboard_data",
    "health",
    "kpis",
    "refresh",
    "render_page",
    "render_report",
]
