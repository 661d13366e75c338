"""`flywheel simulate` and `flywheel demo` from the shell: JSON output and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dataflywheel.cli.simulate import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_simulate_json(app: typer.Typer) -> None:
    result = CliRunner().invoke(
        app, ["simulate", "--days", "3", "--users", "30", "--seed", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["scenario"] == "flywheel"
    assert len(document["days"]) == 3
    assert document["summary"]["days"] == 3


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--scenario", "nope"], "scenario"),
        (["--users", "0"], "users"),
        (["--days", "0"], "days"),
    ],
)
def test_invalid_arguments_are_clear_errors(app: typer.Typer, args: list[str], field: str) -> None:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code != 0
    assert getattr(result.exception, "field", None) == field


def test_simulate_refuses_a_store_with_events(app: typer.Typer, tmp_path: Path) -> None:
    import dataflywheel as dfw

    url = f"sqlite:///{tmp_path / 'real.db'}"
    with dfw.open(url) as wheel:
        wheel.track(user_id="u", item_id="i", type="click")
    result = CliRunner().invoke(app, ["simulate", "--days", "1", "--users", "5", "--db", url])
    assert result.exit_code != 0
    assert "already holds" in str(result.exception)


def test_demo_no_browser(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["demo", "--days", "3", "--users", "40", "--no-browser", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"flywheel", "static", "comparison"}
    assert (tmp_path / "demo.db").exists()
