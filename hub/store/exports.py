"""`camhub export` outputs, indexed so that they age out with the footage (PROTOCOL §3.2, migration 0017)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Export:
    id: int
    path: str
    camera_id: str
    start_at: float
    end_at: float


def record(conn: sqlite3.Connection, path: str, camera_id: str, start: float, end: float, now: float) -> int:
    cur = conn.execute(
        "INSERT INTO exports (path, camera_id, start_at, end_at, created_at) VALUES (?, ?, ?, ?, ?)",
        (path, camera_id, start, end, now),
    )
    return int(cur.lastrowid or 0)


def to_expire(conn: sqlite3.Connection, cutoffs: dict[str, float], default: float | None) -> list[Export]:
    """Exports not yet deleted whose newest footage ended before its camera's cutoff (now − max age)."""
    rows = conn.execute(
        "SELECT id, path, camera_id, start_at, end_at FROM exports WHERE deleted_at IS NULL ORDER BY end_at"
    ).fetchall()
    out = []
    for r in rows:
        cutoff = cutoffs.get(r[2], default)
        if cutoff is not None and r[4] < cutoff:
            out.append(Export(r[0], r[1], r[2], r[3], r[4]))
    return out


def mark_deleted(conn: sqlite3.Connection, export_id: int, now: float) -> None:
    conn.execute("UPDATE exports SET deleted_at = ? WHERE id = ?", (now, export_id))
