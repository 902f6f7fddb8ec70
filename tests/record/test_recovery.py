"""Crash recovery: kill -9 mid-segment, then salvage the partial segment and reconcile the index."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from hub.record.recovery import complete_fragments_end, recover
from hub.record.segmenter import hash_file
from hub.store import Store
from hub.store import segments as q
from tests.record.media import ffprobe, file_packets

ROOT = Path(__file__).resolve().parents[2]


def _indexed_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    except sqlite3.OperationalError:  # not created / not migrated yet
        return 0


def _leftover_parts(recordings: Path) -> list[Path]:
    return list(recordings.rglob("*.part"))


def _partial_with_fragment(recordings: Path) -> Path | None:
    for part in recordings.rglob("*.mp4.part"):
        try:
            if complete_fragments_end(part)[1] >= 1:
                return part
        except FileNotFoundError:
            continue
    return None


def _record_then_kill(media: Path, recordings: Path, db: Path) -> None:
    """Run the writer process until a segment is half written, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.record.crash_writer", str(media), str(recordings), str(db)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        part = None
        while time.monotonic() < deadline and proc.poll() is None:
            # Two finished segments, and a third in progress with at least one whole fragment.
            if _indexed_count(db) >= 2 and (part := _partial_with_fragment(recordings)) is not None:
                break
            time.sleep(0.02)
        assert part is not None, proc.stderr.read().decode() if proc.poll() is not None else "no partial"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


async def test_kill_9_mid_segment_then_recover(tmp_path: Path, clip_short_gop: Path) -> None:
    recordings, db = tmp_path / "media", tmp_path / "camhub.sqlite"
    await asyncio.to_thread(_record_then_kill, clip_short_gop, recordings, db)

    partials = _leftover_parts(recordings)
    assert partials  # the kill left the segment in progress behind
    store = await Store.open(db)
    try:
        before = await store.run(q.segments_between, "cam", 0, 1e12)
        assert len(before) >= 2
        outcomes = await recover(recordings, store)
        assert {o.path for o in outcomes} >= {
            str(p.relative_to(recordings)).removesuffix(".part") for p in partials
        }
        assert not _leftover_parts(recordings)
        after = await store.run(q.segments_between, "cam", 0, 1e12)
        # Every segment completed before the crash is intact and still indexed.
        for seg in before:
            assert seg in after
            assert hash_file(recordings / seg.path) == (seg.bytes, seg.sha256)
            assert ffprobe(recordings / seg.path).ok
        for o in outcomes:
            if o.action == "recovered":
                (row,) = [s for s in after if s.path == o.path]
                assert row.recovered and row.start_at >= before[-1].end_at - 1e-6
                probe = ffprobe(recordings / row.path)
                assert probe.ok, probe.stderr
                assert file_packets(recordings / row.path)[0].is_keyframe
                assert abs(probe.duration - row.duration_s) < 0.1
            else:
                assert o.action == "removed"
                assert not (recordings / o.path).exists()
        # The partial had a whole fragment when it was killed, so it must have been salvaged.
        assert "recovered" in {o.action for o in outcomes}
        assert (await store.run(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])) == "ok"
        # A second pass finds nothing to do.
        assert await recover(recordings, store) == []
    finally:
        await store.close()


async def test_partial_cut_mid_fragment_is_truncated(tmp_path: Path, store: Store, clip_320: Path) -> None:
    """A `.part` whose last fragment is cut short keeps only its whole fragments."""
    recordings = tmp_path / "media"
    day = recordings / "cam" / "2026-11-23"
    day.mkdir(parents=True)
    # A finished fragmented segment from the recorder's own writer, then damaged.
    from hub.record.segmenter import Segmenter
    from tests.record.media import fragments_per_gop, read_packets
    from tests.record.test_segmenter import _arrive, _write_all

    # Three 1 s GOPs (15 fps); a fragment at each keyframe and every FRAGMENT_S.
    two_gops = 2 * fragments_per_gop(15, 15)
    _, pkts = await read_packets(clip_320, 45)
    await _write_all(Segmenter("src", tmp_path / "src", store, segment_s=10), _arrive(pkts))
    (src,) = await store.run(q.segments_between, "src", 0, 1e12)
    await store.run(q.delete_segments, [src.id])  # only its file is used, as raw material
    good = tmp_path / "src" / src.path
    end = _fragment_ends(good)[two_gops - 1]
    part = day / "20261123T091500.000000Z.mp4.part"
    data = good.read_bytes()
    part.write_bytes(data[: end + 100])  # two GOPs of whole fragments (2 s) and the start of the next
    header_only = day / "20261123T091600.000000Z.mp4.part"
    header_only.write_bytes(data[: _fragment_ends(good)[0] - 50])  # not even one whole fragment

    outcomes = await recover(recordings, store)
    by_path = {o.path: o for o in outcomes}
    assert by_path["cam/2026-11-23/20261123T091500.000000Z.mp4"].action == "recovered"
    assert by_path["cam/2026-11-23/20261123T091600.000000Z.mp4"].action == "removed"
    (row,) = await store.run(q.segments_between, "cam", 0, 1e12)
    assert row.recovered and abs(row.duration_s - 2.0) < 1e-6
    assert row.start_at == datetime(2026, 11, 23, 9, 15, tzinfo=UTC).timestamp()  # from the file name
    assert ffprobe(recordings / row.path).frames == 30
    assert not header_only.exists()


def _fragment_ends(path: Path) -> list[int]:
    """Byte offsets after each moof+mdat pair."""
    data = path.read_bytes()
    ends, off, seen_moof = [], 0, False
    while off + 8 <= len(data):
        size = int.from_bytes(data[off : off + 4], "big")
        kind = data[off + 4 : off + 8]
        off += size
        if kind == b"moof":
            seen_moof = True
        elif kind == b"mdat" and seen_moof:
            ends.append(off)
    return ends


async def test_reconcile_index_with_disk(tmp_path: Path, store: Store, clip_320: Path) -> None:
    from hub.record.segmenter import Segmenter
    from tests.record.media import read_packets
    from tests.record.test_segmenter import _arrive, _write_all

    recordings = tmp_path / "media"
    _, pkts = await read_packets(clip_320, 60)
    await _write_all(Segmenter("cam", recordings, store, segment_s=1.0), _arrive(pkts))
    rows = await store.run(q.segments_between, "cam", 0, 1e12)
    assert len(rows) == 4
    gone, unindexed = rows[1], rows[2]
    os.unlink(recordings / gone.path)
    await store.run(q.delete_segments, [unindexed.id])

    outcomes = await recover(recordings, store)
    assert sorted((o.action, o.path) for o in outcomes) == sorted(
        [("missing", gone.path), ("indexed", unindexed.path)]
    )
    after = {r.path: r for r in await store.run(q.segments_between, "cam", 0, 1e12)}
    assert gone.path not in after
    again = after[unindexed.path]
    assert (again.start_at, again.sha256, again.bytes) == (
        unindexed.start_at,
        unindexed.sha256,
        unindexed.bytes,
    )
    assert abs(again.end_at - unindexed.end_at) < 1e-6
    (gap,) = await store.run(q.gaps_between, "cam", 0, 1e12)
    assert (gap.reason, gap.start_at, gap.end_at) == ("missing", gone.start_at, gone.end_at)
    shutil.rmtree(recordings)
    assert await recover(recordings, store) == []
