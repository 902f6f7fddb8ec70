"""Stills from a camera's relay (the owner's live view without WebRTC): keyframes only, one decode
shared by every viewer, nothing decoded once nobody asks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.ingest.relay import PacketRelay
from hub.ingest.snapshot import SnapshotError, SnapshotSource, decode_keyframe
from hub.ingest.source import MediaPacket
from tests.record.media import read_packets


def _jpeg_image(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


async def test_a_keyframe_decodes_to_a_jpeg_of_the_stream_size(clip_320: Path) -> None:
    _, packets = await read_packets(clip_320, 16)
    key = next(p for p in packets if p.is_keyframe)
    image = _jpeg_image(await asyncio.to_thread(decode_keyframe, key))
    assert image.shape == (240, 320, 3)
    # A packet that is not H.264 is a typed error, not a crash.
    assert key.params is not None
    garbage = dataclasses.replace(
        key,
        data=b"\x00\x00\x00\x01\x65" + b"\xff" * 64,
        params=dataclasses.replace(key.params, extradata=b""),
    )
    with pytest.raises(SnapshotError):
        await asyncio.to_thread(decode_keyframe, garbage)


async def _feed(relay: PacketRelay, packets: list[MediaPacket], seconds: float) -> None:
    """Publish the clip in a loop, ~60 packets a second, with increasing timestamps."""
    ends = time.monotonic() + seconds
    base, i = 0, 0
    while time.monotonic() < ends:
        p = packets[i % len(packets)]
        if i and i % len(packets) == 0:
            base += packets[-1].dts + 1
        relay.publish(dataclasses.replace(p, pts=p.pts + base, dts=p.dts + base, arrival=time.time()))
        i += 1
        await asyncio.sleep(1 / 60)


async def test_viewers_share_one_decode_and_decoding_stops_when_nobody_watches(clip_320: Path) -> None:
    _, packets = await read_packets(clip_320, 60)  # 4 s at 15 fps, a keyframe every 15 packets
    relay = PacketRelay("cam")
    source = SnapshotSource(relay, min_interval_s=0.5, idle_s=0.6)
    feeder = asyncio.create_task(_feed(relay, packets, 20))
    try:
        snaps = await asyncio.gather(*(source.get(timeout=10) for _ in range(5)))
        assert {s.seq for s in snaps} == {snaps[0].seq}
        assert source.decodes == 1, "five viewers at once cost one decode"
        first = snaps[0]
        # A later picture is a new decode of a later keyframe: the still changes over time.
        later = await source.get(newer_than=first.seq, timeout=10)
        assert later.seq > first.seq
        assert not np.array_equal(_jpeg_image(first.jpeg), _jpeg_image(later.jpeg))
        # Nobody asks any more: the subscription ends and decoding stops.
        deadline = time.monotonic() + 10
        while source.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not source.running
        assert relay.subscriber_count == 0
        decodes = source.decodes
        await asyncio.sleep(1.0)
        assert source.decodes == decodes
        # Asking again starts it again.
        await source.get(timeout=10)
        assert source.running
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await source.stop()


async def test_a_silent_camera_is_an_error_not_a_hang() -> None:
    relay = PacketRelay("cam")
    source = SnapshotSource(relay, idle_s=5)
    try:
        with pytest.raises(SnapshotError):
            await source.get(timeout=0.5)
        relay.close()
        with pytest.raises(SnapshotError):
            await source.get(timeout=5)
    finally:
        await source.stop()
