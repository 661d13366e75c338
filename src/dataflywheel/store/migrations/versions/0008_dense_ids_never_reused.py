"""dense ids never reused on SQLite: users and items get AUTOINCREMENT

Without it SQLite gives a new row the highest rowid plus one, so the next user or item after
erasing the highest one took its dense id, and with it what models trained before the erasure
had learned about the erased subject. PostgreSQL sequences never go back; nothing changes there.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ERASURES = {"users": "erase_user", "items": "erase_item"}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table, action in _ERASURES.items():
        # The copy keeps every idx, which moves the table's counter to the highest one left.
        _rebuild(table, autoincrement=True)
        # An erased highest id is gone from the table; the audit log still holds it.
        erased = [
            json.loads(detail).get("idx")
            for (detail,) in bind.execute(
                sa.text("SELECT detail FROM audit_log WHERE action = :action"), {"action": action}
            )
        ]
        highest = max((idx for idx in erased if isinstance(idx, int)), default=0)
        bind.execute(
            sa.text("DELETE FROM sqlite_sequence WHERE name = :table AND seq < :highest"),
            {"table": table, "highest": highest},
        )
        bind.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) SELECT :table, :highest "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :table)"
            ),
            {"table": table, "highest": highest},
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in _ERASURES:
        _rebuild(table, autoincrement=False)


def _rebuild(table: str, *, autoincrement: bool) -> None:
    """Copy ``table`` into a new one with or without AUTOINCREMENT: SQLite cannot add or drop
    it in place. The batch changes no column; ``recreate="always"`` alone makes the copy."""
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
