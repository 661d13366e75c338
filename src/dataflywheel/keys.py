"""API keys: created once, shown once, stored only as a SHA-256 hash (keys are 256-bit random)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Literal

from sqlalchemy import insert, select

from dataflywheel.errors import AuthError, ForbiddenError, ValidationError
from dataflywheel.store import schema
from dataflywheel.store.store import Store

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")
# Keys created from the CLI while a server runs are seen within this many seconds.
_REFRESH_SECONDS = 2.0


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, scope: str) -> str:
    """A new key with ``scope``; the plain key is returned once and never stored."""
    if scope not in SCOPES:
        raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    key = "fw_" + secrets.token_urlsafe(32)
    with store.write() as conn:
        conn.execute(
            insert(schema.api_keys).values(
                key_hash=_hash(key), prefix=key[:8], scope=scope, created_at=time.time()
            )
        )
    return key


class KeyRing:
    """The server's view of the keys, refreshed every few seconds from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._scopes: dict[str, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _current(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._loaded_at > _REFRESH_SECONDS:
            with self._lock, self.store.read() as conn:
                rows = conn.execute(select(schema.api_keys.c.key_hash, schema.api_keys.c.scope))
                self._scopes = {h: s for h, s in rows}
                self._loaded_at = now
        return self._scopes

    def any_keys(self) -> bool:
        return bool(self._current())

    def check(self, key: str | None, needed: Scope) -> None:
        """Raise unless ``key`` grants ``needed`` (admin grants everything); open when no keys."""
        scopes = self._current()
        if not scopes:
            return
        if not key:
            raise AuthError("an API key is required: Authorization: Bearer KEY")
        scope = scopes.get(_hash(key))
        if scope is None:
            raise AuthError("unknown API key")
        if needed == "admin" and scope != "admin":
            raise ForbiddenError("this key has scope 'ingest'; this call needs 'admin'")
