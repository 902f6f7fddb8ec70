"""The store's memory is bounded (issue 17): each connection's page cache has a cap, so a database
that keeps growing (the audit log never shrinks) does not grow the daemon with it."""

from __future__ import annotations

import _sqlite3
import ctypes
import sqlite3
from pathlib import Path

from hub import store


def _page_cache_bytes() -> int:
    """SQLITE_STATUS_PAGECACHE_OVERFLOW: without a static page-cache buffer (the default), every
    cached page of every connection of this process, with its header."""
    lib = ctypes.CDLL(_sqlite3.__file__)
    current, high = ctypes.c_int64(), ctypes.c_int64()
    assert lib.sqlite3_status64(2, ctypes.byref(current), ctypes.byref(high), 0) == 0
    return current.value


async def test_the_page_caches_stay_under_their_caps_while_the_database_grows(tmp_path: Path) -> None:
    before = _page_cache_bytes()  # other tests' connections in this process
    s = await store.Store.open(tmp_path / "camhub.sqlite")
    try:
        assert await s.run(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -store.CACHE_KIB
        assert s.read_here(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -store.READER_CACHE_KIB

        def grow(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, blob BLOB)")
            conn.executemany("INSERT INTO filler (blob) VALUES (?)", ((bytes(2000),) for _ in range(8000)))

        await s.run(grow)  # 16 MB: eight times what both caps hold together
        # Read it all through both connections, so each cache holds as much as it may.
        await s.run(lambda c: c.execute("SELECT sum(length(blob)) FROM filler").fetchone())
        s.read_here(lambda c: c.execute("SELECT sum(length(blob)) FROM filler").fetchone())
        # Both caches together hold under 1.6 MiB (1 MiB + 256 KiB of pages, plus their headers), not
        # the 16 MB read, nor SQLite's default 2000 KiB each.
        grown = _page_cache_bytes() - before
        assert 0 < grown <= 1.6 * 2**20, grown
    finally:
        await s.close()
