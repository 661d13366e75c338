"""Online backup and restore of a store with its model artifacts.

A backup is a directory: ``manifest.json``, the store (``flywheel.db``, a plain SQLite file, or
``store.dump``, pg_dump's custom format) and ``artifacts/``, a copy of the artifacts directory.
It is written under a temporary name and renamed at the end, so a directory called PATH is
always a complete backup. The store is copied first and the artifacts second: a model version is
registered only after its artifact is saved, so every version the copied store names has its
artifact in the copy.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path, PurePath
from typing import Any

import orjson
from sqlalchemy import URL, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dataflywheel.config import Settings
from dataflywheel.errors import ConfigError, ConflictError, ValidationError
from dataflywheel.store import schema
from dataflywheel.store.engine import create_store_engine, normalize_url

MANIFEST = "manifest.json"
FORMAT = 1
ARTIFACTS = "artifacts"
STORE_FILES = {"sqlite": "flywheel.db", "postgresql": "store.dump"}
# Tables whose rows make a store "not empty" for restore's overwrite check.
_CONTENT_TABLES = (schema.events, schema.users, schema.items, schema.impressions, schema.models)


def _url(settings: Settings) -> URL:
    try:
        return make_url(normalize_url(settings.db))
    except ArgumentError as exc:
        raise ConfigError(f"invalid store URL {settings.db!r}: {exc}", field="db") from exc


def _dialect(url: URL) -> str:
    name = url.get_backend_name()
    if name not in STORE_FILES:
        raise ConfigError(f"cannot back up a {name} store", field="db")
    return name


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ConfigError("an in-memory SQLite store has nothing to back up", field="db")
    return Path(url.database)


def _public_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore (no driver suffix) and an environment holding the
    password, so it does not show in the process list."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ConfigError(
            f"{name} is not on PATH: backing up and restoring a PostgreSQL store needs the "
            "PostgreSQL client tools (e.g. apt-get install postgresql-client), of the server's "
            "major version or newer",
            field="db",
        )
    return path


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise ConfigError(f"{Path(command[0]).name} failed: {reason}", field="db")


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


# Backup ------------------------------------------------------------------------------------------


def backup(settings: Settings, path: Path) -> dict[str, Any]:
    """Copy the store named by ``settings`` and its artifacts into the new directory ``path``,
    while the store stays in use; returns what was written."""
    started = time.perf_counter()
    url = _url(settings)
    dialect = _dialect(url)
    if path.exists() and not _is_empty_dir(path):
        raise ConflictError(f"{path} already exists; back up into a new directory", field="path")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        store_file = staging / STORE_FILES[dialect]
        integrity = None
        if dialect == "sqlite":
            integrity = _backup_sqlite(_sqlite_path(url), store_file)
        else:
            command, env = _libpq(url)
            _run([_tool("pg_dump"), "--format=custom", f"--file={store_file}", command], env)
        artifacts = settings.artifacts_dir()
        if artifacts.is_dir():
            shutil.copytree(artifacts, staging / ARTIFACTS)
        else:
            (staging / ARTIFACTS).mkdir()
        manifest = {
            "format": FORMAT,
            "dialect": dialect,
            "store": store_file.name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": _public_url(url),
            "artifacts_dir": str(artifacts),
            "artifacts_dir_resolved": str(artifacts.resolve()),
            "integrity_check": integrity,
        }
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        if path.exists():
            path.rmdir()
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [f for f in path.rglob("*") if f.is_file()]
    return {
        "path": str(path),
        "dialect": dialect,
        "store": str(path / STORE_FILES[dialect]),
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "integrity_check": integrity,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _backup_sqlite(source_path: Path, target: Path) -> str:
    """SQLite's backup API in one step: one read transaction, so a consistent snapshot while
    writers go on (WAL); stepping in pieces would restart whenever another connection writes."""
    if not source_path.is_file():
        raise ConfigError(f"no SQLite store at {source_path}", field="db")
    source = sqlite3.connect(source_path, timeout=60)
    copy = sqlite3.connect(target)
    with closing(source), closing(copy):
        source.backup(copy)
        # One self-contained file: no -wal/-shm beside it.
        copy.execute("PRAGMA journal_mode=DELETE")
        result = [row[0] for row in copy.execute("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        raise ConfigError(f"the backup copy fails integrity_check: {result[:3]}", field="db")
    return "ok"


# Restore -----------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the backup directory ``path``; a clear error if it is not one."""
    try:
        manifest: dict[str, Any] = orjson.loads((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise ValidationError(
            f"{path} is not a flywheel backup (no {MANIFEST})", field="path"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{path / MANIFEST} is not valid JSON: {exc}", field="path") from exc
    if manifest.get("format") != FORMAT or manifest.get("dialect") not in STORE_FILES:
        raise ValidationError(
            f"{path / MANIFEST} has an unknown format {manifest.get('format')!r} "
            f"or dialect {manifest.get('dialect')!r}",
            field="path",
        )
    return manifest


def store_contents(settings: Settings) -> dict[str, int]:
    """Row counts of the tables that hold data (absent tables count 0), without creating or
    migrating anything."""
    url = _url(settings)
    if _dialect(url) == "sqlite" and not _sqlite_path(url).exists():
        return {table.name: 0 for table in _CONTENT_TABLES}
    engine = create_store_engine(settings.db)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                if table.name in present
                else 0
                for table in _CONTENT_TABLES
            }
    finally:
        engine.dispose()


def restore(settings: Settings, path: Path, *, force: bool = False) -> dict[str, Any]:
    """Replace the store named by ``settings`` and its artifacts with the backup at ``path``.

    Refuses a store or artifacts directory that holds anything unless ``force``. Model versions
    are re-pointed at the restored artifacts, and the schema is migrated if the backup is older.
    """
    started = time.perf_counter()
    manifest = read_manifest(path)
    url = _url(settings)
    dialect = _dialect(url)
    if manifest["dialect"] != dialect:
        raise ValidationError(
            f"the backup holds a {manifest['dialect']} store; restore it into a "
            f"{manifest['dialect']} URL, not {_public_url(url)}",
            field="db",
        )
    artifacts = settings.artifacts_dir()
    if not force:
        held = {name: n for name, n in store_contents(settings).items() if n}
        if held:
            summary = ", ".join(f"{n:,} {name}" for name, n in held.items())
            raise ConflictError(
                f"store {_public_url(url)} is not empty ({summary}); pass --force to replace it",
                field="db",
            )
        if artifacts.exists() and not _is_empty_dir(artifacts):
            raise ConflictError(
                f"artifacts directory {artifacts} is not empty; pass --force to replace it",
                field="artifacts",
            )
    store_file = path / manifest["store"]
    if dialect == "sqlite":
        _restore_sqlite(store_file, _sqlite_path(url))
    else:
        command, env = _libpq(url)
        _run(
            [
                _tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                f"--dbname={command}",
                str(store_file),
            ],
            env,
        )
    _replace_dir(path / ARTIFACTS, artifacts)
    relinked = _relink_artifacts(settings, manifest, artifacts)
    return {
        "path": str(path),
        "dialect": dialect,
        "db": _public_url(url),
        "artifacts": str(artifacts),
        "models_relinked": relinked,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _restore_sqlite(backup_file: Path, target: Path) -> None:
    """Copy through SQLite's backup API into the target, which takes the target's locks (a
    process still holding the store waits or fails cleanly, never reads a torn file)."""
    if not backup_file.is_file():
        raise ValidationError(f"the backup has no store file {backup_file.name}", field="path")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    destination = sqlite3.connect(target, timeout=60)
    with closing(source), closing(destination):
        source.backup(destination)
        destination.execute("PRAGMA journal_mode=WAL")


def _replace_dir(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source``, swapped in by renames once the copy is complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.restore-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, fresh)
    else:
        fresh.mkdir()
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _relink_artifacts(settings: Settings, manifest: dict[str, Any], artifacts: Path) -> int:
    """Point each model version's artifact at its copy under ``artifacts`` (the backup
    recorded where the artifacts lived); returns how many paths changed."""
    from dataflywheel.store.store import Store

    bases = [PurePath(manifest["artifacts_dir"]), PurePath(manifest["artifacts_dir_resolved"])]
    store = Store(settings)  # migrates a backup taken by an older version
    changed = 0
    try:
        m = schema.models.c
        with store.write() as conn:
            for version, artifact in conn.execute(select(m.version, m.artifact)).all():
                for base in bases:
                    if PurePath(artifact).is_relative_to(base):
                        moved = str(artifacts / PurePath(artifact).relative_to(base))
                        if moved != artifact:
                            conn.execute(
                                update(schema.models)
                                .where(m.version == version)
                                .values(artifact=moved)
                            )
                            changed += 1
                        break
    finally:
        store.close()
    return changed
