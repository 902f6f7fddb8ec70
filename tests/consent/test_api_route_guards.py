"""PROTOCOL.md §4: no route returns media unless it is behind an owner session or the egress gate.

The declared table (`hub/api/guards.py`) is checked against the live router: every route must be
declared, every media route must have a media guard, and the gate's docstring must name every media
route that reaches it.

Then the sweep, on a hub that has something to leak: a streaming camera (the simulator over RTSP),
recorded segments, an event thumbnail, a built delivery, a live grant and open live sessions of the
owner and of the agency. First every media route is called *with* its credentials and must answer
with media — that proves each id below is real, so the refusals that follow come from the guard and
not from a 404. Then every route of the router is called without credentials, with those real ids
and the same bodies (a real SDP offer for the WHEP routes), and must answer with its guard's refusal
(owner session: 401 `no_session`; agency signature: 401; camera token: 401; owner JWS and pairing
code: a 4xx error) as a JSON error body: no media byte. Removing `require_owner` from any owner
route, or the signature check from any agency route, fails this test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from firmware_sim.camera import SimCamera
from hub import config as config_mod
from hub.agency_client import Agency, keygen
from hub.api import guards, make_app
from hub.api.session import hash_password
from hub.consent import gate, owner_client, pairing
from hub.daemon import running_hub
from hub.egress.ice import host_addresses
from hub.egress.whep_client import WhepViewer
from hub.services import Services
from hub.store import events as events_q
from hub.store import web as web_q
from tests.web.media import jpeg

CAMERA = "front-door"
WHIP_CAMERA = "garage"  # a camera that pushes over WHIP: the /whip routes' real id
PASSWORD = "correct horse battery"
SMALL = {"width": 640, "height": 360, "sub_width": 320, "sub_height": 180, "fps": 15, "gop": 15,
         "loop_s": 2.0, "visitor_s": 2.0}  # fmt: skip
MEDIA_TYPES = re.compile(
    r"^(video/|image/|audio/|multipart/x-mixed-replace|application/sdp|"
    r"application/vnd\.camhub\.delivery\+age|application/octet-stream)"
)
# What a route answers without credentials, by guard: (status, error code or None for "any").
REFUSAL: dict[guards.Guard, tuple[set[int], str | None]] = {
    guards.Guard.OWNER_SESSION: ({401}, "no_session"),
    guards.Guard.SESSION: ({401}, "no_session"),
    guards.Guard.VIEWER_LIVE: ({401}, "no_session"),
    guards.Guard.VIEWER_RECORDINGS: ({401}, "no_session"),
    guards.Guard.INVITE_CODE: (set(range(400, 500)), None),
    guards.Guard.AGENCY_SIGNATURE: ({401}, None),
    guards.Guard.AGENCY_GATE: ({401}, None),
    guards.Guard.CAMERA_TOKEN: ({401}, None),
    guards.Guard.OWNER_JWS: (set(range(400, 500)), None),
    guards.Guard.PAIRING_CODE: (set(range(400, 500)), None),
}
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    # MEDIA_NOTES: ICE on loopback only, never another interface.
    with host_addresses(["127.0.0.1"]):
        yield


def _config(data_dir: Path, rtsp_url: str) -> config_mod.Config:
    return config_mod.parse(
        {
            "hub": {"data_dir": str(data_dir), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "storage": {"segment_seconds": 1},
            "cameras": [
                {"id": CAMERA, "url": rtsp_url, "motion": {"enabled": False}},
                {"id": WHIP_CAMERA, "url": "whip", "whip_token": "t" * 32, "motion": {"enabled": False}},
            ],
        }
    )


@dataclass
class Full:
    """A hub with media behind every media route, and the real ids to ask for it."""

    services: Services
    owner_http: aiohttp.ClientSession
    agency_http: aiohttp.ClientSession
    csrf: str
    agency: Agency
    segment_id: int
    event_id: str
    request_id: str
    delivery_url: str
    live_url: str
    owner_viewer: WhepViewer
    agency_viewer: WhepViewer
    owner_kid: str
    push_subscription_id: str = ""
    member_id: str = ""

    @property
    def url(self) -> str:
        return self.services.base_url

    def owner_headers(self, method: str, url: str, body: bytes, ctype: str | None) -> Mapping[str, str]:
        return {"X-CSRF-Token": self.csrf}

    def agency_headers(self, method: str, url: str, body: bytes, ctype: str | None) -> Mapping[str, str]:
        return self.agency.sign_headers(method, url, body, ctype)

    def concrete(self, method: str, path: str) -> str:
        """The route's path with the real id of each parameter."""
        owner_session = _session_id(self.owner_viewer)
        agency_session = _session_id(self.agency_viewer)
        values = {
            "/api/v1/owner/segments/{id}.mp4": {"id": str(self.segment_id)},
            "/api/v1/owner/segments/{id}/h264.mp4": {"id": str(self.segment_id)},
            "/api/v1/owner/events/{id}.jpg": {"id": self.event_id},
            "/api/agency/v1/requests/{id}": {"id": self.request_id},
            "/api/agency/v1/deliveries/{id}": {"id": self.delivery_url.rsplit("/", 1)[-1]},
            "/api/agency/v1/live/{grant_id}/{session_id}": {
                "grant_id": _grant_id(self.live_url),
                "session_id": agency_session,
            },
            "/api/v1/owner/live/{session_id}": {"session_id": owner_session},
            "/api/v1/owner/devices/{kid}/revoke-preview": {"kid": self.owner_kid},
            "/api/v1/owner/push/subscriptions/{sub_id}": {"sub_id": self.push_subscription_id},
            "/api/v1/owner/members/{member_id}": {"member_id": self.member_id},
            "/api/v1/cameras/{camera_id}/whip": {"camera_id": WHIP_CAMERA},
            "/api/v1/cameras/{camera_id}/whip/{session_id}": {
                "camera_id": WHIP_CAMERA,
                "session_id": owner_session,
            },
        }.get(path, {})
        defaults = {"camera_id": CAMERA, "grant_id": _grant_id(self.live_url)}

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            value = values.get(name) or defaults.get(name)
            assert value is not None, f"no real id for {{{name}}} in {method} {path}: add one to the sweep"
            return value

        concrete = re.sub(r"\{([^}]+)\}", fill, path)
        return "/ui/index.html" if concrete == "/ui" else concrete


