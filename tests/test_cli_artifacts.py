"""``--artifacts DIR``: training writes the model there, ``models`` and ``serve`` find it, from
any working directory."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import free_port

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    return {**env, "NO_COLOR": "1", "FLYWHEEL_LOOP_ENABLED": "false"}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [FLYWHEEL, *args], capture_output=True, text=True, cwd=cwd, env=_env(), timeout=300
    )
    assert result.returncode == 0, (args, result.stderr)
    return result


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, payload, {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_train_models_and_serve_use_the_artifacts_directory(tmp_path: Path) -> None:
    trainer_cwd, server_cwd = tmp_path / "trainer", tmp_path / "server"
    trainer_cwd.mkdir()
    server_cwd.mkdir()
    store = tmp_path / "store" / "flywheel.db"
    db = f"sqlite:///{store}"
    csv = trainer_cwd / "ratings.csv"
    rows = [
        f"u{u},i{(u * 7 + m) % 30},{1_600_000_000 + u * 100 + m}"
        for u in range(40)
        for m in range(12)
    ]
    csv.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    run("import", "events", str(csv), "--type", "click", "--db", db, cwd=trainer_cwd)

    # A relative directory, resolved where the command runs.
    trained = json.loads(
        run(
            "train",
            "--model",
            "popularity",
            "--budget",
            "5",
            "--json",
            "--db",
            db,
            "--artifacts",
            "models",
            cwd=trainer_cwd,
        ).stdout
    )
    artifacts = trainer_cwd / "models"
    assert trained["version"] == "v1"
    assert Path(trained["artifact"]).parent == artifacts
    assert Path(trained["artifact"]).is_dir() and any(Path(trained["artifact"]).iterdir())
    assert not store.with_name("flywheel.artifacts").exists()  # not the default location

    listed = json.loads(
        run("models", "--json", "--db", db, "--artifacts", str(artifacts), cwd=server_cwd).stdout
    )
    assert [Path(m["artifact"]).parent for m in listed["models"]] == [artifacts]

    port = free_port()
    process = subprocess.Popen(
        [FLYWHEEL, "serve", "--db", db, "--port", str(port), "--artifacts", str(artifacts)],
        cwd=server_cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            assert process.poll() is None and time.time() < deadline, "server did not start"
            try:
                if _request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        status, recs = _request(port, "GET", "/v1/recommendations?user_id=u1&k=3")
        assert status == 200 and recs["model_version"] == "v1" and len(recs["items"]) == 3
        status, second = _request(
            port, "POST", "/v1/models/train", {"model": "popularity", "budget": 5}
        )
        assert status == 200, second
        assert second["version"] == "v2"
        assert len([p for p in artifacts.iterdir() if p.is_dir()]) == 2  # written there too
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_artifacts_must_be_a_local_directory(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    result = subprocess.run(
        [FLYWHEEL, "models", "--db", db, "--artifacts", "s3://bucket/models"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 2 and "--artifacts" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
