"""A lease row in the store: at most one live holder per name, on SQLite and PostgreSQL alike.

Taking the lease is one conditional statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE the
lease expired OR I hold it``), so two contenders can never both win: the database serialises
them on the row and re-checks the condition against the row the other one just wrote. The holder
renews the lease while it works (:meth:`Lease.kept`), so a long training run keeps it, and a
holder that dies stops renewing and is replaced once the lease expires. Expiry times come from
each process's clock: replicas need clocks in sync to well within the lease length.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import SQLAlchemyError

from dataflywheel.store import schema
from dataflywheel.store.store import Store, dialect_insert

log = logging.getLogger(__name__)
L = schema.leases.c


class Renewal:
    """The renewal thread of a held lease; ``lost`` is set once another holder has it."""

    def __init__(self, lease: Lease, ttl: float) -> None:
        self.lease = lease
        self.ttl = ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._expires = time.time() + ttl
        self._thread = threading.Thread(target=self._run, name="flywheel-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            now = time.time()
            try:
                renewed = self.lease.acquire(self.ttl, now=now)
            except SQLAlchemyError as exc:  # a store hiccup: retry until the lease runs out
                log.warning("lease %s: renewal failed: %s", self.lease.name, exc)
                renewed = now < self._expires
            else:
                self._expires = now + self.ttl if renewed else self._expires
            if not renewed:
                log.warning("lease %s: lost to another holder", self.lease.name)
                self.lost.set()
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Lease:
    """The lease ``name`` as seen by ``holder``."""

    def __init__(self, store: Store, name: str, holder: str) -> None:
        self.store = store
        self.name = name
        self.holder = holder

    def acquire(self, ttl: float, *, now: float | None = None) -> bool:
        """Take or renew the lease for ``ttl`` seconds; False while another live holder has it."""
        now = time.time() if now is None else now
        with self.store.write() as conn:
            insert = dialect_insert(conn, schema.leases).values(
                name=self.name, holder=self.holder, expires_at=now + ttl
            )
            upsert = insert.on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
                where=or_(L.expires_at < now, L.holder == self.holder),
            )
            # A row comes back when it was inserted or updated (ours); none when the WHERE kept
            # the live holder's row (rowcount is not reliable for upserts on every driver).
            return conn.execute(upsert.returning(L.holder)).first() is not None

    def held(self, *, now: float | None = None) -> bool:
        """Whether this holder has the lease right now (by the row in the store)."""
        now = time.time() if now is None else now
        with self.store.read() as conn:
            row = conn.execute(select(L.holder, L.expires_at).where(L.name == self.name)).first()
        return row is not None and row.holder == self.holder and row.expires_at >= now

    def release(self) -> None:
        """Give the lease up (only if this holder has it), so a successor need not wait."""
        with self.store.write() as conn:
            conn.execute(delete(schema.leases).where(L.name == self.name, L.holder == self.holder))

    @contextmanager
    def kept(self, ttl: float) -> Iterator[Renewal]:
        """Renew the (already acquired) lease every ``ttl / 3`` seconds inside the block."""
        renewal = Renewal(self, ttl)
        renewal.start()
        try:
            yield renewal
        finally:
            renewal.stop()
