"""The isolated training child gets the store URL through its environment: a password in it
never appears on the child's command line (readable by every local user through ps)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

import dataflywheel as dfw
from dataflywheel.config import Settings
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.trainer import Trainer
from dataflywheel.loop.scheduler import Loop
from dataflywheel.store.store import Store

PASSWORD = "s3cret-pw"


def _with_password(url: str) -> str:
    """``postgresql://postgres@host/db`` with a password (trust auth ignores it)."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def test_the_child_command_holds_no_secret() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/db"
    artifacts = f"s3://key:{PASSWORD}@bucket/models"
    settings = Settings(db=url, artifacts=artifacts)
    loop = Loop.__new__(Loop)  # only the command is wanted here: no store to open
    loop.settings = settings
    command, env = loop.child_command(5.0)
    assert not [arg for arg in command if PASSWORD in arg]
    assert env["FLYWHEEL_DB"] == url and env["FLYWHEEL_ARTIFACTS"] == artifacts


def test_training_child_on_postgresql_keeps_the_password_off_argv(
    postgres_url: str, tmp_path: Path
) -> None:
    url = _with_password(postgres_url)
    with dfw.open(url) as wheel:
        wheel.track_many(
            [
                {
                    "user_id": f"u{u}",
                    "item_id": f"i{(u + n) % 15}",
                    "type": "click",
                    "timestamp": 1.7e9 + 100 * u + n,
                }
                for u in range(20)
                for n in range(8)
            ]
        )
    settings = Settings(
        db=url,
        artifacts=str(tmp_path / "artifacts"),
        train_model="popularity",
        train_budget_seconds=3,
    )
    store = Store(settings)
    registry = Registry(store)
    loop = Loop(store, registry, Trainer(store, registry, tmp_path), settings, isolated=True)
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(loop.train(time.time())))
    runner.start()
    argv = b""
    while runner.is_alive() and not argv:
        child = loop.child
        if child is not None:
            try:
                argv = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                break
        time.sleep(0.01)
    runner.join(120)
    try:
        assert argv, "the child was seen running"
        assert b"train" in argv and PASSWORD.encode() not in argv, argv
        assert result["status"] == "champion" and result["name"] == "popularity", result
        assert registry.champion()["version"] == result["version"]  # type: ignore[index]
    finally:
        store.close()


def test_the_child_runs_learns_training_job_not_the_cli(sqlite_url: str, tmp_path: Path) -> None:
    """The loop depends on learn's entry point, not on the command line; that entry point trains
    from the environment's store URL and prints the registered version as JSON."""
    settings = Settings(db=sqlite_url, artifacts=str(tmp_path / "artifacts"))
    loop = Loop.__new__(Loop)
    loop.settings = settings
    command, env = loop.child_command(3.0)
    assert command[:3] == [sys.executable, "-m", "dataflywheel.learn.train_job"], command
    with dfw.open(sqlite_url) as wheel:
        wheel.track_many(
            [
                {"user_id": f"u{u}", "item_id": f"i{(u + n) % 9}", "type": "click"}
                for u in range(12)
                for n in range(5)
            ]
        )
    done = subprocess.run(
        [*command[:3], "--model", "popularity", "--budget", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    version = orjson.loads(done.stdout)
    assert (version["name"], version["status"]) == ("popularity", "champion"), version
    with dfw.open(sqlite_url) as wheel:
        assert wheel.registry.champion()["version"] == version["version"]  # type: ignore[index]
    bad = subprocess.run(
        [*command[:3], "--model", "no-such-model", "--budget", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1 and bad.stdout == "", bad
    assert "no-such-model" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
