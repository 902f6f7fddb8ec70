"""Retention cost: evicting 10,000 segments, and a day's timeline query over 20,000 segments.

`python -m bench.retention_bench [--smoke]`

1. **Eviction**: 10,000 real segment files (2 cameras, 4 s each, in the recorder's
   `camera/YYYY-MM-DD/` layout) indexed in a real SQLite store, all older than the policy's max age.
   Timed: `hub.record.retention.enforce` — paged selection, holds re-read per batch, unlink and
   pruning of emptied day directories, the index delete — plus one `retention.deleted` audit entry
   per batch through the real `AuditLog` (what `on_batch` is for). Reference (the floor, same run):
   `os.unlink` of the same number of files and one bulk `DELETE ... WHERE id IN` — no selection,
   no holds, no audit.
2. **Timeline**: a store with 20,000 segments of one camera in one day (4.32 s each), the same for a
   second camera, and the day before for both (80,000 rows). Timed: the database work of the owner
   UI's `GET /api/v1/owner/timeline` (hub/api/owner_ui.py `timeline`: `segments_between`,
   `gaps_between`, `events_between`, each through `Store.run`). Reference: a bare indexed
   `SELECT id, start_at, end_at` for the same range through the same `Store.run`. The query plan
   (`EXPLAIN QUERY PLAN`) is recorded to show the `(camera_id, start_at)` index is used.

Each figure is the median of several fresh runs, camhub and reference alternating. Writes
bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import results_dir
from camhub_protocol.keys import HubKey
from hub.consent.audit import AuditLog
from hub.record import retention
from hub.store import Store, transaction
from hub.store import segments as q
from hub.store import web as web_q
from hub.store.segments import NewSegment, Segment

RESULTS = results_dir()
DAY = 86400.0
SEGMENT_S = 4.0
CAMERAS = ("front-door", "garden")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def rel_path(camera: str, start: float) -> str:
    t = datetime.fromtimestamp(start, UTC)
    return f"{camera}/{t:%Y-%m-%d}/{t:%H%M%S}-{int(start * 1000) % 1000:03d}.mp4"


def new_segment(camera: str, start: float, length: float, size: int) -> NewSegment:
    return NewSegment(
        camera_id=camera, start_at=start, end_at=start + length, bytes=size, sha256="0" * 64,
        codec="avc1.64002a", width=1920, height=1080, path=rel_path(camera, start),
    )  # fmt: skip


def insert_all(conn: Any, segs: list[NewSegment]) -> list[int]:
    with transaction(conn):
        return [q.insert_segment(conn, s) for s in segs]


def make_files(root: Path, segs: list[NewSegment], size: int) -> None:
    payload = os.urandom(size)
    for s in segs:
        path = root / s.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)


async def eviction_fixture(tmp: Path, n: int, file_bytes: int) -> tuple[Store, Path, list[int]]:
    """`n` real files and rows, two cameras, all ended more than two days ago."""
    media = tmp / "media"
    t0 = time.time() - 3 * DAY - n * SEGMENT_S
    segs = [new_segment(CAMERAS[i % 2], t0 + (i // 2) * SEGMENT_S, SEGMENT_S, file_bytes) for i in range(n)]
    await asyncio.to_thread(make_files, media, segs, file_bytes)
    store = await Store.open(tmp / "camhub.sqlite")
    ids = await store.run(insert_all, segs)
    return store, media, ids


async def evict_camhub(tmp: Path, n: int, file_bytes: int) -> dict[str, Any]:
    store, media, _ = await eviction_fixture(tmp, n, file_bytes)
    try:
        key, _ = HubKey.load_or_create(tmp)
        audit = await AuditLog.open(store, key)
        batches = 0

        async def audit_batch(chunk: list[Segment]) -> None:
            # The same entry the daemon writes (hub/ingest/camera.py enforce_retention), per batch.
            nonlocal batches
            batches += 1
            await audit.append(
                "retention.deleted",
                "hub",
                {
                    "segments": len(chunk),
                    "bytes": sum(s.bytes for s in chunk),
                    "cameras": sorted({s.camera_id for s in chunk}),
                    "from": rfc3339(min(s.start_at for s in chunk)),
                    "to": rfc3339(max(s.end_at for s in chunk)),
                },
            )

        policy = retention.RetentionPolicy(default_max_age_s=DAY)
        started = time.perf_counter()
        deleted = await retention.enforce(store, media, policy, lambda: [], on_batch=audit_batch)
        seconds = time.perf_counter() - started
        left_files = sum(1 for _ in media.rglob("*.mp4"))
        left_rows = await store.run(lambda c: c.execute("SELECT COUNT(*) FROM segments").fetchone()[0])
    finally:
        await store.close()
    if len(deleted) != n or left_files or left_rows:
        raise RuntimeError(f"retention deleted {len(deleted)}/{n}; {left_files} files, {left_rows} rows left")
    return {"seconds": seconds, "audit_entries": batches}


async def evict_floor(tmp: Path, n: int, file_bytes: int) -> dict[str, Any]:
    store, media, ids = await eviction_fixture(tmp, n, file_bytes)
    try:
        paths = [p for p in media.rglob("*.mp4")]
        started = time.perf_counter()

        def unlink_all() -> None:
            for p in paths:
                p.unlink()

        await asyncio.to_thread(unlink_all)
        await store.run(q.delete_segments, ids)
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    return {"seconds": seconds}


async def timeline_fixture(tmp: Path, per_day: int) -> tuple[Store, float]:
    """`per_day` segments per camera per day, for two cameras and two days; returns the day's start."""
    day_start = float(int(time.time() // DAY) * DAY - DAY)  # yesterday 00:00 UTC
    length = DAY / per_day
    segs = [
        new_segment(cam, d0 + i * length, length, 2_000_000)
        for d0 in (day_start - DAY, day_start)
        for cam in CAMERAS
        for i in range(per_day)
    ]
    store = await Store.open(tmp / "camhub.sqlite")
    await store.run(insert_all, segs)
    await store.run(lambda c: c.execute("ANALYZE"))  # as a long-running hub's optimize would have
    return store, day_start


def floor_query(conn: Any, camera: str, start: float, end: float) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, start_at, end_at FROM segments WHERE camera_id = ? AND start_at >= ? AND start_at < ?",
        (camera, start, end),
    ).fetchall()


def query_plan(conn: Any, camera: str, start: float, end: float) -> list[str]:
    """EXPLAIN QUERY PLAN of segments_between's statement (the detail column of each row)."""
    sql = (
        f"SELECT {q._SEGMENT_COLS} FROM segments WHERE camera_id = ? AND start_at >= COALESCE("
        " (SELECT start_at FROM segments WHERE camera_id = ? AND start_at <= ? ORDER BY start_at DESC LIMIT 1), ?)"
        " AND start_at < ? ORDER BY start_at, id"
    )
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, (camera, camera, start, start, end)).fetchall()
    return [str(r[-1]) for r in rows]


