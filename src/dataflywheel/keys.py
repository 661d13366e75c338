"""API keys: created once, shown once, stored only as a SHA-256 hash (keys are 256-bit random).

A key is ``fw_`` and 43 URL-safe characters. Its first 12 characters (8 for keys created before
expiry and revocation existed) are stored as a display prefix: enough to name a key in
``flywheel keys list`` and ``revoke`` without ever storing or printing the key itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from dataflywheel.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from dataflywheel.store import audit, notify, schema
from dataflywheel.store.store import Store

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")
KEY_LENGTH = 46  # "fw_" + secrets.token_urlsafe(32)
PREFIX_LENGTH = 12  # "fw_" + 9 random characters (54 bits): no collisions in any real key set
_LEGACY_PREFIX_LENGTH = 8  # the shortest stored prefix, hence the shortest usable reference
_REFERENCE = re.compile(r"fw_[A-Za-z0-9_-]+")
MAX_EXPIRES_DAYS = 36_500.0
MAX_GRACE_SECONDS = 30 * 86_400.0
# Every server process sees a key created, revoked or rotated elsewhere (another replica, the
# CLI) at most this long after it is committed; the process that revokes sees it at once.
REFRESH_SECONDS = 0.5
# On PostgreSQL every key change is announced at commit (LISTEN/NOTIFY): while a process hears
# the announcements it re-reads the keys on one, within milliseconds, and otherwise probes only
# this often (for a writer that announces nothing, such as a hand-written UPDATE).
LISTENING_REFRESH_SECONDS = 10.0
# `last_used_at` is written at most once per key and interval, by a thread off the request path.
TOUCH_SECONDS = 60.0

_log = logging.getLogger(__name__)
_k = schema.api_keys.c


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def iso(ts: float | None) -> str | None:
    """An epoch time as an RFC 3339 UTC string (for messages and tables)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class KeyInfo:
    """What is known about a key, never the key itself."""

    id: int
    prefix: str
    scope: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    def status(self, now: float) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: float) -> dict[str, Any]:
        """The JSON shape of ``flywheel keys list --json`` and ``GET /v1/keys`` (epoch seconds)."""
        return {
            "prefix": self.prefix,
            "scope": self.scope,
            "status": self.status(now),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True)
class Issued:
    """A new key (shown once) and its stored description."""

    key: str
    info: KeyInfo


@dataclass(frozen=True)
class KeyReference:
    """A key named on the command line or in a URL: the whole key or a prefix of it."""

    text: str
    whole: bool


def parse_reference(text: str, field: str = "key") -> KeyReference:
    """Parse PREFIX_OR_KEY: ``fw_`` and at least 5 more URL-safe characters, at most a key."""
    text = text.strip()
    if not _REFERENCE.fullmatch(text):
        raise ValidationError(
            "expected a key or a key prefix such as fw_AbCd1234 (see `flywheel keys list`)",
            field=field,
        )
    if len(text) < _LEGACY_PREFIX_LENGTH:
        raise ValidationError(
            f"a key prefix needs at least {_LEGACY_PREFIX_LENGTH} characters, got {len(text)}",
            field=field,
        )
    if len(text) > KEY_LENGTH:
        raise ValidationError(f"longer than a key ({KEY_LENGTH} characters)", field=field)
    return KeyReference(text, whole=len(text) == KEY_LENGTH)


_COLUMNS = (
    _k.id,
    _k.prefix,
    _k.scope,
    _k.created_at,
    _k.expires_at,
    _k.last_used_at,
    _k.revoked_at,
)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(*row)


def _audit(conn: Connection, actor: str, action: str, info: KeyInfo, **detail: Any) -> None:
    """Record a key change, and announce it to every server at commit."""
    notify.notify(conn, "keys")
    audit.record(
        conn,
        actor=actor,
        action=action,
        subject=info.prefix,
        detail={"scope": info.scope, **detail},
    )


def _expiry(expires_days: float | None, now: float) -> float | None:
    if expires_days is None:
        return None
    if not (math.isfinite(expires_days) and 0 < expires_days <= MAX_EXPIRES_DAYS):
        raise ValidationError(
            f"must be a number of days above 0 and at most {MAX_EXPIRES_DAYS:g}, "
            f"got {expires_days:g}",
            field="expires",
        )
    return now + expires_days * 86_400.0


def _insert(
    conn: Connection, scope: str, expires_at: float | None, now: float, actor: str
) -> Issued:
    if scope not in SCOPES:
        raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    key = "fw_" + secrets.token_urlsafe(32)
    prefix = key[:PREFIX_LENGTH]
    key_id = conn.execute(
        insert(schema.api_keys)
        .values(
            key_hash=_hash(key), prefix=prefix, scope=scope, created_at=now, expires_at=expires_at
        )
        .returning(_k.id)
    ).scalar_one()
    info = KeyInfo(key_id, prefix, scope, now, expires_at, None, None)
    _audit(conn, actor, "key_create", info, expires_at=expires_at)
    return Issued(key, info)


