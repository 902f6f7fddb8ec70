"""Discovery over real mDNS on the loopback interface (multicast on lo works on these machines).

Other tests on the same machine may advertise `_rtsp._tcp` too, so every name here is unique and
assertions look only at the cameras this test published.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from hub.discovery import HUB_SERVICE, RTSP_SERVICE, Discovery

LO = ["127.0.0.1"]
DEADLINE_S = 15.0


@pytest.fixture
async def advertiser() -> AsyncIterator[AsyncZeroconf]:
    zc = AsyncZeroconf(interfaces=LO, ip_version=IPVersion.V4Only)
    try:
        yield zc
    finally:
        await zc.async_close()


@pytest.fixture
async def discovery() -> AsyncIterator[Discovery]:
    d = Discovery(interfaces=LO)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


def camera_info(instance: str, cam_id: str, address: str, port: int) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        RTSP_SERVICE,
        f"{instance}.{RTSP_SERVICE}",
        port=port,
        properties={
            "model": "camhub-sim",
            "path": "/sim-1/main",
            "events": f"http://{address}:8080/cameras/sim-1/events",
            "id": cam_id,
        },
        parsed_addresses=[address],
        server=f"{instance}.local.",
    )


async def test_browser_lists_advertised_camera(advertiser: AsyncZeroconf, discovery: Discovery) -> None:
    tag = uuid.uuid4().hex[:8]
    info = camera_info(f"door-{tag}", f"cam-{tag}", "127.0.0.1", 8554)
    await (await advertiser.async_register_service(info))

    cams = await discovery.wait_for(lambda cs: any(c.uid == f"cam-{tag}" for c in cs), DEADLINE_S)
    cam = next(c for c in cams if c.uid == f"cam-{tag}")
    assert cam.instance == f"door-{tag}"
    assert cam.host == "127.0.0.1"
    assert cam.port == 8554
    assert cam.model == "camhub-sim"
    assert cam.path == "/sim-1/main"
    assert cam.events_url == "http://127.0.0.1:8080/cameras/sim-1/events"
    assert cam.rtsp_url == "rtsp://127.0.0.1:8554/sim-1/main"

    # Withdrawn (goodbye packet, RFC 6762 §10.1) -> no longer listed.
    await (await advertiser.async_unregister_service(info))
    await discovery.wait_for(lambda cs: all(c.uid != f"cam-{tag}" for c in cs), DEADLINE_S)


async def test_camera_keeps_its_uid_when_its_address_changes(
    advertiser: AsyncZeroconf, discovery: Discovery
) -> None:
    tag = uuid.uuid4().hex[:8]
    uid = f"cam-{tag}"
    info = camera_info(f"door-{tag}", uid, "127.0.0.1", 8554)
    await (await advertiser.async_register_service(info))
    cams = await discovery.wait_for(lambda cs: any(c.uid == uid for c in cs), DEADLINE_S)
    first_seen = next(c for c in cams if c.uid == uid).first_seen

    # DHCP gave the camera a new address (127.0.0.2 is on lo too) and it restarted its server.
    moved = camera_info(f"door-{tag}", uid, "127.0.0.2", 9554)
    await (await advertiser.async_update_service(moved))
    cams = await discovery.wait_for(
        lambda cs: any(c.uid == uid and c.host == "127.0.0.2" and c.port == 9554 for c in cs), DEADLINE_S
    )
    mine = [c for c in cams if c.uid == uid]
    assert len(mine) == 1
    assert mine[0].first_seen == first_seen
    assert mine[0].rtsp_url == "rtsp://127.0.0.2:9554/sim-1/main"


async def test_uid_is_instance_name_without_txt_id(advertiser: AsyncZeroconf, discovery: Discovery) -> None:
    tag = uuid.uuid4().hex[:8]
    info = AsyncServiceInfo(
        RTSP_SERVICE,
        f"plain-{tag}.{RTSP_SERVICE}",
        port=554,
        properties={"path": "stream1"},
        parsed_addresses=["127.0.0.1"],
        server=f"plain-{tag}.local.",
    )
    await (await advertiser.async_register_service(info))
    cams = await discovery.wait_for(lambda cs: any(c.uid == f"plain-{tag}" for c in cs), DEADLINE_S)
    cam = next(c for c in cams if c.uid == f"plain-{tag}")
    assert cam.model is None and cam.events_url is None
    assert cam.rtsp_url == "rtsp://127.0.0.1:554/stream1"


async def test_hub_advertisement_is_browsable_with_hub_id(advertiser: AsyncZeroconf) -> None:
    hub_id = "Xy_" + uuid.uuid4().hex  # base64url-like, with a character DNS labels do not allow
    hub = Discovery(hub_id=hub_id, hub_port=8443, hub_name="Front Porch", interfaces=LO, browse=False)
    await hub.start()
    try:
        found: asyncio.Queue[str] = asyncio.Queue()

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is ServiceStateChange.Added:
                found.put_nowait(name)

        browser = AsyncServiceBrowser(advertiser.zeroconf, [HUB_SERVICE], handlers=[on_change])
        try:
            async with asyncio.timeout(DEADLINE_S):
                while (name := await found.get()) != hub.hub_service_name:
                    pass
            info = AsyncServiceInfo(HUB_SERVICE, name)
            assert await info.async_request(advertiser.zeroconf, 3000)
            assert info.properties[b"hub_id"] == hub_id.encode()
            assert info.properties[b"scheme"] == b"https"  # plain HTTP is loopback-only: not for the LAN
            assert info.port == 8443
            assert info.parsed_addresses() == ["127.0.0.1"]
            # The host name is the hub's name as a DNS label: https://front-porch.local resolves.
            assert info.server == "front-porch.local."
            assert name.startswith("front-porch-")
        finally:
            await browser.async_cancel()
    finally:
        await hub.stop()


def test_advertising_needs_id_and_port() -> None:
    with pytest.raises(ValueError, match="hub_id and hub_port"):
        Discovery(hub_id="abc")


async def test_finds_the_simulators_cameras(discovery: Discovery) -> None:
    from firmware_sim.camera import SimCamera

    name = f"sim-{uuid.uuid4().hex[:6]}"
    async with SimCamera(name, width=640, height=360, mdns=True, loop_s=1.0) as cam:
        cams = await discovery.wait_for(lambda cs: any(c.uid == name for c in cs), DEADLINE_S)
        found = next(c for c in cams if c.uid == name)
        assert found.rtsp_url == cam.rtsp_url("main", with_credentials=False)
        assert found.sub_url == cam.rtsp_url("sub", with_credentials=False)
        assert found.events_url == cam.events_url
        assert found.model == cam.model
