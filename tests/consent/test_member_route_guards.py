"""PROTOCOL.md §1.2: a household member reaches only the cameras, and the kinds of media, the owner gave.

The hub of `test_api_route_guards.py` (a streaming camera with recordings, an event thumbnail, an
agency with a delivery and a live grant, the owner's and the agency's open live views), and three
members invited and joined through the real routes:

    live-a    front-door: live only
    rec-a     front-door: recordings only
    garage    garage: live and recordings (front-door, the camera with media, is not theirs)

Every route of the live router is declared (an undeclared one fails here too), and is called with
each member's session, its CSRF token and the real ids (the front-door segment, event and camera;
routes with `{camera_id}` also with the garage). What each member must get follows from the guard
table alone: an owner-session route is 403 `owner_only` with a bare `{"error", "detail"}` body; a
viewer route is media (for a media route on front-door) when the member has that right on that
camera, and 403 `not_permitted` when not; a route of another kind (agency, camera token, owner JWS,
pairing or invite code) refuses as it refuses anyone. No refused call answers media. Then: the camera
list shows each member only their cameras, a member's playback is in the view log with their id and
name, and the owner's live view still streams.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.api import guards, make_app
from hub.daemon import running_hub
from hub.egress.ice import host_addresses
from hub.egress.whep_client import WhepViewer
from tests.consent.test_api_route_guards import (
    CAMERA,
    DEADLINE_S,
    MEDIA_TYPES,
    SMALL,
    WHIP_CAMERA,
    Full,
    _config,
    _fill,
    _media_with_credentials,
    _offer,
    _session_id,
)

from firmware_sim.camera import SimCamera  # isort: skip

MEMBER_PASSWORD = "member password 1"
MEMBERS: dict[str, dict[str, dict[str, bool]]] = {
    "live-a": {CAMERA: {"live": True, "recordings": False}},
    "rec-a": {CAMERA: {"live": False, "recordings": True}},
    "garage": {WHIP_CAMERA: {"live": True, "recordings": True}},
}


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    with host_addresses(["127.0.0.1"]):  # MEDIA_NOTES: ICE on loopback only
        yield


class Member:
    def __init__(self, name: str, member_id: str, http: aiohttp.ClientSession, csrf: str) -> None:
        self.name, self.id, self.http, self.csrf = name, member_id, http, csrf
        self.rights = MEMBERS[name]

    def may(self, camera: str, right: str) -> bool:
        return self.rights.get(camera, {}).get(right, False)

    def headers(self, *_: Any) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


async def _invite_and_join(full: Full, name: str, http: aiohttp.ClientSession) -> Member:
    async with full.owner_http.post(
        full.url + "/api/v1/owner/members",
        json={"name": name, "rights": MEMBERS[name]},
        headers={"X-CSRF-Token": full.csrf},
    ) as r:
        assert r.status == 201, await r.text()
        invite = await r.json()
    assert invite["link"] == f"/#/join/{invite['code']}"
    join = {"code": invite["code"], "password": MEMBER_PASSWORD}
    async with http.post(full.url + "/api/v1/members/join", json=join) as r:
        assert r.status == 200, await r.text()
        csrf = (await r.json())["csrf"]
    async with http.get(full.url + "/api/v1/session") as r:
        session = await r.json()
    assert session["role"] == "member" and session["member"]["id"] == invite["id"], session
    return Member(name, invite["id"], http, csrf)


def _targets(full: Full, method: str, path: str) -> list[tuple[str, str | None]]:
    """(concrete path, the camera it names or None) for a route; {camera_id} routes for both cameras."""
    target = full.concrete(method, path)
    if path == "/api/v1/owner/timeline":
        return [(f"{target}?camera={cam}&start=0&end=4102444800", cam) for cam in (CAMERA, WHIP_CAMERA)]
    if "{camera_id}" in path and not path.startswith("/api/v1/cameras/"):
        return [(target, CAMERA), (target.replace(f"/{CAMERA}/", f"/{WHIP_CAMERA}/"), WHIP_CAMERA)]
    camera = CAMERA if path.startswith(("/api/v1/owner/segments/", "/api/v1/owner/events/{id}")) else None
    return [(target, camera)]


async def _sweep(full: Full, member: Member, routes: list[tuple[str, str]], offer: bytes) -> set[str]:
    """Call every route as `member`; returns the routes that answered media."""
    served: set[str] = set()
    for method, path in routes:
        declared = guards.guard_for(method, path)
        assert declared is not None
        if (method, path) == ("POST", "/api/v1/session/logout"):
            continue  # would end the session the sweep runs on; tested at the end
        for target, camera in _targets(full, method, path):
            right = guards.MEMBER_RIGHT.get(declared.guard)
            allowed = right is not None and camera is not None and member.may(camera, right)
            if allowed and path.endswith("/whep"):
                continue  # a WHEP offer that is accepted opens a view: proven with a real viewer below
            if allowed and declared.media and method == "HEAD":
                continue  # the GET is the proof; a HEAD of a stream would hold the connection open
            sdp = path.endswith(("/whep", "/whip")) or path == "/api/agency/v1/live/{grant_id}"
            body = offer if sdp and method == "POST" else b""
            headers = {**member.headers(), **({"Content-Type": "application/sdp"} if body else {})}
            async with member.http.request(method, full.url + target, data=body, headers=headers) as r:
                ctype = r.headers.get("Content-Type", "")
                content = await r.content.read(64 * 1024)  # bounded: an MJPEG stream never ends
            got = (member.name, method, target, r.status, ctype, content[:160])
            media = 200 <= r.status < 300 and bool(MEDIA_TYPES.match(ctype))
            if declared.guard is guards.Guard.PUBLIC:
                assert not media, got
                continue
            if declared.guard in (
                guards.Guard.SESSION,
                guards.Guard.VIEWER_LIVE,
                guards.Guard.VIEWER_RECORDINGS,
            ):
                if right is not None and not allowed:
                    _assert_refused(got, content, method, 403, "not_permitted")
                elif declared.media and camera == CAMERA:
                    assert r.status == 200 and media and content, got
                    served.add(path)
                else:  # allowed, but nothing to stream (the garage camera) or not a media route
                    assert r.status not in (401, 403) and not media, got
                continue
            assert not media, got
            if declared.guard is guards.Guard.OWNER_SESSION:
                _assert_refused(got, content, method, 403, "owner_only")
            elif declared.guard in (
                guards.Guard.AGENCY_SIGNATURE,
                guards.Guard.AGENCY_GATE,
                guards.Guard.CAMERA_TOKEN,
            ):
                _assert_refused(got, content, method, 401, None)
            else:  # owner JWS, pairing code, invite code: a session is no credential for these
                assert 400 <= r.status < 500, got
    return served


def _assert_refused(got: Any, content: bytes, method: str, status: int, code: str | None) -> None:
    assert got[3] == status and got[4].startswith("application/json"), got
    if method == "HEAD":
        assert not content, got
        return
    error = json.loads(content)
    assert set(error) == {"error", "detail"}, got  # nothing else of the route leaks
    if code is not None:
        assert error["error"] == code, got


async def test_members_reach_only_their_cameras_on_every_route(tmp_path: Path) -> None:
    async with SimCamera(CAMERA, **SMALL) as sim:  # type: ignore[arg-type]
        config = _config(tmp_path / "data", sim.rtsp_url("main"))
        async with (
            running_hub(config) as services,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as owner_http,
            aiohttp.ClientSession() as agency_http,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http_live,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http_rec,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http_garage,
        ):
            app = make_app(services)
            routes = sorted(
                {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
            )
            undeclared = [(m, p) for m, p in routes if guards.guard_for(m, p) is None]
            assert not undeclared, f"declare these routes in hub/api/guards.py: {undeclared}"
            # The wrapper each handler is mounted with is the one the table declares.
            for r in app.router.routes():
                if r.resource is None:
                    continue
                declared = guards.guard_for(r.method, r.resource.canonical)
                assert declared is not None
                mounted = getattr(r.handler, "guard", None)
                expected = declared.guard.value if declared.guard in guards.SESSION_GUARDS else None
                assert mounted == expected, (r.method, r.resource.canonical, mounted, declared)
            full = await _fill(services, tmp_path, owner_http, agency_http)
            member_viewer = WhepViewer()
            try:
                proven = await _media_with_credentials(full)  # the ids below are real: the owner gets media
                members = [
                    await _invite_and_join(full, "live-a", http_live),
                    await _invite_and_join(full, "rec-a", http_rec),
                    await _invite_and_join(full, "garage", http_garage),
                ]
                offer = (await _offer()).encode()
                served = {m.name: await _sweep(full, m, routes, offer) for m in members}
                media_paths = {p for m, p in proven}
                live_paths = {p for p in media_paths if guards.ROUTES.get(("GET", p), None) and guards.ROUTES[("GET", p)].guard is guards.Guard.VIEWER_LIVE}  # fmt: skip
                rec_paths = {p for p in media_paths if guards.ROUTES.get(("GET", p), None) and guards.ROUTES[("GET", p)].guard is guards.Guard.VIEWER_RECORDINGS}  # fmt: skip
                assert served["live-a"] == live_paths and live_paths, served
                assert served["rec-a"] == rec_paths and rec_paths, served
                assert served["garage"] == set(), served

                # WHEP: the live member gets frames; the others were refused in the sweep.
                live = members[0]
                await member_viewer.connect(
                    f"{full.url}/api/v1/owner/cameras/{CAMERA}/whep", live.http, sign=live.headers
                )
                await member_viewer.wait_frames(2, timeout=DEADLINE_S)
                # Another browser session's view is not theirs to end (404); their own is (200).
                owner_view = _session_id(full.owner_viewer)
                for m in members:
                    async with m.http.delete(
                        f"{full.url}/api/v1/owner/live/{owner_view}", headers=m.headers()
                    ) as r:
                        assert r.status == 404, (m.name, r.status, await r.text())
                async with live.http.delete(
                    f"{full.url}/api/v1/owner/live/{_session_id(member_viewer)}", headers=live.headers()
                ) as r:
                    assert r.status == 200, await r.text()
                await asyncio.wait_for(member_viewer.ended.wait(), DEADLINE_S)

                # The camera list: each member sees their cameras only, with their rights.
                for m in members:
                    async with m.http.get(full.url + "/api/v1/owner/cameras") as r:
                        listed = await r.json()
                    assert {c["id"]: c["rights"] for c in listed["cameras"]} == m.rights, (m.name, listed)
                    assert all(set(c) == {"id", "name", "status", "rights"} for c in listed["cameras"])
                    assert listed["discovered"] == []
                    assert set(listed["recorded"]) <= {c for c in m.rights if m.rights[c]["recordings"]}

                # Who watched what: rec-a's playback is in the view log, by id and name.
                query = "?types=view.playback,view.live.start,view.snapshot&limit=200"
                async with owner_http.get(full.url + "/api/v1/owner/audit/entries" + query) as r:
                    entries = [json.loads(e["entry"]) for e in (await r.json())["entries"]]
                rec = members[1]
                played = [
                    e for e in entries if e["type"] == "view.playback" and e["actor"] == f"member:{rec.id}"
                ]
                assert played and played[0]["data"]["who"] == f"member:{rec.id}", entries
                assert played[0]["data"]["name"] == "rec-a" and played[0]["data"]["camera"] == CAMERA
                assert re.match(r"^\d{4}-", played[0]["data"]["start"]) and played[0]["data"]["end"]
                looked = [
                    e for e in entries if e["actor"] == f"member:{live.id}" and e["type"] == "view.snapshot"
                ]
                assert looked and looked[0]["data"]["name"] == "live-a"
                assert not [e for e in entries if e["actor"] == f"member:{members[2].id}"]

                # Logout is a session route for members too.
                async with live.http.post(full.url + "/api/v1/session/logout", headers=live.headers()) as r:
                    assert r.status == 204, await r.text()
                async with live.http.get(f"{full.url}/api/v1/owner/cameras/{CAMERA}/snapshot.jpg") as r:
                    assert r.status == 401 and (await r.json())["error"] == "no_session"

                # Nothing the members asked for touched the owner's or the agency's live views.
                assert not full.owner_viewer.ended.is_set() and not full.agency_viewer.ended.is_set()
                before = full.owner_viewer.frame_count
                await full.owner_viewer.wait_frames(before + 2, timeout=DEADLINE_S)
            finally:
                await member_viewer.close()
                await full.owner_viewer.close()
                await full.agency_viewer.close()