def issue_key(
    store: Store, scope: str, *, expires_days: float | None = None, actor: str = "cli"
) -> Issued:
    """A new key with ``scope``, valid for ``expires_days`` (None: until revoked)."""
    now = time.time()
    expires_at = _expiry(expires_days, now)
    with store.write() as conn:
        return _insert(conn, scope, expires_at, now, actor)


def create_key(store: Store, scope: str, *, expires_days: float | None = None) -> str:
    """A new key with ``scope``; the plain key is returned once and never stored."""
    return issue_key(store, scope, expires_days=expires_days).key


def list_keys(store: Store) -> list[KeyInfo]:
    """Every key, oldest first (revoked and expired ones included)."""
    with store.read() as conn:
        rows = conn.execute(select(*_COLUMNS).order_by(_k.created_at, _k.id))
        return [_info(row) for row in rows]


def _resolve(conn: Connection, reference: KeyReference, field: str, now: float) -> KeyInfo:
    """The one key that is not yet revoked and that ``reference`` names.

    A prefix names the keys whose stored prefix agrees with it on their common length (so an
    8-character legacy prefix and a longer piece of that key both work); more than one
    such key is an error, not a guess.
    """
    if reference.whole:
        found = [
            _info(row)
            for row in conn.execute(select(*_COLUMNS).where(_k.key_hash == _hash(reference.text)))
        ]
    else:
        head = reference.text[:_LEGACY_PREFIX_LENGTH]
        rows = conn.execute(select(*_COLUMNS).where(_k.prefix.startswith(head, autoescape=True)))
        found = [
            info
            for info in map(_info, rows)
            if info.prefix.startswith(reference.text) or reference.text.startswith(info.prefix)
        ]
    live = [info for info in found if info.status(now) != "revoked"]
    if len(live) == 1:
        return live[0]
    shown = reference.text[:PREFIX_LENGTH]
    if len(live) > 1:
        raise ValidationError(
            f"{shown} matches {len(live)} keys; give more characters or the whole key",
            field=field,
            matches=len(live),
        )
    if found:
        raise NotFoundError(f"key {found[0].prefix} is already revoked", field=field)
    raise NotFoundError(f"no key {shown}", field=field)


def revoke_key(store: Store, reference: str, *, actor: str = "cli", field: str = "key") -> KeyInfo:
    """Revoke the key named by ``reference`` (a prefix or the whole key) now."""
    parsed = parse_reference(reference, field)
    now = time.time()
    with store.write() as conn:
        info = _resolve(conn, parsed, field, now)
        conn.execute(update(schema.api_keys).where(_k.id == info.id).values(revoked_at=now))
        _audit(conn, actor, "key_revoke", info)
    return replace(info, revoked_at=now)


def rotate_key(
    store: Store, reference: str, *, grace_seconds: float = 0.0, actor: str = "cli"
) -> tuple[Issued, KeyInfo]:
    """A new key with the old one's scope and expiry; the old key stops working after
    ``grace_seconds`` (0: at once). Returns the new key and the old key's description."""
    if not (math.isfinite(grace_seconds) and 0 <= grace_seconds <= MAX_GRACE_SECONDS):
        raise ValidationError(
            f"must be between 0 and {MAX_GRACE_SECONDS:g} seconds, got {grace_seconds:g}",
            field="grace",
        )
    parsed = parse_reference(reference)
    now = time.time()
    with store.write() as conn:
        old = _resolve(conn, parsed, "key", now)
        if old.status(now) == "expired":
            raise ConflictError(
                f"key {old.prefix} expired at {iso(old.expires_at)}; "
                "create a new one with `flywheel keys create`",
                field="key",
            )
        issued = _insert(conn, old.scope, old.expires_at, now, actor)
        # A revocation already scheduled (an earlier rotation's grace) is never postponed.
        revoked_at = min(now + grace_seconds, old.revoked_at or math.inf)
        conn.execute(update(schema.api_keys).where(_k.id == old.id).values(revoked_at=revoked_at))
        _audit(
            conn, actor, "key_rotate", old, replaced_by=issued.info.prefix, revoked_at=revoked_at
        )
    return issued, replace(old, revoked_at=revoked_at)


@dataclass(frozen=True)
class _Entry:
    id: int
    prefix: str
    scope: str
    expires_at: float | None
    revoked_at: float | None


# Changes whenever a key is added or removed, or its revocation or expiry is (re)set; one row.
_PROBE = select(
    func.count(),
    func.max(_k.id),
    func.count(_k.revoked_at),
    func.sum(_k.revoked_at),
    func.sum(_k.expires_at),
)


