"""Event queries: motion and doorbell-press events, and the footage range each one maps to.

Plain synchronous functions over a `sqlite3.Connection`; run them with `await store.run(fn, ...)`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass

from hub.store.segments import Segment, segments_between

KINDS = ("motion", "press")


@dataclass(frozen=True)
class Event:
    id: str
    camera_id: str
    kind: str
    start_at: float
    end_at: float | None
    score: float
    thumbnail: str | None
    created_at: float
    # "hub" (the hub's motion analysis) or "camera" (a press, or an ONVIF camera's own motion event).
    source: str = "hub"


def _event(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        camera_id=row["camera_id"],
        kind=row["kind"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        score=row["score"],
        thumbnail=row["thumbnail"],
        created_at=row["created_at"],
        source=row["source"],
    )


def insert_event(conn: sqlite3.Connection, event: Event) -> None:
    conn.execute(
        "INSERT INTO events (id, camera_id, kind, start_at, end_at, score, thumbnail, created_at, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.id,
            event.camera_id,
            event.kind,
            event.start_at,
            event.end_at,
            event.score,
            event.thumbnail,
            event.created_at,
            event.source,
        ),
    )


def end_event(
    conn: sqlite3.Connection, event_id: str, end_at: float, score: float, thumbnail: str | None
) -> bool:
    """Close an ongoing event with its final score and thumbnail. False if no such open event."""
    cur = conn.execute(
        "UPDATE events SET end_at = ?, score = ?, thumbnail = COALESCE(?, thumbnail)"
        " WHERE id = ? AND end_at IS NULL",
        (end_at, score, thumbnail, event_id),
    )
    return cur.rowcount == 1


def close_dangling(conn: sqlite3.Connection, camera_id: str) -> int:
    """Close events a crash left open (end = start: nothing after the start is known). Returns count."""
    cur = conn.execute(
        "UPDATE events SET end_at = start_at WHERE camera_id = ? AND end_at IS NULL", (camera_id,)
    )
    return cur.rowcount


def get_event(conn: sqlite3.Connection, event_id: str) -> Event | None:
    row = conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else _event(row)


def list_events(
    conn: sqlite3.Connection,
    *,
    camera_id: str | None = None,
    kind: str | None = None,
    day: dt.date | None = None,
    tz: dt.tzinfo = dt.UTC,
    limit: int = 200,
) -> list[Event]:
    """Events newest first, filtered by camera, kind and calendar day (in `tz`, default UTC)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    clauses, args = [], []
    if camera_id is not None:
        clauses.append("camera_id = ?")
        args.append(camera_id)
    if kind is not None:
        clauses.append("kind = ?")
        args.append(kind)
    if day is not None:
        first = dt.datetime.combine(day, dt.time(), tzinfo=tz)
        clauses.append("start_at >= ? AND start_at < ?")
        args += [first.timestamp(), (first + dt.timedelta(days=1)).timestamp()]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT * FROM events {where} ORDER BY start_at DESC, id LIMIT ?", (*args, limit)
    ).fetchall()
    return [_event(row) for row in rows]


def footage_range(event: Event, pre_roll_s: float, post_roll_s: float) -> tuple[float, float]:
    """The time range of footage that shows the event: [start - pre-roll, end + post-roll].

    An ongoing event (no end yet) extends to now + post-roll.
    """
    end = event.end_at if event.end_at is not None else time.time()
    return (event.start_at - pre_roll_s, end + post_roll_s)


def segments_for_event(
    conn: sqlite3.Connection, event_id: str, pre_roll_s: float, post_roll_s: float
) -> tuple[tuple[float, float], list[Segment]] | None:
    """The footage range of an event (see `footage_range`) and the segments overlapping it.

    None if there is no such event. Gaps in the range are in `segments.gaps_between`.
    """
    event = get_event(conn, event_id)
    if event is None:
        return None
    start, end = footage_range(event, pre_roll_s, post_roll_s)
    return (start, end), segments_between(conn, event.camera_id, start, end)
