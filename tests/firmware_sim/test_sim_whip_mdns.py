"""WHIP publishing (RFC 9725) to a real aiortc receiver, and mDNS advertisement on loopback."""

from __future__ import annotations

import asyncio
import itertools
import socket
import uuid

import aiohttp
import aioice.ice
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from firmware_sim import stamp
from firmware_sim.camera import SimCamera
from firmware_sim.mdns import SERVICE_TYPE
from firmware_sim.whip import WhipError

from .conftest import SMALL

TOKEN = "s3cret"


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice skips 127.0.0.1 by default; this machine may only use loopback (MEDIA_NOTES).
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class WhipEndpoint:
    """A minimal WHIP ingest: one aiortc peer connection per POST, receiving the video."""

    def __init__(self) -> None:
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.tracks: asyncio.Queue = asyncio.Queue()
        self.deleted: list[str] = []
        self.offers: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/whip/{cam}", self.post)
        app.router.add_delete("/whip/{cam}/{id}", self.delete)
        return app

    async def post(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401)
        if request.content_type != "application/sdp":
            return web.Response(status=415)
        offer = await request.text()
        self.offers.append(offer)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sid = uuid.uuid4().hex
        self.pcs[sid] = pc
        pc.on("track", lambda track: self.tracks.put_nowait(track))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whip/{request.match_info['cam']}/{sid}"},
        )

    async def delete(self, request: web.Request) -> web.Response:
        pc = self.pcs.pop(request.match_info["id"], None)
        if pc is None:
            return web.Response(status=404)
        self.deleted.append(request.match_info["id"])
        await pc.close()
        return web.Response(status=200)

    async def close(self) -> None:
        for pc in self.pcs.values():
            await pc.close()


@pytest.fixture
async def whip_endpoint(loopback_ice: None):
    endpoint = WhipEndpoint()
    runner = web.AppRunner(endpoint.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield endpoint, f"http://127.0.0.1:{port}/whip/sim-1"
    finally:
        await endpoint.close()
        await runner.cleanup()


async def test_whip_publish_delivers_stamped_h264_and_delete_tears_down(
    camera: SimCamera, whip_endpoint
) -> None:
    endpoint, url = whip_endpoint
    publisher = await camera.publish_whip(url, token=TOKEN)
    try:
        assert "H264/90000" in endpoint.offers[0] and "VP8" not in endpoint.offers[0]
        assert publisher.resource_url is not None and publisher.resource_url.startswith(url + "/")
        async with asyncio.timeout(30):
            track = await endpoint.tracks.get()
            stamps = []
            while len(stamps) < 20:
                frame = await track.recv()  # decoded by the receiver's own H.264 decoder
                s = stamp.decode(frame.to_ndarray(format="bgr24"))
                assert s is not None and (frame.width, frame.height) == (640, 360)
                stamps.append(s.frame)
        assert all(b == (a + 1) % camera.loop_frames for a, b in itertools.pairwise(stamps))
    finally:
        await publisher.stop()
    assert len(endpoint.deleted) == 1 and not endpoint.pcs
    await publisher.stop()  # idempotent
    assert len(endpoint.deleted) == 1


async def test_whip_publish_through_the_control_api(camera: SimCamera, whip_endpoint) -> None:
    endpoint, url = whip_endpoint
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{camera.control_url}/whip", json={"url": url, "token": TOKEN, "stream": "sub"}
        ) as resp:
            assert resp.status == 201
            assert (await resp.json())["resource"].startswith(url + "/")
        async with asyncio.timeout(30):
            track = await endpoint.tracks.get()
            frame = await track.recv()
        assert (frame.width, frame.height) == (320, 180)
        async with http.post(f"{camera.control_url}/whip", json={"url": url, "token": "bad"}) as resp:
            assert resp.status == 502
        async with http.delete(f"{camera.control_url}/whip") as resp:
            assert resp.status == 200
    assert len(endpoint.deleted) == 1 and not endpoint.pcs


async def test_whip_wrong_token_is_an_error(camera: SimCamera, whip_endpoint) -> None:
    endpoint, url = whip_endpoint
    with pytest.raises(WhipError, match="401"):
        await camera.publish_whip(url, token="wrong")
    assert not endpoint.pcs


async def test_mdns_advertises_each_camera_on_loopback() -> None:
    async with SimCamera(mdns=True, **SMALL) as cam:
        browser = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            info = await browser.async_get_service_info(SERVICE_TYPE, f"sim-1.{SERVICE_TYPE}", timeout=5000)
            if info is None:
                if await _loopback_multicast_works(browser):
                    pytest.fail("mDNS works on loopback here, but the sim's service was not found")
                pytest.skip("multicast on loopback does not deliver here, so mDNS cannot be tested")
            assert info.port == cam.rtsp.port
            assert info.parsed_addresses() == ["127.0.0.1"]
            props = {k.decode(): v.decode() for k, v in info.properties.items() if v is not None}
            assert props["path"] == "/sim-1/main" and props["sub"] == "/sim-1/sub"
            assert props["events"] == cam.events_url and props["model"] == cam.model
        finally:
            await browser.async_close()


async def _loopback_multicast_works(browser: AsyncZeroconf) -> bool:
    """Control experiment independent of firmware_sim: register and resolve a service directly."""
    info = ServiceInfo(
        "_camhubtest._tcp.local.",
        "probe._camhubtest._tcp.local.",
        port=9,
        addresses=[socket.inet_aton("127.0.0.1")],
        server="probe.local.",
    )
    other = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        await other.async_register_service(info)
        found = await browser.async_get_service_info(info.type, info.name, timeout=3000)
        await other.async_unregister_service(info)
        return found is not None
    finally:
        await other.async_close()


async def test_no_mdns_by_default() -> None:
    async with SimCamera(**SMALL) as cam:
        assert cam.mdns is None
