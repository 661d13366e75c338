"""API key lifecycle on a real store: expiry, revocation, rotation, prefixes, last use, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from dataflywheel.cli import app
from dataflywheel.config import load_settings
from dataflywheel.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from dataflywheel.keys import (
    KEY_LENGTH,
    PREFIX_LENGTH,
    KeyRing,
    _hash,
    create_key,
    issue_key,
    list_keys,
    parse_reference,
    revoke_key,
    rotate_key,
)
from dataflywheel.store import schema
from dataflywheel.store.store import Store

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    handle = Store(load_settings(db=store_url))
    try:
        yield handle
    finally:
        handle.close()


def _legacy_key(store: Store, key: str, scope: str = "ingest") -> None:
    """A row as keys were stored before expiry and revocation: an 8-character prefix."""
    with store.write() as conn:
        conn.execute(
            insert(schema.api_keys).values(
                key_hash=_hash(key), prefix=key[:8], scope=scope, created_at=time.time()
            )
        )


def _fake_key(head: str) -> str:
    return (head + "x" * KEY_LENGTH)[:KEY_LENGTH]


# --- references ------------------------------------------------------------------------------


@given(st.text(alphabet=URLSAFE, min_size=43, max_size=43), st.integers(8, KEY_LENGTH - 1))
def test_references_parse_keys_and_their_prefixes(tail: str, cut: int) -> None:
    key = "fw_" + tail
    assert parse_reference(key).whole
    assert parse_reference(f"  {key[:cut]} ") == parse_reference(key[:cut])
    assert not parse_reference(key[:cut]).whole


@given(st.text(max_size=60))
def test_any_text_is_a_reference_or_a_validation_error_naming_the_field(text: str) -> None:
    try:
        reference = parse_reference(text, field="prefix")
    except ValidationError as exc:
        assert exc.field == "prefix" and exc.message
    else:
        assert reference.text.startswith("fw_") and 8 <= len(reference.text) <= KEY_LENGTH


def test_short_or_foreign_references_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 8"):
        parse_reference("fw_abc")
    with pytest.raises(ValidationError, match="key prefix"):
        parse_reference("sk-abcdefgh")
    with pytest.raises(ValidationError, match="longer than a key"):
        parse_reference("fw_" + "a" * KEY_LENGTH)


# --- the key ring ----------------------------------------------------------------------------


def test_expired_keys_are_refused_saying_so(store: Store) -> None:
    ring = KeyRing(store)
    short = create_key(store, "ingest", expires_days=1)
    ring.check(short, "ingest")
    with store.write() as conn:
        conn.execute(update(schema.api_keys).values(expires_at=time.time() - 1))
    ring.invalidate()
    with pytest.raises(AuthError, match="expired at") as caught:
        ring.check(short, "ingest")
    assert caught.value.details["reason"] == "expired"


def test_expiry_counts_between_refreshes(store: Store) -> None:
    ring = KeyRing(store, refresh_seconds=3600)
    key = create_key(store, "admin", expires_days=4 / 86_400)  # 4 s: time for a slow first check
    ring.check(key, "admin")
    time.sleep(4.1)
    with pytest.raises(AuthError, match="expired"):
        ring.check(key, "admin")


def test_a_revocation_elsewhere_is_seen_within_the_refresh(store: Store) -> None:
    ring = KeyRing(store, refresh_seconds=0.2)
    key = create_key(store, "admin")
    other = create_key(store, "ingest")
    ring.check(key, "admin")
    revoke_key(store, key[:PREFIX_LENGTH])  # as by another process: this ring is not told
    time.sleep(0.25)
    with pytest.raises(AuthError, match="revoked") as caught:
        ring.check(key, "admin")
    assert caught.value.details["reason"] == "revoked"
    ring.check(other, "ingest")
    with pytest.raises(ForbiddenError):
        ring.check(other, "admin")


def test_revoking_every_key_keeps_the_server_closed(store: Store) -> None:
    key = create_key(store, "admin")
    revoke_key(store, key)
    ring = KeyRing(store)
    assert ring.any_keys()
    with pytest.raises(AuthError, match="required"):
        ring.check(None, "ingest")


def _last_used(store: Store) -> dict[str, float | None]:
    with store.read() as conn:
        rows = conn.execute(select(schema.api_keys.c.prefix, schema.api_keys.c.last_used_at))
        return {prefix: used for prefix, used in rows}


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_last_use_is_written_once_per_interval_off_the_request_path(store: Store) -> None:
    ring = KeyRing(store)
    key = create_key(store, "ingest")
    prefix = key[:PREFIX_LENGTH]
    before = time.time()
    ring.check(key, "ingest")
    _wait_for(lambda: _last_used(store)[prefix] is not None)
    first = _last_used(store)[prefix]
    assert first is not None and first >= before
    for _ in range(2000):
        ring.check(key, "ingest")
    time.sleep(0.3)
    assert _last_used(store)[prefix] == first  # no write per request

    eager = KeyRing(store, touch_seconds=0.0)
    time.sleep(0.01)
    eager.check(key, "ingest")
    _wait_for(lambda: (_last_used(store)[prefix] or 0) > first)


# --- revoke and rotate -----------------------------------------------------------------------


def test_revoke_by_prefix_or_key_and_unknown_ones(store: Store) -> None:
    a, b = create_key(store, "ingest"), create_key(store, "admin")
    assert revoke_key(store, a[:PREFIX_LENGTH]).revoked_at is not None
    assert revoke_key(store, b).scope == "admin"
    with pytest.raises(NotFoundError, match="already revoked"):
        revoke_key(store, a[:PREFIX_LENGTH])
    with pytest.raises(NotFoundError, match="no key"):
        revoke_key(store, "fw_zzzzzzzzz")
    statuses = {info.prefix: info.status(time.time()) for info in list_keys(store)}
    assert statuses == {a[:PREFIX_LENGTH]: "revoked", b[:PREFIX_LENGTH]: "revoked"}
    with store.read() as conn:
        audit = conn.execute(select(schema.audit_log.c.action, schema.audit_log.c.subject)).all()
    assert ("key_revoke", a[:PREFIX_LENGTH]) in audit and ("key_create", b[:PREFIX_LENGTH]) in audit


def test_an_ambiguous_prefix_is_an_error_naming_the_count(store: Store) -> None:
    first, second = _fake_key("fw_Same1AAA"), _fake_key("fw_Same1BBB")
    _legacy_key(store, first)
    _legacy_key(store, second)
    with pytest.raises(ValidationError, match="matches 2 keys") as caught:
        revoke_key(store, "fw_Same1")
    assert caught.value.details["matches"] == 2
    # Longer than the stored prefix: still both (the stored 8 characters are all that is known).
    with pytest.raises(ValidationError, match="matches 2 keys"):
        revoke_key(store, "fw_Same1AAA")
    revoke_key(store, first)  # the whole key is never ambiguous
    assert revoke_key(store, "fw_Same1").revoked_at is not None  # one active key left


def test_legacy_rows_keep_working(store: Store) -> None:
    old = _fake_key("fw_Old12")
    _legacy_key(store, old, "admin")
    ring = KeyRing(store)
    ring.check(old, "admin")
    assert [info.prefix for info in list_keys(store)] == ["fw_Old12"]
    new, previous = rotate_key(store, "fw_Old12")
    assert len(new.info.prefix) == PREFIX_LENGTH and new.info.scope == "admin"
    assert previous.prefix == "fw_Old12"
    ring.invalidate()
    with pytest.raises(AuthError, match="revoked"):
        ring.check(old, "admin")
    ring.check(new.key, "admin")


def test_rotate_keeps_scope_and_expiry_and_honours_a_grace_period(store: Store) -> None:
    issued = issue_key(store, "admin", expires_days=10)
    ring = KeyRing(store, refresh_seconds=0.0)
    new, old = rotate_key(store, issued.key, grace_seconds=3.0)
    assert new.key != issued.key and new.key.startswith("fw_") and len(new.key) == KEY_LENGTH
    assert (new.info.scope, new.info.expires_at) == ("admin", issued.info.expires_at)
    ring.check(issued.key, "admin")  # still inside the grace period
    ring.check(new.key, "admin")
    time.sleep(3.1)
    with pytest.raises(AuthError, match="revoked"):
        ring.check(issued.key, "admin")
    ring.check(new.key, "admin")
    assert old.revoked_at is not None and old.revoked_at > old.created_at
    with pytest.raises(ValidationError) as caught:
        rotate_key(store, new.key, grace_seconds=-1)
    assert caught.value.field == "grace"


def test_a_grace_period_is_never_extended_and_expired_keys_are_not_rotated(store: Store) -> None:
    key = create_key(store, "ingest")
    _, first = rotate_key(store, key, grace_seconds=60)
    _, second = rotate_key(store, key, grace_seconds=3600)
    assert second.revoked_at == first.revoked_at
    stale = create_key(store, "ingest", expires_days=1)
    with store.write() as conn:
        conn.execute(
            update(schema.api_keys)
            .where(schema.api_keys.c.key_hash == _hash(stale))
            .values(expires_at=time.time() - 1)
        )
    with pytest.raises(ConflictError, match="expired"):
        rotate_key(store, stale)


def test_bad_expiry_names_the_field(store: Store) -> None:
    for days in (0.0, -1.0, float("nan"), 1e9):
        with pytest.raises(ValidationError) as caught:
            create_key(store, "ingest", expires_days=days)
        assert caught.value.field == "expires"


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_create_list_rotate_revoke(store_url: str) -> None:
    code, stdout, _ = _cli(
        "keys", "create", "--scope", "admin", "--expires", "30", "--db", store_url, "--json"
    )
    assert code == 0
    created = json.loads(stdout)
    key = created["key"]
    assert created["scope"] == "admin" and created["prefix"] == key[:12]
    assert created["expires_at"] == pytest.approx(time.time() + 30 * 86_400, abs=60)

    code, stdout, _ = _cli("keys", "rotate", key[:PREFIX_LENGTH], "--db", store_url, "--json")
    assert code == 0
    rotated = json.loads(stdout)
    assert rotated["replaced"] == key[:PREFIX_LENGTH]
    assert rotated["expires_at"] == created["expires_at"]

    code, stdout, _ = _cli("keys", "list", "--db", store_url, "--json")
    assert code == 0
    listed = json.loads(stdout)["keys"]
    assert [k["status"] for k in listed] == ["revoked", "active"]
    assert set(listed[0]) == {
        "prefix",
        "scope",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    }
    for secret in (key, rotated["key"], _hash(key), _hash(rotated["key"])):
        assert secret not in stdout
        assert secret[: PREFIX_LENGTH + 1] not in stdout  # nothing beyond the display prefix

    code, stdout, _ = _cli("keys", "revoke", rotated["key"], "--db", store_url)
    assert code == 0 and "revoked" in stdout
    code, stdout, _ = _cli("keys", "list", "--db", store_url)
    assert code == 0 and rotated["prefix"] in stdout and rotated["key"] not in stdout


def test_cli_errors_are_one_line_with_exit_2(store_url: str) -> None:
    cases = [
        (["keys", "revoke", "fw_nothere1"], "no key fw_nothere1"),
        (["keys", "revoke", "abc"], "(key)"),
        (["keys", "create", "--expires", "0"], "(expires)"),
        (["keys", "rotate", "fw_nothere1", "--grace", "-5"], "(grace)"),
    ]
    for args, expected in cases:
        done = subprocess.run(
            [FLYWHEEL, *args, "--db", store_url],
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
