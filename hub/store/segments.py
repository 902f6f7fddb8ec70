"""Queries over the recording index (`segments`, `recording_gaps`; migration 0002).

Plain synchronous functions taking a `sqlite3.Connection`; run them with `await store.run(fn, ...)`
or, from a recorder's worker thread, `store.run_sync(fn, ...)`. Times are wall-clock Unix seconds.
Range queries seek the `(camera_id, start_at)` index instead of scanning, so a day's timeline out of
tens of thousands of segments costs a few pages.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hub.store import transaction


@dataclass(frozen=True)
class NewSegment:
    """A finished segment file, before it has an id."""

    camera_id: str
    start_at: float
    end_at: float
    bytes: int
    sha256: str
    codec: str
    width: int
    height: int
    path: str  # relative to the recordings directory
    recovered: bool = False
    audio_codec: str | None = None  # "aac" / "opus" when the segment has an audio track

    @property
    def duration_s(self) -> float:
        return self.end_at - self.start_at


@dataclass(frozen=True)
class Segment:
    id: int
    camera_id: str
    start_at: float
    end_at: float
    duration_s: float
    bytes: int
    sha256: str
    codec: str
    width: int
    height: int
    path: str
    recovered: bool
    audio_codec: str | None = None


@dataclass(frozen=True)
class Gap:
    id: int
    camera_id: str
    start_at: float
    end_at: float
    reason: str


_SEGMENT_COLS = (
    "id, camera_id, start_at, end_at, duration_s, bytes, sha256, codec, width, height, path, recovered,"
    " audio_codec"
)


def _segment(row: sqlite3.Row) -> Segment:
    return Segment(
        row["id"],
        row["camera_id"],
        row["start_at"],
        row["end_at"],
        row["duration_s"],
        row["bytes"],
        row["sha256"],
        row["codec"],
        row["width"],
        row["height"],
        row["path"],
        bool(row["recovered"]),
        row["audio_codec"],
    )


def _gap(row: sqlite3.Row) -> Gap:
    return Gap(row["id"], row["camera_id"], row["start_at"], row["end_at"], row["reason"])


def insert_segment(conn: sqlite3.Connection, seg: NewSegment) -> int:
    cur = conn.execute(
        "INSERT INTO segments (camera_id, start_at, end_at, duration_s, bytes, sha256, codec, width,"
        " height, path, recovered, created_at, audio_codec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seg.camera_id,
            seg.start_at,
            seg.end_at,
            seg.duration_s,
            seg.bytes,
            seg.sha256,
            seg.codec,
            seg.width,
            seg.height,
            seg.path,
            int(seg.recovered),
            time.time(),
            seg.audio_codec,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def insert_gap(conn: sqlite3.Connection, camera_id: str, start_at: float, end_at: float, reason: str) -> int:
    cur = conn.execute(
        "INSERT INTO recording_gaps (camera_id, start_at, end_at, reason, created_at) VALUES (?, ?, ?, ?, ?)",
        (camera_id, start_at, max(start_at, end_at), reason, time.time()),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def segments_between(conn: sqlite3.Connection, camera_id: str, start: float, end: float) -> list[Segment]:
    """Segments of one camera overlapping [start, end), by start time (a day's timeline, a clip)."""
    # The last segment starting at or before `start` may overlap it; everything else starts inside.
    rows = conn.execute(
        f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = ? AND start_at >= COALESCE("
        " (SELECT start_at FROM segments WHERE camera_id = ? AND start_at <= ? ORDER BY start_at DESC LIMIT 1), ?)"
        " AND start_at < ? ORDER BY start_at, id",
        (camera_id, camera_id, start, start, end),
    ).fetchall()
    return [s for s in map(_segment, rows) if s.end_at > start]


def gaps_between(conn: sqlite3.Connection, camera_id: str, start: float, end: float) -> list[Gap]:
    """Gaps of one camera overlapping [start, end] (zero-length markers at the edges included)."""
    rows = conn.execute(
        "SELECT id, camera_id, start_at, end_at, reason FROM recording_gaps"
        " WHERE camera_id = ? AND start_at <= ? AND end_at >= ? ORDER BY start_at, id",
        (camera_id, end, start),
    ).fetchall()
    return [_gap(r) for r in rows]


def last_segment(conn: sqlite3.Connection, camera_id: str) -> Segment | None:
    row = conn.execute(
        f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = ? ORDER BY start_at DESC, id DESC LIMIT 1",
        (camera_id,),
    ).fetchone()
    return None if row is None else _segment(row)


def segment_by_path(conn: sqlite3.Connection, path: str) -> Segment | None:
    row = conn.execute(f"SELECT {_SEGMENT_COLS} FROM segments WHERE path = ?", (path,)).fetchone()
    return None if row is None else _segment(row)


def oldest_segments(
    conn: sqlite3.Connection, after: tuple[float, int] | None = None, limit: int = 500
) -> list[Segment]:
    """All cameras, oldest first; keyset-paged: pass the last page's (start_at, id) as `after`."""
    if after is None:
        rows = conn.execute(
            f"SELECT {_SEGMENT_COLS} FROM segments ORDER BY start_at, id LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_SEGMENT_COLS} FROM segments WHERE (start_at, id) > (?, ?)"
            " ORDER BY start_at, id LIMIT ?",
            (after[0], after[1], limit),
        ).fetchall()
    return [_segment(r) for r in rows]


def segments_ended_before(
    conn: sqlite3.Connection,
    camera_id: str,
    before: float,
    after: tuple[float, int] | None = None,
    limit: int = 500,
) -> list[Segment]:
    """One camera's segments that ended before `before`, oldest first, keyset-paged like above."""
    lo = after or (float("-inf"), -1)
    rows = conn.execute(
        f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera_id = ? AND start_at < ? AND end_at < ?"
        " AND (start_at, id) > (?, ?) ORDER BY start_at, id LIMIT ?",
        (camera_id, before, before, lo[0], lo[1], limit),
    ).fetchall()
    return [_segment(r) for r in rows]


def camera_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT camera_id FROM segments ORDER BY camera_id")]


def total_bytes(conn: sqlite3.Connection, camera_id: str | None = None) -> int:
    if camera_id is None:
        row = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()
    else:
        row = conn.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE camera_id = ?", (camera_id,)
        ).fetchone()
    return int(row[0])


@dataclass(frozen=True)
class CameraTotals:
    camera_id: str
    segments: int
    bytes: int
    first_start_at: float | None
    last_end_at: float | None


def totals(conn: sqlite3.Connection) -> list[CameraTotals]:
    """Per-camera segment count, bytes and covered span (for status pages and the benchmark)."""
    rows = conn.execute(
        "SELECT camera_id, COUNT(*), SUM(bytes), MIN(start_at), MAX(end_at) FROM segments"
        " GROUP BY camera_id ORDER BY camera_id"
    ).fetchall()
    return [CameraTotals(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def iter_paths(conn: sqlite3.Connection, batch: int = 1000) -> Iterator[tuple[int, str]]:
    """(id, path) of every indexed segment, paged so a large index never sits in memory at once."""
    last = -1
    while True:
        rows = conn.execute(
            "SELECT id, path FROM segments WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        for r in rows:
            yield r[0], r[1]
        last = rows[-1][0]


def all_paths(conn: sqlite3.Connection) -> dict[str, int]:
    """path -> id for the whole index (reconciliation at start; ~100 bytes per segment)."""
    return {path: seg_id for seg_id, path in iter_paths(conn)}


def delete_segments(conn: sqlite3.Connection, ids: Iterable[int]) -> int:
    """Delete index rows in one transaction; returns how many existed."""
    id_list = list(ids)
    if not id_list:
        return 0
    deleted = 0
    with transaction(conn):
        for i in range(0, len(id_list), 500):
            chunk = id_list[i : i + 500]
            marks = ",".join("?" * len(chunk))
            deleted += conn.execute(f"DELETE FROM segments WHERE id IN ({marks})", chunk).rowcount
    return deleted
