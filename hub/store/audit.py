"""Queries for the audit log (PROTOCOL §5): entries are RFC 9162 leaves, checkpoints are signed notes.

The caller builds the entry bytes: `append_entry` hands it the next seq inside the write
transaction, so seq assignment and insert are one atomic step even with other writers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator

from hub.store import transaction


def append_entry(
    conn: sqlite3.Connection, make_entry: Callable[[int], tuple[bytes, bytes]], known: int = 0
) -> tuple[int, bytes, bytes, list[bytes]]:
    """Insert the next entry; `make_entry(seq) -> (entry_bytes, leaf_hash)`. Returns (seq, entry,
    leaf, leaves), where `leaves` are the leaf hashes of seq `known` up to this one (exclusive):
    entries another process appended (`camhub owner reset` on the box while the daemon runs) since
    the caller last saw the log at size `known`."""
    with transaction(conn):
        missed = [
            bytes(r[0])
            for r in conn.execute(
                "SELECT leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq", (known,)
            ).fetchall()
        ]
        seq, entry, leaf = insert_next_entry(conn, make_entry)
    return seq, entry, leaf, missed


def insert_next_entry(
    conn: sqlite3.Connection, make_entry: Callable[[int], tuple[bytes, bytes]]
) -> tuple[int, bytes, bytes]:
    """The insert of `append_entry`, inside the caller's transaction (an entry that must commit
    together with the change it records)."""
    seq = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries").fetchone()[0]
    entry, leaf = make_entry(seq)
    conn.execute("INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)", (seq, entry, leaf))
    return seq, entry, leaf


def entry_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM audit_entries").fetchone()[0]


def read_entries(conn: sqlite3.Connection, start: int, end: int) -> list[tuple[int, bytes]]:
    """Entries with start <= seq < end, in order, as the exact stored bytes."""
    rows = conn.execute(
        "SELECT seq, entry FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
    )
    return [(r[0], bytes(r[1])) for r in rows]


def read_leaves(conn: sqlite3.Connection, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
    """(seq, entry, leaf hash) with start <= seq < end, in order (the export)."""
    rows = conn.execute(
        "SELECT seq, entry, leaf_hash FROM audit_entries WHERE seq >= ? AND seq < ? ORDER BY seq",
        (start, end),
    )
    return [(r[0], bytes(r[1]), bytes(r[2])) for r in rows]


def read_entry(conn: sqlite3.Connection, seq: int) -> bytes | None:
    row = conn.execute("SELECT entry FROM audit_entries WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else bytes(row[0])


def leaf_hashes(conn: sqlite3.Connection) -> list[bytes]:
    """Every leaf hash in seq order (to rebuild the in-memory tree at start)."""
    return [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM audit_entries ORDER BY seq")]


def iter_leaf_hashes(conn: sqlite3.Connection, batch: int = 10_000) -> Iterator[bytes]:
    """Every leaf hash in seq order, read `batch` rows at a time (bounded memory at any log size)."""
    start = 0
    while True:
        rows = conn.execute(
            "SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?", (start, batch)
        ).fetchall()
        if not rows:
            return
        for r in rows:
            yield bytes(r[1])
        start = rows[-1][0] + 1


def node_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM audit_nodes").fetchone()[0]


def store_nodes(conn: sqlite3.Connection, nodes: list[tuple[int, int, bytes]]) -> None:
    """Interior Merkle nodes (level >= 1, index, hash); one derived from the leaves never changes."""
    if nodes:
        with transaction(conn):
            conn.executemany("INSERT OR IGNORE INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)


def perfect_node(conn: sqlite3.Connection, level: int, index: int) -> bytes | None:
    """The hash of the perfect subtree (level, index): a leaf hash at level 0, else a stored node."""
    if level == 0:
        row = conn.execute("SELECT leaf_hash FROM audit_entries WHERE seq = ?", (index,)).fetchone()
    else:
        row = conn.execute(
            "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
    return None if row is None else bytes(row[0])


def store_checkpoint(conn: sqlite3.Connection, tree_size: int, note: str) -> None:
    """Keep the first checkpoint signed for a size; a later one for the same size is identical."""
    conn.execute(
        "INSERT OR IGNORE INTO audit_checkpoints (tree_size, note, created_at) VALUES (?, ?, ?)",
        (tree_size, note, time.time()),
    )


def latest_checkpoint(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (row[0], row[1])


def checkpoint_at_least(conn: sqlite3.Connection, tree_size: int) -> tuple[int, str] | None:
    """The smallest stored checkpoint whose tree covers `tree_size` leaves."""
    row = conn.execute(
        "SELECT tree_size, note FROM audit_checkpoints WHERE tree_size >= ? ORDER BY tree_size LIMIT 1",
        (tree_size,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def all_checkpoints(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [
        (r[0], r[1]) for r in conn.execute("SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size")
    ]


def entries_before(conn: sqlite3.Connection, before: int, limit: int) -> list[tuple[int, bytes]]:
    """Up to `limit` entries with seq < before, newest first (the owner's audit page, one page)."""
    rows = conn.execute(
        "SELECT seq, entry FROM audit_entries WHERE seq < ? ORDER BY seq DESC LIMIT ?", (before, limit)
    )
    return [(r[0], bytes(r[1])) for r in rows]


def entries_containing(conn: sqlite3.Connection, needles: list[bytes], limit: int) -> list[tuple[int, bytes]]:
    """The newest `limit` entries whose bytes contain any of `needles`, oldest first.

    Entries are RFC 8785 canonical JSON (no whitespace, fixed member order), so a member such as
    `"request_id":"<id>"` has exactly one spelling and a byte search finds it. SQLite scans the table
    in C; the caller parses only what matched (a request's history, not the whole log)."""
    if not needles:
        return []
    where = " OR ".join("instr(entry, ?) > 0" for _ in needles)
    rows = conn.execute(
        f"SELECT seq, entry FROM audit_entries WHERE {where} ORDER BY seq DESC LIMIT ?", (*needles, limit)
    ).fetchall()
    return [(r[0], bytes(r[1])) for r in reversed(rows)]
