"""Fixtures for live media: loopback-only ICE, a simulated camera, and its relay fed over RTSP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from firmware_sim.camera import SimCamera
from hub.egress.ice import host_addresses
from hub.ingest.relay import PacketRelay, RelayHub
from hub.ingest.rtsp import RtspSource

SMALL = {"width": 640, "height": 360, "sub_width": 320, "sub_height": 180, "fps": 15, "gop": 15,
         "loop_s": 2.0, "visitor_s": 2.0}  # fmt: skip


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    # Only loopback traffic is allowed here; aioice skips 127.0.0.1 unless told otherwise.
    with host_addresses(["127.0.0.1"]):
        yield


@pytest.fixture
async def sim() -> AsyncIterator[SimCamera]:
    async with SimCamera("sim-live", **SMALL) as cam:  # type: ignore[arg-type]
        yield cam


async def pump(source: RtspSource, relay: PacketRelay) -> None:
    async for packet in source.packets():
        relay.publish(packet)


@pytest.fixture
def relays() -> Iterator[RelayHub]:
    hub = RelayHub()
    yield hub
    hub.close()


@pytest.fixture
async def relay(sim: SimCamera, relays: RelayHub) -> AsyncIterator[PacketRelay]:
    """The sim's main stream pulled over RTSP by the hub's source and published into a relay."""
    source = RtspSource(sim.name, sim.rtsp_url("main"))
    await source.open()
    relay = relays.add(sim.name)
    task = asyncio.create_task(pump(source, relay))
    try:
        async with asyncio.timeout(10):
            while relay.cached_packets == 0:
                await relay.wait_for_packet()
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
        relay.close()
