"""Change notifications on PostgreSQL: a key change reaches another process's key ring at once,
and between changes the ring asks the store nothing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from dataflywheel.config import load_settings
from dataflywheel.errors import AuthError
from dataflywheel.keys import PREFIX_LENGTH, KeyRing, create_key, revoke_key
from dataflywheel.store.store import Store


@pytest.mark.postgres
def test_a_revocation_elsewhere_reaches_a_listening_ring_at_once(postgres_url: str) -> None:
    # Different URLs of one database: the revoking store is, for the ring, another process.
    serving = Store(load_settings(db=f"{postgres_url}?application_name=serving"))
    cli = Store(load_settings(db=f"{postgres_url}?application_name=cli"))
    try:
        key = create_key(cli, "admin")
        ring = KeyRing(serving, refresh_seconds=0.5)
        assert ring._hub is not None and ring._hub.listening.wait(10)
        ring.check(key, "admin")
        # The key's first use is recorded by a thread of its own; it must be done before the
        # count starts.
        used_by = time.monotonic() + 10
        while ring._writer is not None:
            assert time.monotonic() < used_by, "the key's use was never recorded"
            time.sleep(0.01)
        ring.check(key, "admin")
        checkouts: list[int] = []
        event.listen(serving.engine, "checkout", lambda *_: checkouts.append(1))
        deadline = time.monotonic() + 1.0  # twice the polling period without notifications
        while time.monotonic() < deadline:
            ring.check(key, "admin")
            time.sleep(0.001)
        assert checkouts == []
        revoked_at = time.monotonic()
        revoke_key(cli, key[:PREFIX_LENGTH])
        while True:
            try:
                ring.check(key, "admin")
            except AuthError as exc:
                assert exc.details["reason"] == "revoked"
                break
            # Listening, the ring polls only every LISTENING_REFRESH_SECONDS (10 s).
            assert time.monotonic() - revoked_at < 3.0, "the revocation was not announced"
            time.sleep(0.005)
    finally:
        serving.close()
        cli.close()
