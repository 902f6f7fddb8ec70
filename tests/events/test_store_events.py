"""Event queries: filters, ordering, closing, and mapping an event to recorded segments."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import store
from hub.store import events as q
from hub.store.segments import NewSegment, insert_segment

DAY = dt.date(2025, 11, 23)
NOON = dt.datetime(2025, 11, 23, 12, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = store.connect(tmp_path / "db.sqlite")
    store.migrate(c)
    try:
        yield c
    finally:
        c.close()


def ev(ident: str, camera: str, kind: str, start: float, end: float | None = None) -> q.Event:
    return q.Event(ident, camera, kind, start, end, 0.1, None, start)


def test_list_filters_by_camera_kind_and_day(conn: sqlite3.Connection) -> None:
    for e in [
        ev("a", "door", "motion", NOON, NOON + 5),
        ev("b", "door", "press", NOON + 60, NOON + 60),
        ev("c", "yard", "motion", NOON + 120, NOON + 130),
        ev("d", "door", "motion", NOON + 86_400, NOON + 86_410),  # next day
        ev("e", "door", "motion", NOON - 12 * 3600 - 1, NOON - 12 * 3600),  # previous day, 23:59:59
    ]:
        q.insert_event(conn, e)
    ids = lambda events: [e.id for e in events]  # noqa: E731
    assert ids(q.list_events(conn)) == ["d", "c", "b", "a", "e"]
    assert ids(q.list_events(conn, camera_id="door")) == ["d", "b", "a", "e"]
    assert ids(q.list_events(conn, kind="press")) == ["b"]
    assert ids(q.list_events(conn, day=DAY)) == ["c", "b", "a"]
    assert ids(q.list_events(conn, camera_id="door", kind="motion", day=DAY)) == ["a"]
    # In Tokyo (UTC+9) 23 November runs from 22 Nov 15:00 UTC to 23 Nov 15:00 UTC.
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert ids(q.list_events(conn, day=DAY, tz=tokyo)) == ["c", "b", "a", "e"]
    assert ids(q.list_events(conn, day=dt.date(2025, 11, 24), tz=tokyo)) == ["d"]
    assert ids(q.list_events(conn, limit=2)) == ["d", "c"]
    with pytest.raises(ValueError, match="kind"):
        q.list_events(conn, kind="ring")


def test_end_event_only_closes_open_events(conn: sqlite3.Connection) -> None:
    q.insert_event(conn, ev("a", "door", "motion", NOON))
    assert q.end_event(conn, "a", NOON + 9, 0.4, "events/door/2025-11-23/a.jpg")
    assert not q.end_event(conn, "a", NOON + 20, 0.9, None)
    got = q.get_event(conn, "a")
    assert got is not None and got.end_at == NOON + 9 and got.score == 0.4
    assert got.thumbnail == "events/door/2025-11-23/a.jpg"
    assert q.get_event(conn, "missing") is None


def test_schema_rejects_bad_rows(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        q.insert_event(conn, ev("x", "door", "wave", NOON))
    with pytest.raises(sqlite3.IntegrityError):
        q.insert_event(conn, ev("y", "door", "motion", NOON, NOON - 1))


def test_event_maps_to_segments_with_pre_and_post_roll(conn: sqlite3.Connection) -> None:
    for camera in ("door", "yard"):
        for i in range(10):  # 4 s segments from NOON to NOON + 40
            start = NOON + 4 * i
            insert_segment(
                conn,
                NewSegment(camera, start, start + 4, 1000, "00" * 32, "h264", 640, 360, f"{camera}/{i}.mp4"),
            )
    q.insert_event(conn, ev("m", "door", "motion", NOON + 10.5, NOON + 13.0))
    mapped = q.segments_for_event(conn, "m", pre_roll_s=5.0, post_roll_s=10.0)
    assert mapped is not None
    (start, end), segments = mapped
    assert (start, end) == (NOON + 5.5, NOON + 23.0)
    assert [s.path for s in segments] == [
        "door/1.mp4",
        "door/2.mp4",
        "door/3.mp4",
        "door/4.mp4",
        "door/5.mp4",
    ]
    assert q.segments_for_event(conn, "missing", 5.0, 10.0) is None


def test_ongoing_event_range_extends_to_now(conn: sqlite3.Connection) -> None:
    e = ev("o", "door", "motion", NOON)
    start, end = q.footage_range(e, 2.0, 3.0)
    assert start == NOON - 2.0
    assert end >= dt.datetime.now(dt.UTC).timestamp() + 2.0
