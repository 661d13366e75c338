"""Opening a store: the schema check without Alembic, and migrations run without env.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from dataflywheel.config import load_settings
from dataflywheel.store.engine import create_store_engine
from dataflywheel.store.migrate import (
    alembic_config,
    head_revisions,
    is_current,
    stored_revisions,
    upgrade,
)
from dataflywheel.store.store import Store


def test_head_read_from_the_files_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert head_revisions() == frozenset(script.get_heads())
    assert len(head_revisions()) == 1


def _schema(url: str) -> dict[str, str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        ).all()
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return {"(revision)": version, **{name: sql for name, sql in rows}}


def test_a_new_store_gets_the_same_schema_as_alembics_own_upgrade(tmp_path: Path) -> None:
    ours = f"sqlite:///{tmp_path / 'ours.db'}"
    Store(load_settings(db=ours)).close()
    # The reference: Alembic's command, through migrations/env.py.
    theirs = f"sqlite:///{tmp_path / 'theirs.db'}"
    engine = create_store_engine(theirs)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()
    assert _schema(ours) == _schema(theirs)
    assert _schema(ours)["(revision)"] in head_revisions()
    assert "events" in _schema(ours) and "label_queue" in _schema(ours)


def test_an_older_store_is_upgraded_and_a_current_one_is_left_alone(store_url: str) -> None:
    engine = create_store_engine(store_url)
    assert stored_revisions(engine) is None and not is_current(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    assert stored_revisions(engine) == {"0003"}
    assert "label_queue" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert is_current(engine) and stored_revisions(engine) == head_revisions()
    assert "label_queue" in inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (key_hash, prefix, scope, created_at) "
                "VALUES ('h', 'p', 'admin', 1)"
            )
        )
    upgrade(engine)  # nothing to do: the row survives, no error
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 1
    engine.dispose()


def test_the_upgrade_keeps_ids_erased_before_it_from_being_given_again(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        for key in ("a", "b", "c"):
            connection.execute(
                text(
                    "INSERT INTO items (item_id, hidden, created_at, updated_at) "
                    "VALUES (:key, false, 1, 1)"
                ),
                {"key": key},
            )
        # "c" (idx 3) erased under 0007, which audited its idx; "a" and "b" stay.
        connection.execute(text("DELETE FROM items WHERE item_id = 'c'"))
        connection.execute(
            text(
                "INSERT INTO audit_log (ts, actor, action, subject, detail) "
                "VALUES (1, 'cli', 'erase_item', 'item:sha256:x', '{\"idx\": 3}')"
            )
        )
    upgrade(engine)
    with engine.begin() as conn:
        for key in ("d", "e"):
            conn.execute(
                text(
                    "INSERT INTO items (item_id, hidden, created_at, updated_at) "
                    "VALUES (:key, false, 1, 1)"
                ),
                {"key": key},
            )
        rows = dict(conn.execute(text("SELECT item_id, idx FROM items")).all())
        conn.execute(
            text(
                "INSERT INTO users (user_id, hidden, created_at, updated_at) "
                "VALUES ('u', false, 1, 1)"
            )
        )
        user = conn.execute(text("SELECT idx FROM users")).scalar_one()
    engine.dispose()
    assert rows == {"a": 1, "b": 2, "d": 4, "e": 5}
    assert user == 1


def test_opening_a_current_store_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    Store(load_settings(db=url)).close()
    code = (
        "import sys\n"
        "from dataflywheel.config import load_settings\n"
        "from dataflywheel.store.store import Store\n"
        f"Store(load_settings(db={url!r})).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
