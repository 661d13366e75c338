"""What a process holds in memory about erased users and items, and how it lets go of it.

Erasure and retention delete rows and append audit rows (:mod:`dataflywheel.store.audit`).
Each serving process reads the audit rows after the last one it saw, at its periodic champion
check (one primary-key range read, never per request), and then drops: the erased user's
history, the erased item from the catalogue, their dense ids from the store's id cache, and
its copy of the event log that whole-history reads extend (it assumes events are only added).
"""

from __future__ import annotations

from typing import Any

from dataflywheel.serve.catalog import Catalog
from dataflywheel.serve.history import Histories
from dataflywheel.store import audit
from dataflywheel.store.forget import forget_dense_id, forget_event_log
from dataflywheel.store.store import Store


class DeletionWatch:
    """Follows the audit log for deletions made by any process since this one started."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen = audit.latest_id(store)

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """The deleting actions audited since the last poll; the local event-log copy is
        dropped when there is any."""
        found, self.seen = audit.deletions_since(self.store, self.seen)
        if found:
            forget_event_log(self.store)
        return found


def forget(
    store: Store,
    found: list[tuple[str, dict[str, Any]]],
    histories: Histories | None,
    catalog: Catalog,
) -> None:
    """Let go of the users and items erased in ``found`` (retention needs nothing more than
    the event-log copy :meth:`DeletionWatch.poll` dropped: histories age out at the next load)."""
    for action, detail in found:
        idx = detail.get("idx")
        if not isinstance(idx, int):
            continue
        if action == audit.ERASE_USER:
            forget_dense_id(store, "users", idx)
            if histories is not None:
                histories.forget(idx)
        elif action == audit.ERASE_ITEM:
            forget_dense_id(store, "items", idx)
            if idx < catalog.visible.size:
                catalog.visible[idx] = False  # at once, for requests before the reload
            catalog.invalidate()
            if histories is not None:
                histories.forget_item(idx)
