"""SQLite store: the index over media files and the consent records.

SQLite is the embedded database (WAL mode, one file under the data dir). Every call runs in one
dedicated thread, so the event loop never blocks on disk and writes are serialised without a lock.
SQL lives only in this package: the query modules (`hub/store/<area>.py`) hold plain synchronous
functions that take a `sqlite3.Connection`; callers run them with `await store.run(fn, *args)`.

Schema changes are numbered files in `migrations/` (`0001_foundation.sql`, ...), applied in order
at open, each in one transaction, and recorded in `PRAGMA user_version`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from hub.threadname import name_os_thread

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreError(Exception):
    """The database could not be opened or migrated."""


def migrations() -> list[tuple[int, str, str]]:
    """All migrations shipped with the package as (version, name, sql), sorted by version."""
    out = []
    for entry in resources.files("hub.store").joinpath("migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        version = int(name.split("_", 1)[0])
        out.append((version, name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number: {versions}")
    return out


# Page cache per connection, KiB. SQLite's own default (2000 KiB) is not a leak but fills as the
# database grows (the audit log never shrinks), so a daemon's memory rose for an hour or more before
# it was flat (issue 17's soak). The hub's working set is the recent end of a few indexes; a cap it
# reaches within minutes makes the plateau early and known. The reader (read_here: Merkle nodes)
# needs less.
CACHE_KIB = 1024
READER_CACHE_KIB = 256


def connect(path: Path) -> sqlite3.Connection:
    """Open the database file with the settings every connection needs."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; media files are fsynced separately.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Apply every pending migration up to `target` (default: all). Returns the resulting version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    available = migrations()
    latest = available[-1][0] if available else 0
    if current > latest:
        raise StoreError(
            f"database schema version {current} is newer than this camhub ({latest}); refusing to run"
        )
    for version, name, sql in available:
        if version <= current or (target is not None and version > target):
            continue
        log.info("applying migration %s", name)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # executescript would COMMIT on its own; run statement by statement inside our transaction.
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"migration {name} failed: {exc}") from exc
        current = version
    return current


def _split_sql(sql: str) -> list[str]:
    statements, buf = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")
    return statements


class Store:
    """The hub's database, owned by the daemon; one connection used from one worker thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="camhub-db", initializer=name_os_thread
        )
        self._closed = False
        self._reader: sqlite3.Connection | None = None  # see read_here

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the database at `path`."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="camhub-db", initializer=name_os_thread
        )

        def _open() -> sqlite3.Connection:
            try:
                conn = connect(path)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open database {path}: {exc}") from exc
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await loop.run_in_executor(executor, _open)
        finally:
            executor.shutdown(wait=True)
        return cls(conn, path)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in the database thread and return its result."""
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._conn, *args)

    def read_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a short read-only `fn(conn, *args)` on the calling thread (the event loop included) with
        the store's second connection, read-only: for a few indexed lookups that cost less than a
        thread hop (the audit log's Merkle nodes). It sees only committed data (WAL)."""
        if self._closed:
            raise StoreError("store is closed")
        if self._reader is None:
            self._reader = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            self._reader.execute("PRAGMA busy_timeout=10000")
            self._reader.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        return fn(self._reader, *args)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` from a worker thread that is not the event loop (e.g. a muxer thread)."""
        if self._closed:
            raise StoreError("store is closed")
        return self._executor.submit(self._call, fn, args).result()

    async def close(self) -> None:
        """Finish queued calls, checkpoint the WAL and close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        loop = asyncio.get_running_loop()

        def _close() -> None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

        await loop.run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=True)


def transaction(conn: sqlite3.Connection) -> _Transaction:
    """`with transaction(conn): ...` runs the block in BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
    return _Transaction(conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
