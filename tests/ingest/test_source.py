"""The source contract's helpers: timestamp fixing and parameter-set detection."""

from __future__ import annotations

import asyncio
import itertools
import threading
from fractions import Fraction
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hub.ingest.rtsp import FileSource
from hub.ingest.source import MediaPacket, TimestampFixer, has_parameter_sets

TB = Fraction(1, 90000)
PERIOD = 6000  # 15 fps at 90 kHz


def test_first_packet_without_timestamps_gets_one() -> None:
    """FFmpeg's RTSP demuxer returns the first IDR with pts=dts=None: keep it, stamp it."""
    fix = TimestampFixer(TB, default_fps=15)
    assert fix.fix(None, None, 0) == (0, 0, False)
    assert fix.fix(6000, 6000, 0) == (6000, 6000, False)
    assert fix.fix(None, None, 0) == (12000, 12000, False)
    assert fix.fixed == 2


def test_small_regression_is_nudged_large_jump_flagged() -> None:
    fix = TimestampFixer(TB, max_jump_s=2.0)
    fix.fix(0, 0, PERIOD)
    assert fix.fix(PERIOD, PERIOD, PERIOD) == (PERIOD, PERIOD, False)
    assert fix.fix(PERIOD, PERIOD, PERIOD) == (PERIOD + 1, PERIOD + 1, False)  # repeated dts
    assert fix.fix(PERIOD - 100, PERIOD - 100, PERIOD) == (PERIOD + 2, PERIOD + 2, False)
    jump = PERIOD + 10 * 90000
    assert fix.fix(jump, jump, PERIOD) == (jump, jump, True)
    assert fix.fix(0, 0, PERIOD) == (0, 0, True)  # camera reboot: timestamps restart


@given(st.lists(st.one_of(st.none(), st.integers(-(10**6), 10**9)), min_size=1, max_size=200))
def test_dts_strictly_increases_within_a_run(stamps: list[int | None]) -> None:
    fix = TimestampFixer(TB, max_jump_s=2.0)
    last = None
    for s in stamps:
        pts, dts, disc = fix.fix(s, s, 0)
        assert pts >= dts
        if last is not None and not disc:
            assert dts > last
        last = dts


def test_parameter_set_detection() -> None:
    sps, pps, idr = b"\x67\x42\xc0\x0c", b"\x68\xce\x0f\xc8", b"\x65\x88\x84"
    assert has_parameter_sets(
        b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x01" + idr, "h264"
    )
    assert not has_parameter_sets(b"\x00\x00\x00\x01" + idr, "h264")
    hevc_vps = bytes([32 << 1, 1])
    assert has_parameter_sets(b"\x00\x00\x00\x01" + hevc_vps, "hevc")
    assert not has_parameter_sets(b"\x00\x00\x00\x01" + hevc_vps, "h264")


async def test_file_source_loops_without_discontinuity(clip_320: Path) -> None:
    src = FileSource("cam", clip_320, realtime=False, loop_input=True)
    params = await src.open()
    assert (params.codec, params.width, params.height) == ("h264", 320, 240)
    dts = []
    try:
        async for pkt in src.packets():
            assert not pkt.discontinuity
            assert pkt.data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))  # Annex B
            dts.append(pkt.dts)
            if len(dts) == 150:  # 10 s from a 4 s file
                break
    finally:
        await src.close()
    steps = {b - a for a, b in itertools.pairwise(dts)}
    assert len(steps) == 1 and steps.pop() > 0


async def test_demand_gates_the_loop_but_not_the_sink(clip_320: Path) -> None:
    """While nobody wants packets the reader thread still feeds its sink (the recorder) but hands the
    loop nothing; once wanted, the loop gets the GOP in progress from its keyframe, then every packet."""
    demand = threading.Event()
    sunk: list[int] = []
    src = FileSource("cam", clip_320, realtime=True, loop_input=True)
    assert src.set_sink(lambda p: sunk.append(p.dts), queue_packets=True)
    src.set_demand(demand)
    await src.open()
    got: list[MediaPacket] = []

    async def consume() -> None:
        async for pkt in src.packets():
            got.append(pkt)
            if len(got) == 30:
                return

    try:
        task = asyncio.create_task(consume())
        await asyncio.sleep(1.5)  # 1.5 s at 15 fps with a keyframe every second
        assert not got and len(sunk) >= 10
        assert src.last_arrival is not None  # the camera's status still sees frames
        demand.set()
        await asyncio.wait_for(task, 10)
    finally:
        await src.close()
    assert got[0].is_keyframe
    dts = [p.dts for p in got]
    assert dts == sorted(set(dts)) and dts[0] < sunk[-1]  # held packets first, none twice
    # Contiguous: exactly the packets the sink got from that keyframe on.
    start = sunk.index(dts[0])
    assert dts == sunk[start : start + len(dts)]


async def test_the_sink_gets_the_demuxers_packet_and_the_loop_only_the_bytes(clip_320: Path) -> None:
    """The recorder (the sink) may mux the demuxer's own packet instead of a copy (issue 17); what
    then waits for the loop or a viewer must not keep that second copy of the frame alive."""
    sunk: list[tuple[bool, bool]] = []
    src = FileSource("cam", clip_320, realtime=False)
    assert src.set_sink(
        lambda p: sunk.append(
            (p.av_packet is not None, p.av_packet is not None and bytes(p.av_packet) == p.data)
        ),
        queue_packets=True,
    )
    await src.open()
    got: list[MediaPacket] = []
    try:
        async for pkt in src.packets():
            got.append(pkt)
            if len(got) == 20:
                break
    finally:
        await src.close()
    assert len(sunk) >= 20 and all(has and same for has, same in sunk)
    assert all(p.av_packet is None for p in got)
