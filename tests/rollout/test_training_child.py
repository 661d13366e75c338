"""The isolated training child gets the store URL through its environment: a password in it
never appears on the child's command line (readable by every local user through ps)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

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