async def timeline(tmp: Path, per_day: int, rounds: int) -> dict[str, Any]:
    store, start = await timeline_fixture(tmp, per_day)
    end = start + DAY
    camera = CAMERAS[0]
    route: list[float] = []
    segments_only: list[float] = []
    floor: list[float] = []
    try:
        plan = await store.run(query_plan, camera, start, end)
        for _ in range(rounds):  # alternate, so drift on a shared machine hits both sides alike
            t = time.perf_counter()
            rows = await store.run(floor_query, camera, start, end)
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            segs = await store.run(q.segments_between, camera, start, end)
            segments_only.append(time.perf_counter() - t)
            await store.run(q.gaps_between, camera, start, end)
            await store.run(web_q.events_between, [camera], start, end, 500)
            route.append(time.perf_counter() - t)
            if len(segs) != per_day or len(rows) != per_day:
                raise RuntimeError(
                    f"timeline returned {len(segs)} segments, floor {len(rows)}; want {per_day}"
                )
    finally:
        await store.close()
    return {
        "segments_in_day": per_day,
        "rows_in_store": per_day * 2 * len(CAMERAS),
        "route_db_ms": round(statistics.median(route) * 1000, 2),
        "segments_between_ms": round(statistics.median(segments_only) * 1000, 2),
        "floor_select_ms": round(statistics.median(floor) * 1000, 2),
        "ratio": round(statistics.median(route) / statistics.median(floor), 2),
        "query_plan": plan,
        "uses_camera_start_index": all("segments_camera_start" in p for p in plan if "segments" in p),
        "rounds": rounds,
    }


async def run(smoke: bool) -> dict[str, Any]:
    n_evict, per_day, runs, rounds, file_bytes = (
        (300, 500, 2, 5, 1024) if smoke else (10_000, 20_000, 3, 9, 4096)
    )
    camhub: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    for i in range(runs):
        for side, fn in (("camhub", evict_camhub), ("floor", evict_floor)):
            tmp = Path(tempfile.mkdtemp(prefix=f"camhub-retention-{side}-{i}-"))
            try:
                (camhub if side == "camhub" else floor).append(await fn(tmp, n_evict, file_bytes))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="camhub-timeline-"))
    try:
        tl = await timeline(tmp, per_day, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evict_s = statistics.median(r["seconds"] for r in camhub)
    floor_s = statistics.median(r["seconds"] for r in floor)
    result: dict[str, Any] = {
        "smoke": smoke,
        "eviction": {
            "segments": n_evict,
            "file_bytes": file_bytes,
            "camhub_seconds": round(evict_s, 3),
            "floor_seconds": round(floor_s, 3),
            "ratio": round(evict_s / floor_s, 2),
            "segments_per_s": round(n_evict / evict_s),
            "audit_entries": camhub[0]["audit_entries"],
            "runs": [round(r["seconds"], 3) for r in camhub],
            "floor_runs": [round(r["seconds"], 3) for r in floor],
        },
        "timeline": tl,
    }
    result["summary"] = (
        f"evict {n_evict:,} segments {evict_s:.2f} s (unlink+DELETE floor {floor_s:.2f} s, x{evict_s / floor_s:.1f}); "
        f"day timeline of {per_day:,} segments {tl['route_db_ms']:.0f} ms DB "
        f"(bare indexed SELECT {tl['floor_select_ms']:.0f} ms, x{tl['ratio']})"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_bench")
    parser.add_argument("--smoke", action="store_true", help="300 segments, a 500-segment day")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.smoke))
    e, tl = result["eviction"], result["timeline"]
    rows = [
        (
            f"evict {e['segments']:,} segments (enforce + audit)",
            f"{e['camhub_seconds']:.3f} s  runs {e['runs']}",
        ),
        ("  reference: unlink + bulk DELETE", f"{e['floor_seconds']:.3f} s  runs {e['floor_runs']}"),
        ("  ratio / rate", f"x{e['ratio']}  {e['segments_per_s']:,}/s, {e['audit_entries']} audit entries"),
        (f"timeline DB work, {tl['segments_in_day']:,} segs/day", f"{tl['route_db_ms']:.2f} ms"),
        ("  of which segments_between", f"{tl['segments_between_ms']:.2f} ms"),
        ("  reference: bare indexed SELECT", f"{tl['floor_select_ms']:.2f} ms  (x{tl['ratio']})"),
        ("  query plan", " / ".join(tl["query_plan"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(result["summary"])
    (RESULTS / "retention.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
