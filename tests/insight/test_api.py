"""The insight endpoints and commands: shapes, the same objects from HTTP and CLI, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from typer.testing import CliRunner

import dataflywheel as dfw
from insight.handbuilt import fill

Client = Callable[[str], object]


def test_kpis_endpoint_matches_the_python_api(
    small_any: dfw.Flywheel, client_for: Client, store_url: str
) -> None:
    client = client_for(store_url)
    response = client.get("/v1/kpis", params={"from": "2024-01-01", "to": "2024-01-02"})
    assert response.status_code == 200
    body = response.json()
    assert body["grain"] == "day"
    assert [r["date"] for r in body["rows"]] == ["2024-01-01", "2024-01-02"]
    assert {"dau", "sessions", "avg_session_seconds", "events", "strong_events"} <= set(
        body["rows"][0]
    )
    assert body["rows"][0]["dau"] == 2


def test_errors_are_json_never_500(client_for: Client, sqlite_url: str) -> None:
    client = client_for(sqlite_url)
    for params, field in (
        ({"from": "2024-02-30"}, "from"),
        ({"to": "soon"}, "to"),
        ({"grain": "year"}, "grain"),
        ({"from": "2024-02-02", "to": "2024-02-01"}, "from"),
    ):
        response = client.get("/v1/kpis", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["field"] == field
    empty = client.get("/v1/kpis")
    assert empty.status_code == 200 and empty.json()["rows"] == []
    assert client.get("/v1/health/flywheel").json()["verdict"] == "insufficient-data"
    dashboard = client.get("/v1/dashboard")
    assert dashboard.status_code == 200
    assert dashboard.json()["kpis"]["rows"] == []
    assert client.get("/v1/report").status_code == 200
    assert client.get("/v1/dashboard", params={"from": "x"}).status_code == 422


def test_health_endpoint_shape(small: dfw.Flywheel, client_for: Client, sqlite_url: str) -> None:
    body = client_for(sqlite_url).get("/v1/health/flywheel").json()
    assert body["verdict"] in ("spinning", "stalled", "insufficient-data")
    assert [c["id"] for c in body["conditions"]] == [1, 2, 3, 4]
    for condition in body["conditions"]:
        assert set(condition) >= {"id", "name", "status", "evidence", "confidence", "next_action"}


def test_page_report_and_bundled_plotly(
    small: dfw.Flywheel, client_for: Client, sqlite_url: str
) -> None:
    client = client_for(sqlite_url)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/dashboard/plotly.min.js">' in page.text and "cdn" not in page.text.lower()
    script = client.get("/dashboard/plotly.min.js")
    assert script.status_code == 200 and len(script.content) > 1_000_000
    report = client.get("/v1/report")
    assert report.status_code == 200
    assert "/dashboard/plotly.min.js" not in report.text and len(report.text) > 1_000_000
    assert '"date":"2024-01-02"' in report.text
    data = client.get("/v1/dashboard").json()
    assert data["kpis"]["rows"][1]["ctr"] == 0.5
    assert {r["model_version"] for r in data["versions_by_day"]} == {"v1", "v2"}


def test_admin_key_is_required_once_keys_exist(
    small: dfw.Flywheel, client_for: Client, sqlite_url: str
) -> None:
    from dataflywheel.keys import create_key

    ingest = create_key(small.store, "ingest")
    admin = create_key(small.store, "admin")
    client = client_for(sqlite_url)
    assert client.get("/v1/kpis").status_code == 401
    assert client.get("/v1/kpis", headers={"Authorization": f"Bearer {ingest}"}).status_code == 403
    assert client.get("/v1/kpis", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert client.get("/").status_code == 200  # the page itself holds no data


def test_cli_prints_the_endpoint_objects(
    small: dfw.Flywheel, client_for: Client, cli: typer.Typer, sqlite_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["kpis", "--json", "--db", sqlite_url, "--from", "2024-01-01"])
    assert result.exit_code == 0, result.output
    via_http = client_for(sqlite_url).get("/v1/kpis", params={"from": "2024-01-01"}).json()
    assert json.loads(result.stdout) == via_http
    health = runner.invoke(cli, ["health", "--json", "--db", sqlite_url])
    assert json.loads(health.stdout)["verdict"] == "insufficient-data"
    text = runner.invoke(cli, ["kpis", "--db", sqlite_url, "--grain", "week"])
    assert text.exit_code == 0 and "2024-01-01" in text.stdout
    out = tmp_path / "report.html"
    written = runner.invoke(cli, ["report", "-o", str(out), "--db", sqlite_url])
    assert written.exit_code == 0 and "Plotly" in out.read_text()


def test_cli_bad_grain_is_a_clear_error(cli: typer.Typer, sqlite_url: str) -> None:
    result = CliRunner().invoke(cli, ["kpis", "--grain", "hour", "--db", sqlite_url])
    assert result.exit_code != 0
    assert "grain" in str(result.exception)


def test_refresh_sees_new_events_between_requests(
    wheel: dfw.Flywheel, client_for: Client, store_url: str
) -> None:
    client = client_for(store_url)
    assert client.get("/v1/kpis").json()["rows"] == []
    fill(wheel.store)
    assert len(client.get("/v1/kpis").json()["rows"]) == 4
