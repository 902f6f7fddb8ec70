"""Clip export: keyframe cut, covers the request with at most one GOP extra, stream copied."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.record.clip import NoFootage, SegmentCorrupt, export_clip
from hub.record.segmenter import Segmenter
from hub.store import Store
from hub.store import segments as q
from tests.record.media import ffprobe, file_packets, read_packets
from tests.record.test_segmenter import T0, _arrive, _write_all

FPS, GOP_S = 15, 1.0


@pytest.fixture
async def recorded(tmp_path: Path, store: Store, clip_320: Path) -> Path:
    """12 s of one camera in 4 s segments (keyframe every second), starting at T0."""
    _, pkts = await read_packets(clip_320, 12 * FPS)
    recordings = tmp_path / "media"
    await _write_all(Segmenter("cam", recordings, store, segment_s=4.0), _arrive(pkts))
    return recordings


@pytest.mark.parametrize(("start", "end"), [(2.5, 9.3), (0.0, 4.0), (4.2, 4.4), (11.5, 12.0)])
async def test_clip_covers_range_keyframe_cut(
    recorded: Path, store: Store, tmp_path: Path, start: float, end: float
) -> None:
    out = tmp_path / "clip.mp4"
    clip = await export_clip(recorded, store, "cam", T0 + start, T0 + end, out)
    assert clip.covers_request
    # At most one GOP extra at each end.
    assert 0 <= (T0 + start) - clip.start_at < GOP_S
    assert 0 <= clip.end_at - (T0 + end) <= GOP_S
    probe = ffprobe(out)
    assert probe.ok, probe.stderr
    assert abs(probe.duration - clip.duration_s) < 1 / FPS
    assert probe.frames == clip.packets == round(clip.duration_s * FPS)
    # Built from exactly the segments it lists, with their indexed hashes.
    rows = {r.path: r for r in await store.run(q.segments_between, "cam", 0, 1e12)}
    assert clip.segments and all(rows[s.path].sha256 == s.sha256 for s in clip.segments)
    assert clip.segments[0].start_at <= clip.start_at and clip.segments[-1].end_at >= clip.end_at

    # Stream copy: the clip's packets are byte-identical to the recording's for the same frames.
    recorded_pkts = []
    for s in clip.segments:
        for p in file_packets(recorded / s.path):
            wall = s.start_at + float(p.pts * p.time_base)
            if clip.start_at - 1e-6 <= wall < clip.end_at - 1e-6:
                recorded_pkts.append(p.data)
    clip_pkts = file_packets(out)
    assert [p.data for p in clip_pkts] == recorded_pkts
    assert clip_pkts[0].is_keyframe
    assert _extradata(out) == _extradata(recorded / clip.segments[0].path)


def _extradata(path: Path) -> bytes:
    import av

    with av.open(str(path)) as c:
        return bytes(c.streams.video[0].codec_context.extradata or b"")


async def test_no_footage(recorded: Path, store: Store, tmp_path: Path) -> None:
    with pytest.raises(NoFootage):
        await export_clip(recorded, store, "cam", T0 + 100, T0 + 110, tmp_path / "clip.mp4")
    with pytest.raises(NoFootage):
        await export_clip(recorded, store, "other", T0, T0 + 5, tmp_path / "clip.mp4")
    assert not await asyncio.to_thread((tmp_path / "clip.mp4").exists)


async def test_tampered_segment_is_refused(recorded: Path, store: Store, tmp_path: Path) -> None:
    rows = await store.run(q.segments_between, "cam", 0, 1e12)
    path = recorded / rows[1].path
    data = bytearray(await asyncio.to_thread(path.read_bytes))
    data[-10] ^= 0xFF
    await asyncio.to_thread(path.write_bytes, bytes(data))
    out = tmp_path / "clip.mp4"
    with pytest.raises(SegmentCorrupt):
        await export_clip(recorded, store, "cam", T0 + 1, T0 + 6, out)
    assert not await asyncio.to_thread(out.exists)
    assert not await asyncio.to_thread((tmp_path / "clip.mp4.part").exists)
