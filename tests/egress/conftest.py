"""Fixtures for live media: loopback-only ICE, a simulated camera, and its relay fed over RTSP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_sim.camera import SimCamera
from hub.config import parse
from hub.consent import owner_client, pairing
from hub.daemon import running_hub
from hub.egress.ice import host_addresses
from hub.ingest.relay import PacketRelay, RelayHub
from hub.ingest.rtsp import RtspSource
from hub.services import Services

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


@contextlib.asynccontextmanager
async def running_live_hub(
    sim: SimCamera, tmp_path: Path, **hub_keys: object
) -> AsyncIterator[tuple[Services, Ed25519PrivateKey]]:
    """The real daemon wiring (`running_hub`) recording and relaying the sim camera, once the camera
    is online, with an owner key enrolled by pairing code: (services, owner key)."""
    config = parse(
        {
            "hub": {"data_dir": str(tmp_path / "data"), "port": 0, **hub_keys},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "cameras": [{"id": sim.name, "url": sim.rtsp_url("main"), "motion": {"enabled": False}}],
        }
    )
    async with running_hub(config) as services:
        assert services.cameras is not None
        assert services.cameras.relays.get(sim.name) is not None
        # The relay gets packets only while someone watches; the camera is online once frames arrive.
        runtime = services.cameras.runtimes[sim.name]
        async with asyncio.timeout(15):
            while not runtime.online(time.time()):
                await asyncio.sleep(0.05)
        owner = Ed25519PrivateKey.generate()
        code = await services.store.run(pairing.issue)
        await asyncio.to_thread(owner_client.enroll_first, services.base_url, owner, code, "phone")
        yield services, owner


async def owner_session(
    base_url: str, hub_id: str, owner: Ed25519PrivateKey, *, set_password: bool
) -> dict[str, str]:
    """A new owner browser session: with `set_password`, onboarding (the password set with a proof
    signed by the owner's key); else a login with it. Returns the Cookie and X-CSRF-Token headers."""
    import aiohttp

    password = "a long owner passphrase"
    if set_password:
        path, body = (
            "/api/v1/session/password",
            {"password": password, "proof": owner_client.password_proof(owner, hub_id)},
        )
    else:
        path, body = "/api/v1/session/login", {"password": password}
    async with aiohttp.ClientSession() as http, http.post(base_url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        csrf = (await resp.json())["csrf"]
        cookie = resp.cookies["camhub_session"].value
    return {"Cookie": f"camhub_session={cookie}", "X-CSRF-Token": csrf}
