"""Retention: oldest first, per-camera max age, byte quota, free-space floor, holds always win."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from hub.record.retention import DiskUsage, Hold, RetentionPolicy, enforce, select_for_deletion
from hub.store import Store, transaction
from hub.store import segments as q

T0 = 1_800_000_000.0


def _make(recordings: Path, store_conn: object, camera: str, start: float, size: int = 1000) -> q.NewSegment:
    rel = f"{camera}/day/{start:.3f}.mp4"
    path = recordings / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return q.NewSegment(camera, start, start + 4.0, size, "0" * 64, "h264", 320, 240, rel)


async def _populate(store: Store, recordings: Path, layout: list[tuple[str, float]]) -> list[q.Segment]:
    def work(conn: object) -> None:
        for camera, start in layout:
            q.insert_segment(conn, _make(recordings, conn, camera, start))  # type: ignore[arg-type]

    await store.run(work)
    return await store.run(q.oldest_segments, None, 10_000)


def _files(recordings: Path) -> set[str]:
    return {str(p.relative_to(recordings)) for p in recordings.rglob("*.mp4")}


async def test_quota_deletes_oldest_first_across_cameras(tmp_path: Path, store: Store) -> None:
    # Interleaved cameras, 1000 bytes each: a, b, a, b, ... every 4 s.
    segs = await _populate(store, tmp_path, [("a" if i % 2 == 0 else "b", T0 + 4 * i) for i in range(10)])
    batches: list[list[int]] = []

    async def audit(chunk: list[q.Segment]) -> None:
        assert not any((tmp_path / s.path).exists() for s in chunk)  # audited once really gone
        batches.append([s.id for s in chunk])

    deleted = await enforce(
        store, tmp_path, RetentionPolicy(quota_bytes=5500), now=T0 + 100, batch=2, on_batch=audit
    )
    assert [s.id for s in deleted] == [s.id for s in segs[:5]]
    assert batches == [[segs[0].id, segs[1].id], [segs[2].id, segs[3].id], [segs[4].id]]
    assert await store.run(q.total_bytes) == 5000
    assert _files(tmp_path) == {s.path for s in segs[5:]}


async def test_held_segments_are_never_deleted(tmp_path: Path, store: Store) -> None:
    segs = await _populate(store, tmp_path, [("a", T0 + 4 * i) for i in range(10)])
    # A request covering the two oldest segments of camera a (partly), and one for another camera.
    holds = [Hold("a", T0 + 1, T0 + 5), Hold("b", 0, T0 + 100)]
    deleted = await enforce(store, tmp_path, RetentionPolicy(quota_bytes=5000), holds, now=T0 + 100)
    assert [s.id for s in deleted] == [s.id for s in segs[2:7]]
    assert {s.path for s in segs[:2]} <= _files(tmp_path)
    # Everything held and over quota: nothing held goes, even though the quota stays exceeded.
    deleted = await enforce(store, tmp_path, RetentionPolicy(quota_bytes=0), [Hold("a", 0, 1e12)], now=T0)
    assert deleted == []


async def test_touching_a_hold_counts_as_held(tmp_path: Path, store: Store) -> None:
    segs = await _populate(store, tmp_path, [("a", T0 + 4 * i) for i in range(4)])
    # Hold ends exactly where segment 1 starts: its first frame is at the hold's last instant.
    deleted = await enforce(store, tmp_path, RetentionPolicy(quota_bytes=0), [Hold("a", 0, segs[1].start_at)])
    assert [s.id for s in deleted] == [segs[2].id, segs[3].id]


async def test_hold_placed_after_selection_still_protects(tmp_path: Path, store: Store) -> None:
    segs = await _populate(store, tmp_path, [("a", T0 + 4 * i) for i in range(4)])
    calls = 0

    def holds() -> list[Hold]:
        nonlocal calls
        calls += 1
        # The consent owner files a request between selection and deletion.
        return [] if calls == 1 else [Hold("a", segs[0].start_at + 1, segs[0].end_at - 1)]

    deleted = await enforce(store, tmp_path, RetentionPolicy(quota_bytes=2000), holds, now=T0 + 100)
    assert calls >= 2
    assert [s.id for s in deleted] == [segs[1].id]
    assert segs[0].path in _files(tmp_path)


async def test_a_reader_under_the_lock_sees_a_segment_with_its_file_or_neither(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's race: a delivery build read the index while the batch's files went away. Under
    the lock it waits until the batch is gone from disk and index alike."""
    import hub.record.retention as retention

    segs = await _populate(store, tmp_path, [("a", T0 + 4 * i) for i in range(2)])
    lock = asyncio.Lock()
    unlinking = threading.Event()
    go_on = threading.Event()
    real = retention.delete_files

    def slow_delete(root: Path, chunk: list[q.Segment]) -> None:
        unlinking.set()
        assert go_on.wait(10)
        real(root, chunk)

    monkeypatch.setattr(retention, "delete_files", slow_delete)
    task = asyncio.ensure_future(enforce(store, tmp_path, RetentionPolicy(quota_bytes=1000), lock=lock))
    assert await asyncio.to_thread(unlinking.wait, 10)

    async def read() -> list[tuple[str, bool]]:  # what a build does: index, then files
        async with lock:
            rows = await store.run(q.oldest_segments, None, 10)
            return [(r.path, (tmp_path / r.path).exists()) for r in rows]

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.2)
    assert not reader.done()  # waits for the batch
    go_on.set()
    deleted = await task
    assert [s.id for s in deleted] == [segs[0].id]
    assert await reader == [(segs[1].path, True)]


