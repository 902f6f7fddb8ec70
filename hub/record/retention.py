"""Retention: choose which segments to delete (pure selection), then delete them (files, then rows).

Rules, applied oldest first:

1. **Max age per camera**: a segment that ended more than `max_age_s[camera]` (or `default_max_age_s`)
   ago goes.
2. **Global quota**: while the index holds more than `quota_bytes`, or the disk has less than
   `min_free_percent` free, the oldest segments of any camera go.
3. **Holds win**: a segment overlapping a hold (a camera's time range inside a pending or approved
   request, supplied by the consent owner) is never selected, whatever the rules above say — even if
   that leaves the quota exceeded. Holds are read again just before deleting, so a request filed
   between selection and deletion still protects its footage.

Deletion order: file first, then the index row. A crash in between leaves a row without a file, which
recovery's reconciliation removes; the reverse order could leave an unindexed file that reconciliation
would resurrect. `enforce()` returns the deleted segments so the caller writes one `retention.deleted`
audit entry per batch.

Selection pages through the `(camera_id, start_at)` and `(start_at, id)` indexes `page` rows at a time,
so it stays cheap with tens of thousands of segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hub.store import Store
from hub.store import segments as q
from hub.store.segments import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hold:
    """Footage of `camera_id` in [start_at, end_at] must be kept (a pending or approved request)."""

    camera_id: str
    start_at: float
    end_at: float


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: Mapping[str, float] = field(default_factory=dict)  # per camera
    default_max_age_s: float | None = None  # cameras not in max_age_s; None: no age limit
    quota_bytes: int | None = None  # all cameras together
    min_free_percent: float | None = None  # of the recordings filesystem


@dataclass(frozen=True)
class DiskUsage:
    total: int
    free: int


HoldSource = Iterable[Hold] | Callable[[], Iterable[Hold]]


def _resolve(holds: HoldSource) -> dict[str, list[tuple[float, float]]]:
    items = holds() if callable(holds) else holds
    by_camera: dict[str, list[tuple[float, float]]] = {}
    for h in items:
        by_camera.setdefault(h.camera_id, []).append((h.start_at, h.end_at))
    return by_camera


def is_held(seg: Segment, holds: Mapping[str, list[tuple[float, float]]]) -> bool:
    """Overlap with closed intervals: a segment that only touches a hold's edge is held too."""
    return any(seg.start_at <= end and seg.end_at >= start for start, end in holds.get(seg.camera_id, ()))


def select_for_deletion(
    conn: sqlite3.Connection,
    policy: RetentionPolicy,
    holds: Iterable[Hold],
    now: float,
    disk: DiskUsage | None = None,
    page: int = 500,
) -> list[Segment]:
    """The segments the policy deletes now, oldest first within each rule. Reads only."""
    held = _resolve(holds)
    chosen: dict[int, Segment] = {}

    # 1. Max age, per camera.
    for camera_id in q.camera_ids(conn):
        max_age = policy.max_age_s.get(camera_id, policy.default_max_age_s)
        if max_age is None:
            continue
        after: tuple[float, int] | None = None
        while True:
            rows = q.segments_ended_before(conn, camera_id, now - max_age, after, page)
            if not rows:
                break
            for seg in rows:
                if not is_held(seg, held):
                    chosen[seg.id] = seg
            after = (rows[-1].start_at, rows[-1].id)

    # 2. Quota and free space, oldest first across cameras.
    freed = sum(s.bytes for s in chosen.values())
    need = 0
    if policy.quota_bytes is not None:
        need = max(need, q.total_bytes(conn) - freed - policy.quota_bytes)
    if policy.min_free_percent is not None and disk is not None:
        want_free = disk.total * policy.min_free_percent / 100
        need = max(need, int(want_free - disk.free - freed))
    after = None
    while need > 0:
        rows = q.oldest_segments(conn, after, page)
        if not rows:
            break
        for seg in rows:
            if seg.id in chosen or is_held(seg, held):
                continue
            chosen[seg.id] = seg
            need -= seg.bytes
            if need <= 0:
                break
        after = (rows[-1].start_at, rows[-1].id)
    if need > 0:
        log.warning("retention: %d bytes over the limit remain; everything left is held or gone", need)
    return sorted(chosen.values(), key=lambda s: (s.start_at, s.id))


def delete_files(recordings_dir: Path, segments: Iterable[Segment]) -> None:
    """Unlink segment files (missing ones are fine) and prune emptied day directories. Blocking."""
    # str paths, not pathlib: see Segmenter._root (every segment name is new; pathlib interns them).
    root = os.path.normpath(recordings_dir)
    dirs = set()
    for seg in segments:
        path = os.path.join(root, seg.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        dirs.add(os.path.dirname(path))
    for d in dirs:
        if os.path.normpath(d) == root:
            continue  # the root stays, with the 0700 mode the data dir gave it
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only succeeds when empty


def disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(usage.total, usage.free)


async def enforce(
    store: Store,
    recordings_dir: Path,
    policy: RetentionPolicy,
    holds: HoldSource = (),
    *,
    now: float | None = None,
    disk: Callable[[Path], DiskUsage] = disk_usage,
    batch: int = 500,
    on_batch: Callable[[list[Segment]], Awaitable[None]] | None = None,
    lock: asyncio.Lock | None = None,
) -> list[Segment]:
    """Select and delete what the policy says; returns the deleted segments, oldest first.

    Deletes in batches of `batch`; every batch re-checks holds first. `on_batch` (e.g. writing the
    `retention.deleted` audit entry) is awaited after each batch is gone from disk and index; the
    caller may instead audit the returned list once.

    `lock` is held from each batch's hold check until its index rows are gone: the lock the readers
    of held footage take (deliveries build under the consent service's `build_lock`). Without it a
    request that arrived after the check had its build read the index while the files went away
    (the 2-hour soak: one delivery of 412 failed on a missing segment). With it a build sees either
    the segment and its file, or neither.
    """
    recordings_dir = Path(recordings_dir)
    usage = await asyncio.to_thread(disk, recordings_dir) if policy.min_free_percent is not None else None
    hold_list = list(holds() if callable(holds) else holds)
    selected = await store.run(
        select_for_deletion, policy, hold_list, time.time() if now is None else now, usage
    )
    deleted: list[Segment] = []
    for i in range(0, len(selected), batch):
        async with lock or contextlib.nullcontext():
            # Re-read holds: one may have been placed since selection.
            held = _resolve(holds)
            chunk = [s for s in selected[i : i + batch] if not is_held(s, held)]
            await asyncio.to_thread(delete_files, recordings_dir, chunk)
            await store.run(q.delete_segments, [s.id for s in chunk])
        deleted.extend(chunk)
        if on_batch is not None and chunk:
            await on_batch(chunk)
    if deleted:
        log.info("retention: deleted %d segments, %d bytes", len(deleted), sum(s.bytes for s in deleted))
    return deleted
