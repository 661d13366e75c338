"""Backup and restore: an online copy taken while a writer inserts events opens and passes
SQLite's integrity check; the restored store serves the same lists from the same model; a store
that holds data is only replaced with --force; PostgreSQL goes through pg_dump/pg_restore."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import dataflywheel as dfw
from dataflywheel.config import load_settings
from dataflywheel.errors import ConfigError, ConflictError, ValidationError
from dataflywheel.store.backup import backup, restore
from helpers import IN_CI

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
USERS = [f"u{n}" for n in range(6)]


def _history() -> list[dict[str, Any]]:
    return [
        {
            "user_id": f"u{u}",
            "item_id": f"i{(u * 3 + j) % 12}",
            "type": "click" if j % 3 else "like",
            "timestamp": 1.7e9 + u * 3_600 + j,
        }
        for u in range(20)
        for j in range(6)
    ]


def _build(url: str) -> dict[str, Any]:
    """Events, an item-kNN champion, and the lists it serves (greedy: no exploration)."""
    with dfw.open(url, exploration={"name": "greedy"}) as wheel:
        wheel.track_many(_history())
        version = wheel.train("itemknn", budget=1)
        return {"version": version["version"], "lists": _lists(wheel)}


def _lists(wheel: dfw.Flywheel) -> dict[str, Any]:
    served = {}
    for user in USERS:
        answer = wheel.recommend(user, 5)
        served[user] = (
            answer["model_version"],
            [(entry["item_id"], entry["score"]) for entry in answer["items"]],
        )
    return served


def _served(url: str) -> dict[str, Any]:
    with dfw.open(url, exploration={"name": "greedy"}) as wheel:
        return _lists(wheel)


def test_online_sqlite_backup_restores_to_the_same_recommendations(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'live' / 'flywheel.db'}"
    built = _build(source)
    assert all(version == built["version"] for version, _ in built["lists"].values())
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        # Other users' clicks on known items: the lists compared below do not depend on them.
        with dfw.open(source) as wheel:
            n = 0
            while not stop.is_set():
                batch = [
                    {"user_id": f"w{n}", "item_id": f"i{k % 12}", "type": "click"}
                    for k in range(50)
                ]
                wheel.track_many(batch)
                n += 1
                written[0] += len(batch)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 500:
            threading.Event().wait(0.01)
        report = backup(load_settings(db=source), tmp_path / "backup")
        after = written[0]
        while written[0] < after + 200:  # the writer goes on after the copy as well
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert report["integrity_check"] == "ok"
    copy = sqlite3.connect(tmp_path / "backup" / "flywheel.db")
    assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    copied_events = copy.execute("SELECT count(*) FROM events").fetchone()[0]
    copy.close()
    # A snapshot taken mid-stream: some of the writer's events, not all of them.
    assert len(_history()) + 500 <= copied_events < len(_history()) + written[0]
    # The original machine is gone: the restored store must use its own copy of the artifacts.
    shutil.rmtree(tmp_path / "live")

    target = f"sqlite:///{tmp_path / 'elsewhere' / 'restored.db'}"
    result = restore(load_settings(db=target), tmp_path / "backup")
    assert result["models_relinked"] == 1
    assert (tmp_path / "elsewhere" / "restored.artifacts").is_dir()
    assert _served(target) == built["lists"]
    with dfw.open(target) as wheel:
        assert wheel.stats()["events"] == copied_events


def test_restore_replaces_a_store_with_data_only_when_forced(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    built = _build(source)
    backup(load_settings(db=source), tmp_path / "backup")
    target = f"sqlite:///{tmp_path / 'b.db'}"
    with dfw.open(target) as wheel:
        wheel.track(user_id="other", item_id="x", type="click")
    with pytest.raises(ConflictError, match=r"not empty .*1 events.*--force"):
        restore(load_settings(db=target), tmp_path / "backup")
    with dfw.open(target) as wheel:
        assert wheel.stats()["events"] == 1  # untouched
    restore(load_settings(db=target), tmp_path / "backup", force=True)
    assert _served(target) == built["lists"]
    with dfw.open(target) as wheel:
        assert wheel.store.lookup_ids("users", ["other"]) == {}


def test_restore_into_an_empty_store_needs_no_force(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    _build(source)
    backup(load_settings(db=source), tmp_path / "backup")
    target = f"sqlite:///{tmp_path / 'b.db'}"
    dfw.open(target).close()  # created and migrated, but holds nothing
    restore(load_settings(db=target), tmp_path / "backup")
    assert _served(target) == _served(source)


def test_backup_refuses_a_path_that_holds_files(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    dfw.open(source).close()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConflictError, match="already exists"):
        backup(load_settings(db=source), tmp_path / "taken")
    with pytest.raises(ConfigError, match="no SQLite store"):
        backup(load_settings(db=f"sqlite:///{tmp_path / 'missing.db'}"), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restore_checks_the_backup_and_the_dialect(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    dfw.open(source).close()
    with pytest.raises(ValidationError, match="not a flywheel backup"):
        restore(load_settings(db=source), tmp_path)
    backup(load_settings(db=source), tmp_path / "backup")
    with pytest.raises(ValidationError, match="holds a sqlite store") as caught:
        restore(load_settings(db="postgresql://nobody@127.0.0.1:1/none"), tmp_path / "backup")
    assert caught.value.field == "db"


def test_cli_backup_and_restore_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    db = f"sqlite:///{tmp_path / 'a.db'}"
    dfw.open(db).close()
    done = subprocess.run(
        [FLYWHEEL, "backup", str(tmp_path / "bk"), "--db", db, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert '"integrity_check": "ok"' in done.stdout
    done = subprocess.run(
        [FLYWHEEL, "restore", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'b.db'}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not a flywheel backup" in done.stderr


def test_postgres_backup_without_pg_dump_says_so(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dfw.open(postgres_url).close()
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without the PostgreSQL client tools
    with pytest.raises(ConfigError, match="pg_dump is not on PATH"):
        backup(load_settings(db=postgres_url), tmp_path / "backup")
    assert not (tmp_path / "backup").exists()


@pytest.fixture
def second_postgres_url(postgres_server: str) -> Iterator[str]:
    """Another fresh database, to restore into."""
    name = f"dfw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_server.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
def test_postgres_round_trip_through_pg_dump(
    tmp_path: Path, postgres_url: str, second_postgres_url: str
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        if IN_CI:
            pytest.fail("pg_dump and pg_restore are required in CI")
        pytest.skip("pg_dump/pg_restore not installed")
    artifacts = {"artifacts": str(tmp_path / "source-artifacts")}
    with dfw.open(postgres_url, exploration={"name": "greedy"}, **artifacts) as wheel:
        wheel.track_many(_history())
        wheel.train("itemknn", budget=1)
        expected = _lists(wheel)
    report = backup(load_settings(db=postgres_url, **artifacts), tmp_path / "backup")
    assert (tmp_path / "backup" / "store.dump").stat().st_size > 0 and report["files"] >= 3
    shutil.rmtree(tmp_path / "source-artifacts")

    target = {"db": second_postgres_url, "artifacts": str(tmp_path / "restored-artifacts")}
    restore(load_settings(**target), tmp_path / "backup")
    restored = {"exploration": {"name": "greedy"}, "artifacts": target["artifacts"]}
    with dfw.open(second_postgres_url, **restored) as wheel:
        assert _lists(wheel) == expected
        assert wheel.stats()["events"] == len(_history())
    with pytest.raises(ConflictError, match="not empty"):
        restore(load_settings(**target), tmp_path / "backup")
    restore(load_settings(**target), tmp_path / "backup", force=True)  # --clean, then again
    with dfw.open(second_postgres_url, **restored) as wheel:
        assert wheel.stats()["events"] == len(_history())
