"""Model versions, their lifecycle and an audit log of every transition with its reason.

Lifecycle: candidate → (shadow → experiment →) champion → retired. At most one champion; a
rollback restores the previous champion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from dataflywheel.errors import ConflictError, NotFoundError, ValidationError
from dataflywheel.store import schema
from dataflywheel.store.store import Store

STATUSES = ("candidate", "shadow", "experiment", "champion", "retired")
M = schema.models.c


def _public(row: Any) -> dict[str, Any]:
    return {
        "version": row.version,
        "name": row.name,
        "status": row.status,
        "params": row.params,
        "metrics": row.metrics,
        "snapshot_id": row.snapshot_id,
        "created_at": row.created_at,
        "promoted_at": row.promoted_at,
        "fit_seconds": row.fit_seconds,
        "artifact": row.artifact,
    }


class Registry:
    """Reads and changes model versions in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(
        self,
        *,
        name: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        snapshot_id: str,
        artifact: str,
        fit_seconds: float,
        created_at: float,
    ) -> dict[str, Any]:
        """Add a candidate version (``v1``, ``v2``...) and log its creation."""
        with self.store.write() as conn:
            count = conn.execute(select(func.count()).select_from(schema.models)).scalar_one()
            version = f"v{int(count) + 1}"
            conn.execute(
                insert(schema.models).values(
                    version=version,
                    created_at=created_at,
                    name=name,
                    params=params,
                    metrics=metrics,
                    snapshot_id=snapshot_id,
                    status="candidate",
                    artifact=artifact,
                    fit_seconds=fit_seconds,
                )
            )
            self._log(conn, version, None, "candidate", f"trained {name}", created_at)
        return self.get(version)

    def versions(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(schema.models).order_by(M.created_at, M.version)).all()
        return [_public(row) for row in rows]

    def get(self, version: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = conn.execute(select(schema.models).where(M.version == version)).first()
        if row is None:
            raise NotFoundError(f"unknown model version {version!r}", field="version")
        return _public(row)

    def champion(self) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = conn.execute(select(schema.models).where(M.status == "champion")).first()
        return None if row is None else _public(row)

    def promote(self, version: str, reason: str, now: float | None = None) -> dict[str, Any]:
        """Make ``version`` the champion; the previous champion is retired."""
        now = time.time() if now is None else now
        target = self.get(version)
        if target["status"] == "champion":
            raise ConflictError(f"{version} is already the champion", field="version")
        with self.store.write() as conn:
            self._retire_champion(conn, f"replaced by {version}", now)
            conn.execute(
                update(schema.models)
                .where(M.version == version)
                .values(status="champion", promoted_at=now)
            )
            self._log(conn, version, target["status"], "champion", reason, now)
        return self.get(version)

    def set_status(self, version: str, status: str, reason: str, now: float | None = None) -> None:
        """Move a non-champion version to ``status`` (shadow, experiment, retired)."""
        if status not in STATUSES or status == "champion":
            raise ValidationError(
                f"status must be one of {', '.join(STATUSES[:-2])} or retired", field="status"
            )
        now = time.time() if now is None else now
        current = self.get(version)["status"]
        if current == "champion":
            raise ConflictError("use promote or rollback to change the champion", field="version")
        with self.store.write() as conn:
            conn.execute(update(schema.models).where(M.version == version).values(status=status))
            self._log(conn, version, current, status, reason, now)

    def rollback(
        self,
        reason: str = "manual rollback",
        now: float | None = None,
        *,
        evidence: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Retire the champion and restore the version that was champion before it.

        An automatic rollback passes its ``evidence``: it is kept in the retired version's
        metrics (``watch``, shown by ``/v1/models``) and written to the audit log, in the same
        transaction as the change itself.
        """
        now = time.time() if now is None else now
        champion = self.champion()
        if champion is None:
            raise ConflictError("there is no champion to roll back", field="version")
        previous = self._previous_champion(champion["version"])
        if previous is None:
            raise ConflictError(
                f"{champion['version']} is the first champion; nothing to roll back to",
                field="version",
            )
        with self.store.write() as conn:
            self._retire_champion(conn, f"rolled back: {reason}", now)
            conn.execute(
                update(schema.models)
                .where(M.version == previous)
                .values(status="champion", promoted_at=now)
            )
            self._log(conn, previous, "retired", "champion", f"rollback: {reason}", now)
            if evidence is not None:
                detail = {**evidence, "reason": reason, "restored": previous}
                conn.execute(
                    update(schema.models)
                    .where(M.version == champion["version"])
                    .values(metrics={**champion["metrics"], "watch": detail})
                )
                conn.execute(
                    insert(schema.audit_log).values(
                        ts=now,
                        actor="loop",
                        action="rollback",
                        subject=champion["version"],
                        detail=detail,
                    )
                )
        return self.get(previous)

    def transitions(self) -> list[dict[str, Any]]:
        t = schema.model_transitions.c
        with self.store.read() as conn:
            rows = conn.execute(select(schema.model_transitions).order_by(t.id)).all()
        return [
            {
                "version": r.version,
                "from": r.from_status,
                "to": r.to_status,
                "reason": r.reason,
                "at": r.ts,
            }
            for r in rows
        ]

    def _previous_champion(self, current: str) -> str | None:
        """The most recent version other than ``current`` that was once promoted."""
        for entry in reversed(self.transitions()):
            if entry["to"] == "champion" and entry["version"] != current:
                return str(entry["version"])
        return None

    def _retire_champion(self, conn: Connection, reason: str, now: float) -> None:
        old = conn.execute(select(M.version).where(M.status == "champion")).scalar_one_or_none()
        if old is not None:
            conn.execute(update(schema.models).where(M.version == old).values(status="retired"))
            self._log(conn, old, "champion", "retired", reason, now)

    @staticmethod
    def _log(
        conn: Connection, version: str, old: str | None, new: str, reason: str, now: float
    ) -> None:
        conn.execute(
            insert(schema.model_transitions).values(
                version=version, from_status=old, to_status=new, reason=reason, ts=now
            )
        )
