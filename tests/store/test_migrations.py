"""Schema migrations: from an empty file and from every older version to the latest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub import store


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return sorted(
        (row[0], row[1])
        for row in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
        )
    )


def _latest() -> int:
    return store.migrations()[-1][0]


def test_from_empty(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db.sqlite")
    assert store.migrate(conn) == _latest()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _latest()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Re-running is a no-op.
    before = _schema(conn)
    assert store.migrate(conn) == _latest()
    assert _schema(conn) == before


@pytest.mark.parametrize("start", [v for v, _, _ in store.migrations()][:-1] or [0])
def test_from_each_older_version(tmp_path: Path, start: int) -> None:
    fresh = store.connect(tmp_path / "fresh.sqlite")
    store.migrate(fresh)
    old = store.connect(tmp_path / "old.sqlite")
    assert store.migrate(old, target=start) == start
    assert store.migrate(old) == _latest()
    assert _schema(old) == _schema(fresh)


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "db.sqlite")
    conn.execute(f"PRAGMA user_version={_latest() + 1}")
    with pytest.raises(store.StoreError, match="newer than this camhub"):
        store.migrate(conn)


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = store.migrations()
    broken = [*real, (real[-1][0] + 1, "9999_broken.sql", "CREATE TABLE t1 (x);\nCREATE TABLE t1 (x);\n")]
    monkeypatch.setattr(store, "migrations", lambda: broken)
    conn = store.connect(tmp_path / "db.sqlite")
    with pytest.raises(store.StoreError, match=r"9999_broken\.sql failed"):
        store.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == real[-1][0]
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 't1'").fetchone() is None


async def test_store_runs_calls_off_the_loop(tmp_path: Path) -> None:
    import threading

    s = await store.Store.open(tmp_path / "db.sqlite")
    try:
        loop_thread = threading.get_ident()
        ident = await s.run(lambda conn: threading.get_ident())
        assert ident != loop_thread
        await s.run(lambda conn: conn.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')"))
        assert await s.run(lambda conn: conn.execute("SELECT value FROM meta").fetchone()[0]) == "b"
    finally:
        await s.close()
    await s.close()  # idempotent
    with pytest.raises(store.StoreError):
        await s.run(lambda conn: None)