def _grant_id(live_url: str) -> str:
    return urlsplit(live_url).path.rsplit("/", 1)[-1]


def _session_id(viewer: WhepViewer) -> str:
    assert viewer.resource_url is not None
    return urlsplit(viewer.resource_url).path.rsplit("/", 1)[-1]


async def _until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        await asyncio.sleep(0.1)


async def _fill(
    services: Services, tmp: Path, owner_http: aiohttp.ClientSession, agency_http: aiohttp.ClientSession
) -> Full:
    url = services.base_url
    # The owner: first key with the pairing code, a password, a session.
    owner = Ed25519PrivateKey.generate()
    code = await services.store.run(pairing.issue)
    await asyncio.to_thread(owner_client.enroll_first, url, owner, code, "phone")
    encoded = await asyncio.to_thread(hash_password, PASSWORD, log_n=12)
    await services.store.run(web_q.set_password_if_unset, encoded, time.time())
    async with owner_http.post(url + "/api/v1/session/login", json={"password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        csrf = (await r.json())["csrf"]

    # Recorded segments (the hub records the simulator) and an event with its thumbnail.
    async def segments() -> list[dict[str, Any]]:
        now = time.time()
        query = f"?camera={CAMERA}&start={now - 600}&end={now + 60}"
        async with owner_http.get(url + "/api/v1/owner/timeline" + query) as r:
            assert r.status == 200, await r.text()
            found = (await r.json())["segments"]
        return found if len(found) >= 3 else []

    recorded = await _until(segments, "three recorded segments")
    thumbnail = "events/front-door/day/ev-guard.jpg"
    path = services.config.hub.data_dir / thumbnail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(0))
    start = recorded[0]["start"]
    event = events_q.Event("ev-guard", CAMERA, "motion", start, start + 1, 0.5, thumbnail, time.time())
    await services.store.run(events_q.insert_event, event)

    # A trusted agency with a fulfilled clip request and an open live grant.
    info = await asyncio.to_thread(keygen, tmp / "agency")
    await asyncio.to_thread(
        owner_client.decide,
        url,
        owner,
        {
            "decision": "add-agency",
            "subject": {"name": "PD", "sig_jwk": info["sig_jwk"], "recipient": info["recipient"]},
        },
    )
    agency = Agency(tmp / "agency", url)
    common = {"case_id": "2026-1", "reason": "test", "contact": "Det. Test",
              "legal_basis": {"type": "consent", "reference": None}}  # fmt: skip
    # The open run's last segment may end a frame or so after now (frames are stamped at capture and a
    # segment's end adds the last one's duration): a request may not reach past the hub's clock.
    span = (rfc3339.format(recorded[0]["start"]), rfc3339.format(min(recorded[-1]["end"], time.time() - 1)))
    clip = await asyncio.to_thread(
        agency.request,
        {
            **common,
            "kind": "clip",
            "cameras": [CAMERA],
            "start": span[0],
            "end": span[1],
            "live_max_seconds": None,
        },
    )
    live = await asyncio.to_thread(
        agency.request,
        {**common, "kind": "live", "cameras": [CAMERA], "start": None, "end": None, "live_max_seconds": 600},
    )
    not_after = rfc3339.format(int(time.time()) + 3600)
    for made, scope in (
        (
            clip,
            {"kind": "clip", "cameras": [CAMERA], "start": span[0], "end": span[1], "live_max_seconds": None},
        ),
        (live, {"kind": "live", "cameras": [CAMERA], "start": None, "end": None, "live_max_seconds": 600}),
    ):
        await asyncio.to_thread(
            owner_client.decide,
            url,
            owner,
            {"decision": "approve", "request_id": made["id"], "request_sha256": made["request_sha256"],
             "recipient": agency.keyid, "scope": scope, "max_fetches": 10, "not_after": not_after},
        )  # fmt: skip

    async def fulfilled() -> dict[str, Any] | None:
        state = await asyncio.to_thread(agency.status, clip["id"])
        return state if state["status"] == "fulfilled" else None

    deliveries = (await _until(fulfilled, "delivery"))["deliveries"]
    live_state = await asyncio.to_thread(agency.status, live["id"])
    assert live_state["status"] == "live", live_state

    full = Full(
        services, owner_http, agency_http, csrf, agency, recorded[0]["id"], event.id, clip["id"], deliveries[0]["url"],
        live_state["live"]["url"], WhepViewer(), WhepViewer(), jwk_thumbprint(okp_public_jwk(owner.public_key())),
    )  # fmt: skip
    await full.owner_viewer.connect(
        f"{url}/api/v1/owner/cameras/{CAMERA}/whep", owner_http, sign=full.owner_headers
    )
    await full.agency_viewer.connect(full.live_url, agency_http, sign=full.agency_headers)
    # A real Web Push subscription (PROTOCOL §8.3) for DELETE …/push/subscriptions/{sub_id}; its
    # endpoint is a closed loopback port, so a notification sent meanwhile goes nowhere.
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    keys = {"p256dh": _b64url(point), "auth": _b64url(b"a" * 16)}
    sub = {"endpoint": "https://127.0.0.1:9/push/guard-sweep", "keys": keys}
    async with owner_http.post(
        url + "/api/v1/owner/push/subscriptions", json=sub, headers={"X-CSRF-Token": csrf}
    ) as r:
        assert r.status == 201, await r.text()
        full.push_subscription_id = (await r.json())["id"]
    # A household member (PROTOCOL §1.2) for …/members/{member_id}.
    invite = {"name": "Sam", "rights": {CAMERA: {"live": True, "recordings": False}}}
    async with owner_http.post(
        url + "/api/v1/owner/members", json=invite, headers={"X-CSRF-Token": csrf}
    ) as r:
        assert r.status == 201, await r.text()
        full.member_id = (await r.json())["id"]
    return full


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _media_with_credentials(full: Full) -> set[tuple[str, str]]:
    """Each media route, called as its rightful caller, answers with media; returns the routes proven."""
    http, url = full.owner_http, full.url
    proven: set[tuple[str, str]] = set()

    async def get(path: str, route: str, ctype: str, sign: Any = None) -> None:
        headers = dict(sign("GET", url + path, b"", None)) if sign else {}
        client = full.agency_http if sign else http
        async with client.get(url + path, headers=headers) as r:
            assert r.status == 200, (path, r.status, await r.text())
            assert r.headers["Content-Type"].startswith(ctype), (path, r.headers)
            assert await r.content.read(1), path  # at least one byte of it
        proven.add(("GET", route))

    await get(f"/api/v1/owner/segments/{full.segment_id}.mp4", "/api/v1/owner/segments/{id}.mp4", "video/mp4")
    await get(
        f"/api/v1/owner/segments/{full.segment_id}/h264.mp4",
        "/api/v1/owner/segments/{id}/h264.mp4",
        "video/mp4",
    )
    await get(f"/api/v1/owner/events/{full.event_id}.jpg", "/api/v1/owner/events/{id}.jpg", "image/jpeg")

    async def snapshot() -> bool:
        async with http.get(f"{url}/api/v1/owner/cameras/{CAMERA}/snapshot.jpg") as r:
            return r.status == 200

    await _until(snapshot, "snapshot")
    await get(
        f"/api/v1/owner/cameras/{CAMERA}/snapshot.jpg",
        "/api/v1/owner/cameras/{camera_id}/snapshot.jpg",
        "image/",
    )
    await get(
        f"/api/v1/owner/cameras/{CAMERA}/mjpeg",
        "/api/v1/owner/cameras/{camera_id}/mjpeg",
        "multipart/x-mixed-replace",
    )
    await get(  # the approval screen's still as it would leave (PROTOCOL §4.1)
        f"/api/v1/owner/cameras/{CAMERA}/privacy-preview.jpg",
        "/api/v1/owner/cameras/{camera_id}/privacy-preview.jpg",
        "image/jpeg",
    )
    await get(
        urlsplit(full.delivery_url).path,
        "/api/agency/v1/deliveries/{id}",
        "application/vnd.camhub.delivery+age",
        full.agency_headers,
    )
    # The WHEP answers were 201 with an SDP answer (connect() checks it), and frames arrive over them.
    await full.owner_viewer.wait_frames(2, timeout=DEADLINE_S)
    await full.agency_viewer.wait_frames(2, timeout=DEADLINE_S)
    proven |= {("POST", "/api/v1/owner/cameras/{camera_id}/whep"), ("POST", "/api/agency/v1/live/{grant_id}")}
    return proven


async def _offer() -> str:
    viewer = WhepViewer()
    try:
        return await viewer.offer()
    finally:
        await viewer.close()


async def test_every_route_is_declared_and_media_is_guarded(tmp_path: Path) -> None:
    async with SimCamera(CAMERA, **SMALL) as sim:  # type: ignore[arg-type]
        config = _config(tmp_path / "data", sim.rtsp_url("main"))
        async with (
            running_hub(config) as services,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as owner_http,
            aiohttp.ClientSession() as agency_http,
            aiohttp.ClientSession() as anonymous,
        ):
            app = make_app(services)
            routes = sorted(
                {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
            )
            assert routes
            undeclared = [(m, p) for m, p in routes if guards.guard_for(m, p) is None]
            assert not undeclared, f"declare these routes in hub/api/guards.py: {undeclared}"
            media_routes = set()
            for method, path in routes:
                declared = guards.guard_for(method, path)
                assert declared is not None
                if declared.media:
                    media_routes.add(("GET" if method == "HEAD" else method, path))
                    assert declared.guard in guards.MEDIA_GUARDS, (method, path, declared)
                    if declared.guard is guards.Guard.AGENCY_GATE:
                        assert path in (gate.__doc__ or ""), f"gate.py docstring must list {path}"

            full = await _fill(services, tmp_path, owner_http, agency_http)
            try:
                proven = await _media_with_credentials(full)
                # Every media route was shown to serve media with these ids; a new one must be added.
                assert media_routes <= proven, (
                    f"prove these media routes serve media: {media_routes - proven}"
                )

                offer = (await _offer()).encode()
                refused = []
                for method, path in routes:
                    declared = guards.guard_for(method, path)
                    assert declared is not None
                    target = full.concrete(method, path)
                    sdp = path.endswith(("/whep", "/whip")) or path == "/api/agency/v1/live/{grant_id}"
                    body = offer if sdp and method == "POST" else b""
                    headers = {"Content-Type": "application/sdp"} if body else {}
                    async with anonymous.request(method, full.url + target, data=body, headers=headers) as r:
                        ctype = r.headers.get("Content-Type", "")
                        # Bounded: a media stream (MJPEG) would never end.
                        content = await r.content.read(64 * 1024)
                    got = (method, target, r.status, ctype, content[:120])
                    assert not (200 <= r.status < 300 and MEDIA_TYPES.match(ctype)), got
                    if declared.guard is guards.Guard.PUBLIC:
                        continue
                    statuses, code = REFUSAL[declared.guard]
                    assert r.status in statuses, got
                    assert ctype.startswith("application/json"), got
                    if method == "HEAD":  # the GET's status and headers, no body
                        assert not content, got
                        continue
                    error = json.loads(content)
                    assert set(error) == {"error", "detail"}, got
                    if code is not None:
                        assert error["error"] == code, got
                    refused.append((method, path))
                assert {p for _, p in refused} >= {p for _, p in media_routes}

                # Nothing the anonymous calls asked for happened: both live sessions still stream.
                assert not full.owner_viewer.ended.is_set() and not full.agency_viewer.ended.is_set()
                before = (full.owner_viewer.frame_count, full.agency_viewer.frame_count)
                await full.owner_viewer.wait_frames(before[0] + 2, timeout=DEADLINE_S)
                await full.agency_viewer.wait_frames(before[1] + 2, timeout=DEADLINE_S)
            finally:
                await full.owner_viewer.close()
                await full.agency_viewer.close()
