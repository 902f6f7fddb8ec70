"""Owner live views belong to the owner session that opened them, and agencies never take the last
live slot (issue 12, PROTOCOL §1.1 and §2.4). The real daemon wiring (`running_hub`) with the
simulated camera; WebRTC over loopback ICE only; MJPEG over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from firmware_sim.camera import SimCamera
from hub.egress.whep_client import WhepError, WhepViewer
from tests.egress.conftest import owner_session, running_live_hub
from tests.egress.test_live_api import LiveHub, add_agency, live_grant, stop_time

MAX_SESSIONS = 3


@pytest.fixture
async def hub(sim: SimCamera, tmp_path: Path) -> AsyncIterator[LiveHub]:
    async with running_live_hub(sim, tmp_path, max_live_sessions=MAX_SESSIONS) as (services, owner):
        yield LiveHub(services.base_url, services, owner, sim.name)


async def login(hub: LiveHub, http: aiohttp.ClientSession, *, set_password: bool) -> dict[str, str]:
    return await owner_session(hub.url, hub.consent.hub_id, hub.owner, set_password=set_password)


def as_owner(headers: Mapping[str, str]):  # type: ignore[no-untyped-def]
    def sign(method: str, url: str, body: bytes, ctype: str | None) -> Mapping[str, str]:
        return dict(headers)

    return sign


async def test_owner_views_end_within_1s_of_logout_or_a_password_change(hub: LiveHub) -> None:
    whep = f"{hub.url}/api/v1/owner/cameras/{hub.camera}/whep"
    mjpeg = f"{hub.url}/api/v1/owner/cameras/{hub.camera}/mjpeg"
    # Cookies are sent by hand: one jar would mix the two browser sessions.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        first = await login(hub, http, set_password=True)
        viewer = WhepViewer()
        try:
            await viewer.connect(whep, http, sign=as_owner(first))
            await viewer.wait_frames(5, timeout=10)
            async with http.get(mjpeg, headers=first) as stream:
                assert stream.status == 200
                await stream.content.readuntil(b"\r\n\r\n")  # the first picture is on its way
                async with http.post(hub.url + "/api/v1/session/logout", headers=first) as resp:
                    assert resp.status == 204
                logged_out = time.time()
                last = await stop_time(viewer, quiet_s=1.0, limit_s=6)
                body_ended = await asyncio.wait_for(_drain(stream), 5)
            assert last < logged_out + 1.0, last - logged_out
            assert body_ended < logged_out + 1.5, body_ended - logged_out
        finally:
            await viewer.close()

        # A password change (any enrolled key may make one) ends every other browser's views too.
        second = await login(hub, http, set_password=False)
        viewer = WhepViewer()
        try:
            await viewer.connect(whep, http, sign=as_owner(second))
            await viewer.wait_frames(5, timeout=10)
            await login(hub, http, set_password=True)  # from another browser: ends all sessions
            changed = time.time()
            last = await stop_time(viewer, quiet_s=1.0, limit_s=6)
            assert last < changed + 1.0, last - changed
        finally:
            await viewer.close()
        # The ended session opens nothing new.
        with pytest.raises(WhepError) as err:
            again = WhepViewer()
            try:
                await again.connect(whep, http, sign=as_owner(second))
            finally:
                await again.close()
        assert err.value.status == 401


async def _drain(stream: aiohttp.ClientResponse) -> float:
    """Read until the server ends the response; returns when it did."""
    async for _ in stream.content.iter_any():
        pass
    return time.time()


async def test_agencies_never_take_the_owners_last_live_slot(hub: LiveHub, tmp_path: Path) -> None:
    pd = await add_agency(hub, tmp_path / "pd", "PD")
    _, url = await live_grant(hub, pd, seconds=60)
    viewers = [WhepViewer() for _ in range(MAX_SESSIONS)]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        try:
            for viewer in viewers[: MAX_SESSIONS - 1]:
                await viewer.connect(url, http, sign=pd.signer())
            with pytest.raises(WhepError) as err:
                await viewers[-1].connect(url, http, sign=pd.signer())
            assert err.value.status == 503
            owner = WhepViewer()
            try:
                await owner.connect(
                    f"{hub.url}/api/v1/owner/cameras/{hub.camera}/whep",
                    http,
                    sign=as_owner(await login(hub, http, set_password=True)),
                )
                await owner.wait_frames(3, timeout=10)
            finally:
                await owner.close()
        finally:
            for viewer in viewers:
                await viewer.close()
    rejected = [e for t, e in await hub.audit_types() if t == "request.rejected"]
    assert any(b'"code":"too_many_sessions"' in e for e in rejected)
