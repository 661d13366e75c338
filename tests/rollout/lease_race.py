"""The contender process of the lease race (a module of its own so that spawn can import it)."""

from __future__ import annotations

from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from dataflywheel.config import Settings
from dataflywheel.store.lease import Lease
from dataflywheel.store.store import Store


def contend(url: str, holder: str, rounds: int, barrier: Barrier, results: Queue) -> None:
    """Each round, wait for the other contender, then both try to take lease ``race-R``."""
    store = Store(Settings(db=url))
    try:
        for term in range(rounds):
            lease = Lease(store, f"race-{term}", holder)
            barrier.wait(timeout=60)
            results.put((term, holder, lease.acquire(60.0)))
    finally:
        store.close()
