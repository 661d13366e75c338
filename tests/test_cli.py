"""The flywheel command: documented commands, --json output, file imports, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflywheel.cli import app

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def run(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [FLYWHEEL, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def _commands() -> list[list[str]]:
    """Every leaf command, as argument lists (groups expanded)."""
    import typer.main

    group = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, [*path, name])
        else:
            found.append(path)

    walk(group, [])
    return found


def test_every_command_has_help_and_db() -> None:
    commands = _commands()
    assert (
        ["serve"] in commands
        and ["import", "events"] in commands
        and ["keys", "create"] in commands
    )
    for command in commands:
        text = run(*command, "--help").stdout
        assert "--db" in text, command
        assert len(text.strip().splitlines()) > 3, command


def test_import_csv_is_resumable_and_reports_bad_rows(tmp_path: Path) -> None:
    csv = tmp_path / "ratings.csv"
    lines = ["userId,movieId,rating,timestamp"]
    lines += [
        f"{u},{m},{(u + m) % 5 + 1},{1_600_000_000 + u * 100 + m}"
        for u in range(20)
        for m in range(10)
    ]
    lines += ["21,5,abc,1600000000", "22,5,3,not-a-time"]
    csv.write_text("\n".join(lines) + "\n")
    db = f"sqlite:///{tmp_path / 'f.db'}"
    args = [
        "import",
        "events",
        str(csv),
        "--map",
        "user_id=userId,item_id=movieId,value=rating",
        "--type",
        "rating",
        "--db",
        db,
        "--json",
    ]
    first = json.loads(run(*args).stdout)
    assert (first["accepted"], first["rejected"]) == (200, 2)
    assert {e["field"] for e in first["errors"]} == {"value", "timestamp"}
    again = json.loads(run(*args).stdout)
    assert (again["accepted"], again["duplicates"]) == (0, 200)
    stats = json.loads(run("stats", "--db", db, "--json").stdout)
    assert stats["events"] == 200 and stats["users"] == 20 and stats["items"] == 10
    assert stats["events_by_type"] == {"rating": 200}


def test_import_jsonl_and_parquet(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {
                    "user_id": f"u{i}",
                    "item_id": "a",
                    "type": "click",
                    "timestamp": "2024-01-02T03:04:05Z",
                }
            )
            for i in range(5)
        )
        + "\n"
    )
    assert (
        json.loads(run("import", "events", str(jsonl), "--db", db, "--json").stdout)["accepted"]
        == 5
    )
    parquet = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "user": ["x", "y"],
                "item_id": ["a", "b"],
                "type": ["like", "skip"],
                "event_id": ["p1", "p2"],
            }
        ),
        parquet,
    )
    result = json.loads(
        run("import", "events", str(parquet), "--map", "user_id=user", "--db", db, "--json").stdout
    )
    assert result["accepted"] == 2
    items = tmp_path / "items.csv"
    items.write_text("id,categories,year\na,drama|comedy,1999\nb,horror,2001\n")
    assert json.loads(run("import", "items", str(items), "--db", db, "--json").stdout) == {
        "upserted": 2
    }
    stats = json.loads(run("stats", "--db", db, "--json").stdout)
    assert stats["events"] == 7 and stats["items"] == 2


def test_errors_are_one_line_not_tracebacks(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    missing = run("import", "events", str(tmp_path / "nope.csv"), "--db", db, check=False)
    assert (
        missing.returncode == 2
        and "no such file" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    no_user = run("import", "events", str(bad), "--db", db, check=False)
    assert no_user.returncode == 2 and "user_id" in no_user.stderr
    bad_map = run("import", "events", str(bad), "--map", "user_id", "--db", db, check=False)
    assert bad_map.returncode == 2 and "map" in bad_map.stderr
    bad_url = run("stats", "--db", "mysql://nowhere/x", check=False)
    assert bad_url.returncode == 2 and "unsupported store URL" in bad_url.stderr


def test_keys_create_json_and_bind_refusal(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    refused = run("serve", "--host", "0.0.0.0", "--db", db, check=False)
    assert refused.returncode == 2 and "without API keys" in refused.stderr
    created = json.loads(run("keys", "create", "--scope", "admin", "--db", db, "--json").stdout)
    assert created["scope"] == "admin" and created["key"].startswith("fw_")
    bad_scope = run("keys", "create", "--scope", "root", "--db", db, check=False)
    assert bad_scope.returncode == 2 and "scope" in bad_scope.stderr


@pytest.mark.postgres
def test_import_into_postgres(tmp_path: Path, postgres_url: str) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text("user_id,item_id,type\n" + "".join(f"u{i},i{i % 7},click\n" for i in range(300)))
    args = ["import", "events", str(csv), "--db", postgres_url, "--json"]
    assert json.loads(run(*args).stdout)["accepted"] == 300
    assert json.loads(run(*args).stdout)["duplicates"] == 300
    assert json.loads(run("stats", "--db", postgres_url, "--json").stdout)["items"] == 7


def test_every_command_is_in_the_cli_docs() -> None:
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    for command in _commands():
        assert f"flywheel {' '.join(command)}" in text, command


def test_import_loads_only_the_store_and_the_importer(tmp_path: Path) -> None:
    """`flywheel import` starts fast: no web server, models, simulator or Alembic."""
    csv = tmp_path / "e.csv"
    csv.write_text("user_id,item_id,type\nu1,i1,click\nu2,i1,like\n")
    db = f"sqlite:///{tmp_path / 'f.db'}"
    run("stats", "--db", db)  # creates the store: the import then finds it current
    code = (
        "import json, sys\n"
        "from dataflywheel.cli import main\n"
        f"sys.argv = ['flywheel', 'import', 'events', {str(csv)!r}, '--db', {db!r}, '--json']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    roots = {name.split('.')[0] for name in sys.modules}\n"
        "    ours = {name for name in sys.modules if name.startswith('dataflywheel.')}\n"
        "    print(json.dumps(sorted(roots | ours)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 2
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "dataflywheel.ingest.importer" in loaded
    heavy = {"alembic", "fastapi", "scipy", "sklearn", "optuna", "plotly", "uvicorn", "implicit"}
    heavy |= {"dataflywheel.wheel", "dataflywheel.learn", "dataflywheel.simulate"}
    assert not heavy & loaded, heavy & loaded


def test_the_package_loads_the_engine_on_first_use() -> None:
    code = (
        "import sys, dataflywheel as dfw\n"
        "before = 'dataflywheel.wheel' in sys.modules\n"
        "from dataflywheel import Flywheel, open\n"
        "print(before, Flywheel.__module__, open is dfw.open, 'Flywheel' in dfw.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "dataflywheel.wheel", "True", "True"], done.stderr


def test_the_help_lists_the_real_scenarios() -> None:
    from dataflywheel.cli.simulate import SCENARIO_NAMES
    from dataflywheel.simulate.scenarios import SCENARIOS

    assert tuple(SCENARIOS) == SCENARIO_NAMES
