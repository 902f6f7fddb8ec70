"""The hub's ONVIF side (hub/onvif/) against the simulator's ONVIF (firmware_sim/onvif.py), in one
process on 127.0.0.1: WS-Discovery by unicast probes, stream URIs, pull-point events into the
event store, resubscription after the camera restarts, and hostile discovery answers."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.camera import SimCamera
from hub import redact
from hub.events.service import EventRecorder
from hub.onvif.device import OnvifError, read_streams
from hub.onvif.discovery import OnvifDiscovery
from hub.store import Store
from hub.store import events as events_q
from tests.firmware_sim.conftest import SMALL

USER, PASSWORD = "admin", "onvif-secret-9"
DEADLINE_S = 30.0


@pytest.fixture
async def cam() -> AsyncIterator[SimCamera]:
    async with SimCamera("door-1", user=USER, password=PASSWORD, onvif=True, wsd_port=0, **SMALL) as c:
        yield c


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "camhub.sqlite")
    try:
        yield s
    finally:
        await s.close()


async def _until(predicate: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_unicast_probe_lists_the_camera_never_adds_it(cam: SimCamera) -> None:
    assert cam.wsd is not None and cam.onvif is not None
    discovery = OnvifDiscovery(interval_s=1.0, targets=[f"127.0.0.1:{cam.wsd.port}"], interface="127.0.0.1")
    await discovery.start()
    try:
        found = await discovery.wait_for(lambda cs: bool(cs), DEADLINE_S)
    finally:
        await discovery.stop()
    (one,) = found
    assert one.uid == f"urn:uuid:{cam.onvif.device_uuid}"
    assert one.onvif_url == cam.onvif.base_url
    assert one.name == "door-1" and one.hardware == "camhub-sim doorbell"


async def test_hostile_discovery_answers_are_dropped(
    cam: SimCamera, caplog: pytest.LogCaptureFixture
) -> None:
    assert cam.wsd is not None
    discovery = OnvifDiscovery(interval_s=3600, targets=[f"127.0.0.1:{cam.wsd.port}"], interface="127.0.0.1")
    await discovery.start()
    try:
        assert discovery._transport is not None
        port = discovery._transport.get_extra_info("sockname")[1]
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b"<l>&b;&b;&b;</l>"
        )
        unsolicited = Path(__file__).with_name("probe_matches_unsolicited.xml").read_bytes()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            no_action = (
                b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>'
            )
            for datagram in (bomb, b"<not-xml", b"x" * 40_000, unsolicited, no_action):
                s.sendto(datagram, ("127.0.0.1", port))
        await _until(lambda: discovery.dropped >= 5, "the hostile datagrams to be dropped")
        # Only the real camera (which answered the probe sent at start) is listed.
        cams = await discovery.wait_for(lambda cs: len(cs) == 1, DEADLINE_S)
        assert cams[0].uid != "urn:uuid:evil" and "203.0.113.9" not in cams[0].onvif_url
        # None of it is a warning in the hub's log (a LAN host must not be able to fill the journal).
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
    finally:
        await discovery.stop()


async def test_stream_uris_are_read_and_a_wrong_password_is_refused(cam: SimCamera) -> None:
    assert cam.onvif is not None
    streams = await read_streams(cam.onvif.base_url, USER, PASSWORD)
    assert streams.main_url == cam.rtsp_url("main", with_credentials=False)
    assert streams.sub_url == cam.rtsp_url("sub", with_credentials=False)
    assert streams.model == cam.model
    redact.add_secrets(["wrong-password-77"])
    with pytest.raises(OnvifError) as err:
        await read_streams(cam.onvif.base_url, USER, "wrong-password-77")
    assert err.value.code == "onvif_unauthorized"
    assert "wrong-password-77" not in str(err.value)
    with pytest.raises(OnvifError) as err:
        await read_streams("http://127.0.0.1:9", USER, PASSWORD)  # nothing listens on the discard port
    assert err.value.code == "onvif_unreachable"


async def _events(store: Store, camera_id: str) -> list[events_q.Event]:
    return await store.run(lambda c: events_q.list_events(c, camera_id=camera_id, limit=50))


async def test_press_and_camera_motion_become_events_and_a_restart_is_resubscribed(
    cam: SimCamera, store: Store, tmp_path: Path
) -> None:
    assert cam.onvif is not None
    recorder = EventRecorder(
        "door",
        store,
        tmp_path,
        onvif_url=cam.onvif.base_url,
        onvif_credentials=(USER, PASSWORD),
        onvif_options={"pull_s": 1, "subscription_s": 10, "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
    )
    await recorder.start()
    try:
        listener = recorder.onvif
        assert listener is not None
        await asyncio.wait_for(listener.subscribed.wait(), DEADLINE_S)
        await cam.press()
        presses = await _until(lambda: _only(_events(store, "door"), "press"), "the press to be recorded")
        assert presses[0].source == "camera" and presses[0].end_at == presses[0].start_at

        # A visitor walks up: the camera's own motion (CellMotionDetector) starts and ends.
        await cam.visitor()
        motion = await _until(lambda: _ended_motion(store), "the camera's motion event to end")
        assert motion.source == "camera"

        # 10 s subscriptions renewed at 80 %: at least one Renew reaches the camera.
        await _until(lambda: listener.renewals >= 1, "a Renew")
        assert "Renew" in cam.onvif.calls

        # The camera reboots: its subscriptions are gone; the hub subscribes again by itself.
        before = listener.subscriptions
        await cam.fault("reboot", seconds=1)
        await _until(lambda: listener.subscriptions > before, "a new subscription")
        await asyncio.wait_for(listener.subscribed.wait(), DEADLINE_S)
        await cam.press()
        await _until(lambda: _count(_events(store, "door"), "press", 2), "the press after the reboot")
    finally:
        await recorder.stop()
    assert cam.onvif.subscriptions == {}, "stopping unsubscribes"


async def _only(rows: Any, kind: str) -> list[events_q.Event]:
    return [e for e in await rows if e.kind == kind]


async def _count(rows: Any, kind: str, n: int) -> bool:
    return len(await _only(rows, kind)) >= n


async def _ended_motion(store: Store) -> events_q.Event | None:
    for e in await _events(store, "door"):
        if e.kind == "motion" and e.end_at is not None:
            return e
    return None


def test_camera_soap_is_parsed_without_entities_and_with_lxml_limits() -> None:
    # What zeep does with every answer from an ONVIF camera, with the settings the hub leaves in force.
    import zeep.exceptions
    from onvif.settings import DEFAULT_SETTINGS
    from onvif.transport import ASYNC_TRANSPORT
    from zeep.loader import parse_xml

    import hub.onvif.device  # noqa: F401  (its import turns huge_tree back off)

    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<l>&b;&b;&b;</l>"
    )
    with pytest.raises(zeep.exceptions.Error):  # EntitiesForbidden
        parse_xml(bomb, ASYNC_TRANSPORT, settings=DEFAULT_SETTINGS)
    # onvif-zeep-async parses in recover mode (strict = False): past libxml2's limits the tree is cut
    # short instead of an error. Without huge_tree a 12 MB text node never reaches the hub whole.
    big = b"<a>" + b"x" * (12 * 1024 * 1024) + b"</a>"
    try:
        doc = parse_xml(big, ASYNC_TRANSPORT, settings=DEFAULT_SETTINGS)
    except zeep.exceptions.XMLSyntaxError:
        return
    assert len(doc.text or "") < 10_000_000


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda head, tail: head + tail,
            st.just(Path(__file__).with_name("probe_matches_unsolicited.xml").read_bytes()[:400]),
            st.binary(max_size=400),
        ),
    )
)
def test_any_datagram_is_dropped_or_read_never_raised(data: bytes) -> None:
    discovery = OnvifDiscovery(interval_s=60)
    discovery.datagram_received(data, ("127.0.0.1", 3702))  # must not raise, whatever it is
    assert discovery.cameras() == []  # nothing answers a probe the hub never sent


async def test_an_oversized_answer_is_refused() -> None:
    # A "camera" whose device service answers with 64 MiB: refused while read (the hub stops reading
    # and closes, so the camera cannot send it all), a typed error.
    from aiohttp import web

    from hub.onvif.device import MAX_ANSWER_BYTES, connect

    sent: list[int] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/soap+xml"})
        await response.prepare(request)
        head = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><!--'
        await response.write(head)
        for _ in range(64 * 16):
            try:
                await response.write(b"x" * 65536)
            except ConnectionError:
                break
            sent.append(65536)
        return response

    app = web.Application()
    app.router.add_post("/onvif/device_service", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(OnvifError) as err:
            camera = await connect(f"http://127.0.0.1:{port}", USER, PASSWORD)
            await camera.close()
        assert err.value.code == "onvif_bad_answer", err.value.detail
        assert str(MAX_ANSWER_BYTES) in err.value.detail
    finally:
        await runner.cleanup()
    assert sum(sent) < 32 * 1024 * 1024
