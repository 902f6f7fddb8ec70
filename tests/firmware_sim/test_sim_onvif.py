"""The simulator's ONVIF, checked with a client nobody here wrote: `onvif-zeep-async` (the library
Home Assistant's ONVIF integration uses), and WS-Discovery with the `WSDiscovery` package's
Probe. Everything on 127.0.0.1: unicast probes to the responder's own port, no multicast."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
import zeep.exceptions
from onvif import ONVIFCamera, ONVIFError
from wsdiscovery.actions.probe import constructProbe
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
from wsdiscovery.qname import QName

from firmware_sim.camera import SimCamera
from firmware_sim.onvif import TOPIC_VISITOR
from tests.firmware_sim.conftest import SMALL
from tests.firmware_sim.sim_client import read_frames

USER, PASSWORD = "admin", "camhub-onvif"
DEADLINE_S = 20.0


@pytest.fixture
async def onvif_camera() -> AsyncIterator[SimCamera]:
    async with SimCamera("sim-1", user=USER, password=PASSWORD, onvif=True, wsd_port=0, **SMALL) as cam:
        yield cam


async def _client(cam: SimCamera, password: str = PASSWORD) -> ONVIFCamera:
    assert cam.onvif is not None
    device = ONVIFCamera("127.0.0.1", cam.onvif.port, USER, password, no_cache=True)
    await device.update_xaddrs()
    return device


async def test_profiles_and_stream_uris_play(onvif_camera: SimCamera) -> None:
    device = await _client(onvif_camera)
    try:
        devicemgmt = await device.create_devicemgmt_service()
        info = await devicemgmt.GetDeviceInformation()
        assert info.Model == onvif_camera.model
        media = await device.create_media_service()
        profiles = await media.GetProfiles()
        assert [p.token for p in profiles] == ["main", "sub"]
        assert profiles[0].VideoEncoderConfiguration.Resolution.Width == 640
        assert profiles[1].VideoEncoderConfiguration.Resolution.Height == 180
        uris = {}
        for p in profiles:
            r = await media.GetStreamUri(
                {
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                    "ProfileToken": p.token,
                }
            )
            uris[p.token] = r.Uri
        assert uris["main"] == onvif_camera.rtsp_url("main", with_credentials=False)
        assert "@" not in uris["main"]  # the URI carries no credentials
    finally:
        await device.close()
    # The URI the camera gave actually plays (with the credentials added, as the hub does).
    parts = urlsplit(uris["sub"])
    url = parts._replace(netloc=f"{USER}:{PASSWORD}@{parts.netloc}").geturl()
    frames, _ = await asyncio.to_thread(read_frames, url, 5)
    assert len(frames) == 5 and (frames[0].width, frames[0].height) == (320, 180)


async def test_pull_point_delivers_a_press_as_visitor_and_renews(onvif_camera: SimCamera) -> None:
    device = await _client(onvif_camera)
    try:
        events = await device.create_events_service()
        result = await events.CreatePullPointSubscription({"InitialTerminationTime": "PT120S"})
        assert (result.TerminationTime - result.CurrentTime).total_seconds() == pytest.approx(120, abs=2)
        device.xaddrs["http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"] = (
            result.SubscriptionReference.Address._value_1
        )
        pullpoint = await device.create_pullpoint_service()
        subscription = await device.create_subscription_service("PullPointSubscription")
        # Nothing happened yet: an empty answer after the timeout.
        empty = await pullpoint.PullMessages({"Timeout": dt.timedelta(seconds=1), "MessageLimit": 10})
        assert not empty.NotificationMessage

        async def press_soon() -> None:
            await asyncio.sleep(0.3)
            await onvif_camera.press()

        presser = asyncio.create_task(press_soon())
        got = await pullpoint.PullMessages({"Timeout": dt.timedelta(seconds=10), "MessageLimit": 10})
        await presser
        assert len(got.NotificationMessage) == 1
        msg = got.NotificationMessage[0]
        assert msg.Topic._value_1 == TOPIC_VISITOR
        item = msg.Message._value_1.Data.SimpleItem[0]
        assert (item.Name, item.Value) == ("State", "true")

        renewed = await subscription.Renew({"TerminationTime": "PT300S"})
        assert (renewed.TerminationTime - renewed.CurrentTime).total_seconds() == pytest.approx(300, abs=2)
        await subscription.Unsubscribe()
        assert onvif_camera.onvif is not None and onvif_camera.onvif.subscriptions == {}
        # Gone: pulling again is a fault (a client must subscribe again, as after a reboot).
        with pytest.raises(zeep.exceptions.Fault):
            await pullpoint.PullMessages({"Timeout": dt.timedelta(seconds=1), "MessageLimit": 10})
    finally:
        await device.close()


async def test_the_library_pullpoint_manager_works_against_the_sim(onvif_camera: SimCamera) -> None:
    # The manager Home Assistant uses (subscribe, SetSynchronizationPoint, renew timer).
    device = await _client(onvif_camera)
    try:
        manager = await device.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        await manager.set_synchronization_point()
        service = manager.get_service()
        await onvif_camera.press()
        got = await service.PullMessages({"Timeout": dt.timedelta(seconds=5), "MessageLimit": 10})
        assert [m.Topic._value_1 for m in got.NotificationMessage] == [TOPIC_VISITOR]
        await manager.shutdown()
    finally:
        await device.close()


async def test_bad_password_is_refused_with_a_soap_fault(onvif_camera: SimCamera) -> None:
    with pytest.raises((zeep.exceptions.Fault, ONVIFError)) as err:
        await _client(onvif_camera, password="wrong-password")
    assert "not authorized" in str(err.value).lower()
    # And a request with no token at all, for an operation that needs one.
    assert onvif_camera.onvif is not None
    body = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        '<GetProfiles xmlns="http://www.onvif.org/ver10/media/wsdl"/></s:Body></s:Envelope>'
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{onvif_camera.onvif.base_url}/onvif/media_service", data=body) as resp:
            assert resp.status == 400
            assert "ter:NotAuthorized" in await resp.text()
        # A DTD (entity expansion) is refused, not parsed.
        bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
        async with session.post(onvif_camera.onvif.device_url, data=bomb) as resp:
            assert resp.status == 400
        # Bodies are bounded (64 KiB) before any parsing.
        async with session.post(onvif_camera.onvif.device_url, data=b"<" + b"x" * 100_000) as resp:
            assert resp.status == 413


def _token_envelope(password: str, created: str, nonce: bytes) -> str:
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    return (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsse="{wsse}" xmlns:wsu="{wsu}">'
        f"<s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>{USER}</wsse:Username>"
        f'<wsse:Password Type="{wsse[: -len("wssecurity-secext-1.0.xsd")]}username-token-profile-1.0#PasswordDigest">'
        f"{digest}</wsse:Password><wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>"
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>"
        '<s:Body><GetProfiles xmlns="http://www.onvif.org/ver10/media/wsdl"/></s:Body></s:Envelope>'
    )


async def test_replayed_or_stale_token_is_refused(onvif_camera: SimCamera) -> None:
    assert onvif_camera.onvif is not None
    url = f"{onvif_camera.onvif.base_url}/onvif/media_service"
    now = dt.datetime.now(dt.UTC)
    fresh = _token_envelope(PASSWORD, now.strftime("%Y-%m-%dT%H:%M:%SZ"), os.urandom(16))
    stale = _token_envelope(
        PASSWORD, (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), os.urandom(16)
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=fresh) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(url, data=fresh) as resp:  # the same nonce again: a replay
            assert resp.status == 400 and "ter:NotAuthorized" in await resp.text()
        async with session.post(url, data=stale) as resp:  # Created an hour ago
            assert resp.status == 400 and "ter:NotAuthorized" in await resp.text()


async def test_ws_discovery_probe_is_answered(onvif_camera: SimCamera) -> None:
    assert onvif_camera.wsd is not None and onvif_camera.onvif is not None
    probe = constructProbe(
        [QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")], []
    )
    data = createSOAPMessage(probe).encode()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        await loop.sock_sendto(sock, data, ("127.0.0.1", onvif_camera.wsd.port))
        async with asyncio.timeout(DEADLINE_S):
            reply, _ = await loop.sock_recvfrom(sock, 65536)
    finally:
        sock.close()
    env = parseSOAPMessage(reply, "127.0.0.1")
    assert env is not None and env.getRelatesTo() == probe.getMessageId()
    (match,) = env.getProbeResolveMatches()
    assert match.getXAddrs() == [onvif_camera.onvif.device_url]
    assert match.getEPR() == f"urn:uuid:{onvif_camera.onvif.device_uuid}"
    assert any(str(s.getValue()).endswith("/name/sim-1") for s in match.getScopes())
