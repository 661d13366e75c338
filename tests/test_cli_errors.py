"""Usage errors and store errors of the real ``flywheel`` process: one line on stderr, exit code
2, no traceback, and never a password from a store URL."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflywheel.store.urls import redact_url
from helpers import free_port

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
SECRET = "s3cret-Pa55"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    return subprocess.run(
        [FLYWHEEL, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "NO_COLOR": "1", "COLUMNS": "60"},
        timeout=120,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error"), lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--model"], "'--model' requires an argument"),
        (["train", "--no-such-option"], "No such option: --no-such-option"),
        (["serve", "--port", "x"], "'--port'"),
        (["promote"], "Missing argument 'version'"),
        (["import", "events"], "Missing argument 'file'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["stats", "--db"], "'--db' requires an argument"),
        (["models", "--json", "extra"], "unexpected extra argument"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    line = _one_line_error(run(*args, cwd=tmp_path))
    assert expected.lower() in line.lower()


def test_help_still_exits_0_and_a_bare_group_shows_help() -> None:
    shown = run("train", "--help")
    assert shown.returncode == 0 and "--model" in shown.stdout and shown.stderr == ""
    bare = run()
    assert bare.returncode == 2 and "serve" in bare.stdout and "Traceback" not in bare.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://user:{SECRET}@db.example/x",
        f"postgresql://user:{SECRET}@127.0.0.1:1/nothing",
        f"postgresql://user:{SECRET}@127.0.0.1:1/nothing?password={SECRET}",
        f"postgresql+nodriver://user:{SECRET}@host/db",
        f"not a url user:{SECRET}@",
    ],
)
def test_store_errors_never_print_the_password(url: str, tmp_path: Path) -> None:
    line = _one_line_error(run("stats", "--db", url, cwd=tmp_path))
    assert SECRET not in line
    assert "store" in line


@pytest.mark.postgres
def test_serve_start_up_output_masks_the_password(postgres_url: str, tmp_path: Path) -> None:
    # Trust authentication ignores the password, so the server starts with one in its URL.
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in url
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    with log.open("w") as sink:
        process = subprocess.Popen(
            [FLYWHEEL, "serve", "--db", url, "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env, "NO_COLOR": "1"},
            start_new_session=True,
        )
        try:
            deadline = time.time() + 60
            while True:
                assert process.poll() is None, log.read_text()
                assert time.time() < deadline, "server did not start"
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    conn.request("GET", "/v1/stats")
                    stats = conn.getresponse()
                    body = stats.read().decode()
                    if stats.status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            conn.request("GET", "/metrics")
            metrics = conn.getresponse().read().decode()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    output = log.read_text()
    assert "serving postgresql://postgres:***@" in output
    for text in (output, body, metrics):
        assert SECRET not in text


NO_SPACE = st.text(st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp")), min_size=1)


@given(
    user=st.text(st.characters(blacklist_characters=":/@?#", blacklist_categories=("Zs", "Cc"))),
    password=NO_SPACE,
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True),
    database=st.from_regex(r"[A-Za-z0-9_]{0,12}", fullmatch=True),
)
def test_redact_url_masks_any_password(user: str, password: str, host: str, database: str) -> None:
    url = f"postgresql://{user}:{password}@{host}/{database}"
    masked = f"postgresql://{user}:***@{host}/{database}"
    assert redact_url(url) == masked
    assert redact_url(f"cannot open store {url}: refused") == f"cannot open store {masked}: refused"


@given(st.text(alphabet=st.characters(blacklist_characters=":")))
def test_redact_url_leaves_text_without_urls_alone(text: str) -> None:
    assert redact_url(text) == text
