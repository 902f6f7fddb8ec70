"""Privacy masks on an agency's livestream (PROTOCOL §2.4, §4.1): the real daemon, the simulated
camera, an agency watching over aiortc on loopback.

Every frame the agency decodes must be black inside the masks and the camera's picture outside them
(compared with the camera's own frames, decoded from the hub's relay). The owner's view stays whole
unless `owner_views` is on; masks added while a stream runs end the unmasked stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_sim.camera import SimCamera
from hub.config import parse
from hub.consent import gate, owner_client, pairing
from hub.daemon import running_hub
from hub.egress.privacy import Masks
from hub.egress.webrtc import Audience, LiveSessions, SessionKind
from hub.egress.whep_client import WhepViewer
from tests.egress.privacy_frames import PICTURE_MAD, Planes, Regions, black_inside, mad_outside, planes
from tests.egress.test_live_api import LiveHub, add_agency, live_grant

# The door and a strip of the wall beside it (the sim's picture is never black there).
MASKS: Masks = (
    ((0.40, 0.15), (0.65, 0.15), (0.65, 0.80), (0.40, 0.80)),
    ((0.05, 0.05), (0.25, 0.05), (0.05, 0.40)),
)
# aiortc's encoder runs at ~1 Mbit/s: the picture comes back a little softer than a clip at crf 20.
LIVE_PICTURE_MAD = PICTURE_MAD * 2


async def _hub(sim: SimCamera, tmp_path: Path, privacy: dict[str, object]) -> AsyncIterator[LiveHub]:
    config = parse(
        {
            "hub": {"data_dir": str(tmp_path / "data"), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "cameras": [
                {
                    "id": sim.name,
                    "url": sim.rtsp_url("main"),
                    "motion": {"enabled": False},
                    "privacy": privacy,
                }
            ],
        }
    )
    async with running_hub(config) as services:
        assert services.cameras is not None
        runtime = services.cameras.runtimes[sim.name]
        async with asyncio.timeout(15):
            while not runtime.online(time.time()):
                await asyncio.sleep(0.05)
        owner = Ed25519PrivateKey.generate()
        code = await services.store.run(pairing.issue)
        await asyncio.to_thread(owner_client.enroll_first, services.base_url, owner, code, "phone")
        yield LiveHub(services.base_url, services, owner, sim.name)


@pytest.fixture
async def masked_hub(sim: SimCamera, tmp_path: Path) -> AsyncIterator[LiveHub]:
    masks = [[list(p) for p in poly] for poly in MASKS]
    async for hub in _hub(sim, tmp_path, {"masks": masks}):
        yield hub


async def camera_frames(hub: LiveHub, count: int) -> list[Planes]:
    """The camera's own picture: its packets from the hub's relay, decoded here."""
    assert hub.services.cameras is not None
    relay = hub.services.cameras.relays.get(hub.camera)
    assert relay is not None
    sub = relay.subscribe()
    decoder = av.CodecContext.create("h264", "r")
    out: list[Planes] = []
    try:
        async with asyncio.timeout(20):
            while len(out) < count:
                pkt = await sub.get()
                data = pkt.data
                if pkt.is_keyframe and pkt.params is not None and pkt.params.extradata:
                    data = pkt.params.extradata + data
                out += [planes(f) for f in decoder.decode(av.Packet(data))]
    finally:
        sub.close()
    return out


async def received(viewer: WhepViewer, count: int) -> list[Planes]:
    out: list[Planes] = []
    async with asyncio.timeout(30):
        while len(out) < count:
            item = await viewer.frames.get()
            assert isinstance(item.frame, av.VideoFrame)
            out.append(planes(item.frame))
    return out


def assert_masked(frames: list[Planes], reference: list[Planes]) -> None:
    h, w = reference[0].y.shape
    regions = Regions.of(MASKS, w, h)
    assert not any(black_inside(p, regions) for p in reference)  # or this test could not fail
    for i, p in enumerate(frames):
        assert p.y.shape == (h, w)
        assert black_inside(p, regions), f"frame {i}: a masked pixel is not black"
        best = min(mad_outside(p, r, regions) for r in reference)
        assert best <= LIVE_PICTURE_MAD, f"frame {i} is not the camera's picture ({best:.1f})"


async def test_agency_live_frames_are_black_in_the_masks(masked_hub: LiveHub, tmp_path: Path) -> None:
    agency = await add_agency(masked_hub, tmp_path / "agency", "PD")
    _, url = await live_grant(masked_hub, agency, seconds=30)
    # The sim loops a 2 s clip: two loops of its frames hold every picture the agency can get.
    reference = await camera_frames(masked_hub, 60)
    viewer = WhepViewer(max_frames=256)
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            frames = await received(viewer, 45)
        finally:
            await viewer.close()
    assert_masked(frames, reference)
    sessions = [e for t, e in await masked_hub.audit_types() if t == "egress.live.start"]
    assert b'"masked":true' in sessions[-1]


async def test_owner_view_is_whole_unless_owner_views(masked_hub: LiveHub) -> None:
    # The rule post_owner_whep and open_agency_live paint with: the owner sees the whole picture.
    services = masked_hub.services
    cam = masked_hub.camera
    assert gate.privacy_masks(services.config, cam, audience="owner") == ()
    assert gate.privacy_masks(services.config, cam, audience="agency") == MASKS


@pytest.fixture
async def owner_masked_hub(sim: SimCamera, tmp_path: Path) -> AsyncIterator[LiveHub]:
    masks = [[list(p) for p in poly] for poly in MASKS]
    async for hub in _hub(sim, tmp_path, {"masks": masks, "owner_views": True}):
        yield hub


async def test_owner_views_on_masks_the_owners_webrtc_view(owner_masked_hub: LiveHub) -> None:
    hub = owner_masked_hub
    assert hub.services.cameras is not None
    relay = hub.services.cameras.relays.get(hub.camera)
    assert relay is not None
    reference = await camera_frames(hub, 60)
    # The owner's session exactly as post_owner_whep opens it (the route needs a browser session).
    sessions = LiveSessions()
    viewer = WhepViewer(max_frames=256)
    try:
        session, answer = await sessions.open(
            camera_id=hub.camera,
            relay=relay,
            offer_sdp=await viewer.offer(),
            audience=Audience(SessionKind.OWNER, "owner"),
            masks=lambda: gate.privacy_masks(hub.services.config, hub.camera, audience="owner"),
        )
        assert session.masked
        await viewer.accept(answer)
        frames = await received(viewer, 30)
    finally:
        await viewer.close()
        await sessions.close_all()
    assert_masked(frames, reference)


@pytest.fixture
async def open_hub(sim: SimCamera, tmp_path: Path) -> AsyncIterator[LiveHub]:
    async for hub in _hub(sim, tmp_path, {}):
        yield hub


async def test_masks_drawn_mid_stream_end_the_unmasked_agency_stream(
    open_hub: LiveHub, tmp_path: Path
) -> None:
    from tests.egress.conftest import owner_session
    from tests.egress.test_owner_views import as_owner

    hub = open_hub
    agency = await add_agency(hub, tmp_path / "agency", "PD")
    _, url = await live_grant(hub, agency, seconds=60)
    reference = await camera_frames(hub, 60)
    owner = await owner_session(hub.url, hub.consent.hub_id, hub.owner, set_password=True)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        viewer, mine = WhepViewer(max_frames=256), WhepViewer()
        try:
            await viewer.connect(url, http, sign=agency.signer())
            await mine.connect(
                f"{hub.url}/api/v1/owner/cameras/{hub.camera}/whep", http, sign=as_owner(owner)
            )
            await viewer.wait_frames(5, timeout=15)
            await mine.wait_frames(5, timeout=15)
            masks = [[list(p) for p in poly] for poly in MASKS]
            path = f"{hub.url}/api/v1/owner/settings/privacy/{hub.camera}"
            async with http.put(path, json={"masks": masks}, headers=owner) as resp:
                assert resp.status == 200, await resp.text()
            # The agency's unmasked stream ends; the owner's own view (no owner_views) keeps running.
            async with asyncio.timeout(5):
                await viewer.ended.wait()
            seen = mine.frame_count
            await mine.wait_frames(seen + 5, timeout=10)
        finally:
            await viewer.close()
            await mine.close()
        again = WhepViewer(max_frames=256)
        try:
            await again.connect(url, http, sign=agency.signer())
            frames = await received(again, 30)
        finally:
            await again.close()
    assert_masked(frames, reference)
    ends = [e for t, e in await hub.audit_types() if t == "egress.live.end"]
    assert any(b"privacy masks changed" in e for e in ends)
    # The owner's own WebRTC view is audited too (who watched what, PROTOCOL §5).
    async with asyncio.timeout(10):
        while not any(t == "view.live.end" for t, _ in await hub.audit_types()):
            await asyncio.sleep(0.1)
    views = [(t, e) for t, e in await hub.audit_types() if t.startswith("view.live.")]
    assert [t for t, _ in views] == ["view.live.start", "view.live.end"]
    assert all(b'"via":"webrtc"' in e and b'"who":"owner"' in e for _, e in views)