async def test_max_age_per_camera(tmp_path: Path, store: Store) -> None:
    segs = await _populate(store, tmp_path, [(c, T0 + 4 * i) for i in range(5) for c in ("a", "b", "c")])
    now = T0 + 4 * 5 + 10  # the newest segments ended 10 s ago
    policy = RetentionPolicy(max_age_s={"a": 15.0, "b": 1000.0}, default_max_age_s=19.0)
    deleted = await enforce(store, tmp_path, policy, now=now)
    # a: ended before now-15 = T0+15 -> starts T0, T0+4, T0+8 (end T0+12); c: before T0+11 -> T0, T0+4.
    expected = {
        (s.camera_id, s.start_at)
        for s in segs
        if (s.camera_id == "a" and s.end_at < now - 15) or (s.camera_id == "c" and s.end_at < now - 19)
    }
    assert {(s.camera_id, s.start_at) for s in deleted} == expected
    assert len(expected) == 5 and not any(s.camera_id == "b" for s in deleted)


async def test_min_free_percent(tmp_path: Path, store: Store) -> None:
    segs = await _populate(store, tmp_path, [("a", T0 + 4 * i) for i in range(6)])
    # 100 kB disk with 8 kB free; 10 % must be free: free 2 kB more = the two oldest segments.
    deleted = await enforce(
        store,
        tmp_path,
        RetentionPolicy(min_free_percent=10.0),
        now=T0,
        disk=lambda _p: DiskUsage(total=100_000, free=8_000),
    )
    assert [s.id for s in deleted] == [s.id for s in segs[:2]]


async def test_twenty_thousand_segments_use_the_indexes(tmp_path: Path, store: Store) -> None:
    n = 20_000

    def fill(conn: object) -> None:
        with transaction(conn):  # type: ignore[arg-type]
            for i in range(n):
                cam = ("front", "back")[i % 2]
                q.insert_segment(
                    conn,
                    q.NewSegment(  # type: ignore[arg-type]
                        cam, T0 + 2 * i, T0 + 2 * i + 2, 1000, "0" * 64, "h264", 320, 240, f"{cam}/d/{i}.mp4"
                    ),
                )

    await store.run(fill)
    # Quota selection pages through the oldest-first index and stops as soon as enough is chosen.
    chosen = await store.run(
        select_for_deletion, RetentionPolicy(quota_bytes=(n - 1500) * 1000), [], T0 + 1e6
    )
    assert len(chosen) == 1500 and chosen[0].start_at == T0 and chosen[-1].start_at == T0 + 2 * 1499
    # A day's timeline (1 h here) is a range seek on (camera_id, start_at), not a scan.
    day = await store.run(q.segments_between, "front", T0 + 3601, T0 + 7200)
    # Front has a 2 s segment every 4 s; the one that started before the range but overlaps it counts.
    assert len(day) == 900 and day[0].start_at == T0 + 3600 and day[-1].start_at == T0 + 7196
    plans = await store.run(_plans)
    for name, plan in plans.items():
        assert "SCAN segments" not in plan, f"{name} scans the table: {plan}"


def _plans(conn: object) -> dict[str, str]:
    queries = {
        "segments_between": (
            "SELECT * FROM segments WHERE camera_id = ? AND start_at >= COALESCE((SELECT start_at FROM segments"
            " WHERE camera_id = ? AND start_at <= ? ORDER BY start_at DESC LIMIT 1), ?) AND start_at < ?"
            " ORDER BY start_at, id",
            ("front", "front", 1.0, 1.0, 2.0),
        ),
        "oldest_segments": (
            "SELECT * FROM segments WHERE (start_at, id) > (?, ?) ORDER BY start_at, id LIMIT ?",
            (1.0, 1, 500),
        ),
        "segments_ended_before": (
            "SELECT * FROM segments WHERE camera_id = ? AND start_at < ? AND end_at < ?"
            " AND (start_at, id) > (?, ?) ORDER BY start_at, id LIMIT ?",
            ("front", 1.0, 1.0, 0.0, 0, 500),
        ),
        "gaps_between": (
            "SELECT * FROM recording_gaps WHERE camera_id = ? AND start_at <= ? AND end_at >= ?"
            " ORDER BY start_at, id",
            ("front", 2.0, 1.0),
        ),
    }
    out = {}
    for name, (sql, args) in queries.items():
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()  # type: ignore[attr-defined]
        out[name] = " | ".join(r[3] for r in rows)
    return out