class KeyRing:
    """The server's view of the keys.

    Requests are checked against a copy of the key table. The copy is re-validated by a
    one-row probe when it is older than ``refresh_seconds`` and re-read only when the probe
    changed, so a key revoked by another process is refused within ``refresh_seconds``
    without a query per request. On PostgreSQL, while the process hears change notifications,
    the probe runs when a key change is announced (and every
    :data:`LISTENING_REFRESH_SECONDS`) instead. Uses are recorded for ``last_used_at`` at most
    once per key and ``touch_seconds``, written by a short-lived thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        touch_seconds: float = TOUCH_SECONDS,
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.touch_seconds = touch_seconds
        self._keys: dict[str, _Entry] = {}
        self._version: tuple[Any, ...] | None = None
        self._loaded_at = -math.inf
        self._lock = threading.Lock()
        self._touched: dict[int, float] = {}
        self._pending: dict[int, float] = {}
        self._touch_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._announced = 0  # key changes heard of; the copy is stale while it differs
        self._read_announced = 0
        self._hub = notify.listener(store.engine)
        if self._hub is not None:
            self._hub.subscribe(self)

    def on_events(self, lo: int, hi: int) -> None:
        """Events are not keys."""

    def on_change(self, topic: str) -> None:
        """Called by the listener: keys changed (or anything may have, after a reconnect)."""
        if topic in ("keys", notify.ANY):
            self._announced += 1

    def _period(self) -> float:
        if self._hub is not None and self._hub.listening.is_set():
            return max(self.refresh_seconds, LISTENING_REFRESH_SECONDS)
        return self.refresh_seconds

    def _current(self) -> dict[str, _Entry]:
        if (
            self._announced != self._read_announced
            or time.monotonic() - self._loaded_at > self._period()
        ):
            with self._lock:
                # The probe's start, not its end, dates the copy: a commit during the probe
                # is then still caught by the next one (and so is an announcement).
                announced = self._announced
                started = time.monotonic()
                if announced != self._read_announced or started - self._loaded_at > self._period():
                    self._reload()
                    self._loaded_at = started
                    self._read_announced = announced
        return self._keys

    def _reload(self) -> None:
        with self.store.read() as conn:
            version = tuple(conn.execute(_PROBE).one())
            if version == self._version:
                return
            rows = conn.execute(
                select(_k.key_hash, _k.id, _k.prefix, _k.scope, _k.expires_at, _k.revoked_at)
            )
            self._keys = {row[0]: _Entry(*row[1:]) for row in rows}
            self._version = version

    def invalidate(self) -> None:
        """Re-read the keys at the next check (after this process changed them)."""
        self._loaded_at = -math.inf

    def any_keys(self) -> bool:
        """Whether any key was ever created: revoking every key does not open the server."""
        return bool(self._current())

    def prefix_of(self, key: str | None) -> str | None:
        """The display prefix of a known key (to name the actor in the audit log)."""
        entry = self._current().get(_hash(key)) if key else None
        return entry.prefix if entry else None

    def check(self, key: str | None, needed: Scope) -> None:
        """Raise unless ``key`` grants ``needed`` (admin grants everything); open when no keys."""
        keys = self._current()
        if not keys:
            return
        if not key:
            raise AuthError("an API key is required: Authorization: Bearer KEY")
        entry = keys.get(_hash(key))
        if entry is None:
            raise AuthError("unknown API key")
        now = time.time()
        if entry.revoked_at is not None and entry.revoked_at <= now:
            raise AuthError(f"API key {entry.prefix} was revoked", reason="revoked")
        if entry.expires_at is not None and entry.expires_at <= now:
            raise AuthError(
                f"API key {entry.prefix} expired at {iso(entry.expires_at)}", reason="expired"
            )
        self._touch(entry.id, now)
        if needed == "admin" and entry.scope != "admin":
            raise ForbiddenError("this key has scope 'ingest'; this call needs 'admin'")

    def _touch(self, key_id: int, now: float) -> None:
        if now - self._touched.get(key_id, -math.inf) < self.touch_seconds:
            return
        with self._touch_lock:
            self._touched[key_id] = now
            self._pending[key_id] = now
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_uses, name="flywheel-key-uses", daemon=True
                )
                self._writer.start()

    def _write_uses(self) -> None:
        while True:
            with self._touch_lock:
                pending, self._pending = self._pending, {}
                if not pending:
                    self._writer = None
                    return
            try:
                with self.store.write() as conn:
                    for key_id, ts in pending.items():
                        conn.execute(
                            update(schema.api_keys)
                            .where(_k.id == key_id)
                            .where(or_(_k.last_used_at.is_(None), _k.last_used_at < ts))
                            .values(last_used_at=ts)
                        )
            except SQLAlchemyError as exc:  # last use is informative: never fail a request
                _log.warning("could not record API key use: %s", exc)
