"""PacketRelay: viewers start at a keyframe, a slow viewer skips ahead without holding anyone back."""

from __future__ import annotations

import asyncio
import dataclasses
from fractions import Fraction

import pytest

from hub.ingest.relay import PacketRelay, RelayClosed, RelayHub
from hub.ingest.source import CodecParams, MediaPacket

TB = Fraction(1, 90_000)
PARAMS = CodecParams("h264", 640, 360, TB, b"")
GOP = 10


def packet(n: int, *, gop: int = GOP) -> MediaPacket:
    key = n % gop == 0
    return MediaPacket(
        data=b"\x00\x00\x00\x01" + bytes([0x65 if key else 0x41]) + n.to_bytes(4, "big"),
        pts=n * 6000,
        dts=n * 6000,
        time_base=TB,
        is_keyframe=key,
        arrival=1000.0 + n / 15,
        duration=6000,
        params=PARAMS,
    )


def seq(p: MediaPacket) -> int:
    return int.from_bytes(p.data[-4:], "big")


def drain(sub) -> list[int]:  # type: ignore[no-untyped-def]
    out = []
    while (p := sub.get_nowait()) is not None:
        out.append(seq(p))
    return out


async def test_late_subscriber_starts_at_the_cached_keyframe() -> None:
    relay = PacketRelay("cam")
    for n in range(25):  # keyframes at 0, 10, 20
        relay.publish(packet(n))
    sub = relay.subscribe()
    assert relay.cached_packets == 5
    assert drain(sub) == [20, 21, 22, 23, 24]
    relay.publish(packet(25))
    first = await asyncio.wait_for(sub.get(), 1)
    assert seq(first) == 25
    assert relay.params == PARAMS


async def test_subscriber_before_any_keyframe_waits_for_one() -> None:
    relay = PacketRelay("cam")
    sub = relay.subscribe()
    for n in range(5, 12):
        relay.publish(packet(n))
    assert drain(sub) == [10, 11]


async def test_slow_subscriber_skips_to_next_keyframe_without_blocking_others() -> None:
    relay = PacketRelay("cam", queue_packets=8)
    slow = relay.subscribe()
    fast = relay.subscribe()
    got_fast: list[int] = []
    for n in range(35):
        relay.publish(packet(n))  # never awaits: a full queue cannot block the publisher
        got_fast += drain(fast)
    assert got_fast == list(range(35))
    backlog = drain(slow)
    assert slow.skips >= 1
    # The slow viewer's backlog begins at a keyframe and is contiguous from there.
    assert backlog[0] % GOP == 0
    assert backlog == list(range(backlog[0], 35))
    assert len(backlog) <= slow.maxsize


async def test_cache_bound_falls_back_to_waiting_for_a_keyframe() -> None:
    relay = PacketRelay("cam", max_gop_packets=4)
    for n in range(8):
        relay.publish(packet(n))
    assert relay.cached_packets == 0
    sub = relay.subscribe()
    for n in range(8, 11):
        relay.publish(packet(n))
    assert drain(sub) == [10]


async def test_unsubscribe_and_close_end_subscribers() -> None:
    relay = PacketRelay("cam")
    a = relay.subscribe()
    b = relay.subscribe()
    waiter = asyncio.create_task(b.get())
    await asyncio.sleep(0)
    a.close()
    a.close()  # idempotent
    assert relay.subscriber_count == 1
    with pytest.raises(RelayClosed):
        await a.get()
    relay.close()
    with pytest.raises(RelayClosed):
        await asyncio.wait_for(waiter, 1)
    assert [p async for p in b] == []
    with pytest.raises(RelayClosed):
        relay.subscribe()
    relay.publish(packet(0))  # ignored after close
    assert relay.published == 0


async def test_a_break_makes_viewers_wait_for_the_next_keyframe() -> None:
    relay = PacketRelay("cam")
    for n in range(13):
        relay.publish(packet(n))
    sub = relay.subscribe()
    assert drain(sub) == [10, 11, 12]
    relay.mark_break()  # the source reconnected
    assert relay.cached_packets == 0
    for n in range(13, 22):
        relay.publish(packet(n))
    assert drain(sub) == [20, 21]
    # A discontinuity flagged on a P-frame does the same.
    relay.publish(dataclasses.replace(packet(22), discontinuity=True))
    relay.publish(packet(23))
    relay.publish(packet(30))
    assert drain(sub) == [30]
    assert sub.skips == 0  # waiting for a keyframe after a break is not falling behind
    # A new source run whose timestamps restart lower, mid-GOP, is a break too.
    relay.publish(packet(3))
    relay.publish(packet(10))
    assert drain(sub) == [10]


async def test_relay_hub_makes_one_relay_per_camera() -> None:
    hub = RelayHub()
    a = hub.add("front")
    assert hub.add("front") is a
    assert hub.get("back") is None
    hub.close()
    assert a.closed
    assert hub.get("front") is None


def test_relay_track_timestamps_stay_monotonic_across_restarts() -> None:
    from hub.egress.webrtc import DEFAULT_STEP, RelayTrack

    track = RelayTrack(PacketRelay("cam").subscribe())
    stamps = [track._timestamp(packet(n)) for n in (100, 101, 102)]
    stamps += [track._timestamp(packet(n)) for n in (0, 1)]  # the source restarted at 0
    stamps.append(track._timestamp(dataclasses.replace(packet(2), discontinuity=True, pts=10**9)))
    assert stamps[:3] == [0, 6000, 12000]
    assert stamps[3] == 12000 + DEFAULT_STEP and stamps[4] == stamps[3] + 6000
    assert stamps[5] == stamps[4] + DEFAULT_STEP
    track.stop()


async def test_demand_follows_the_first_and_last_viewer() -> None:
    relay = PacketRelay("cam")
    seen: list[bool] = []
    relay.set_demand_listener(seen.append)
    assert seen == [False]  # told the current state at once
    for n in range(5):
        relay.publish(packet(n))
    a = relay.subscribe()
    b = relay.subscribe()
    assert seen == [False, True]  # the first viewer only
    a.close()
    assert seen == [False, True]
    b.close()
    b.close()  # idempotent: no second "nobody watches"
    assert seen == [False, True, False]
    # With nobody watching the packets stop, so the cached GOP is stale: a new viewer starts at the
    # next keyframe (the source hands over its GOP in progress first), not at old pictures.
    assert relay.cached_packets == 0
    c = relay.subscribe()
    assert seen[-1] is True and c.get_nowait() is None
    relay.close()
    assert seen[-1] is False
