"""The WHEP routes in a hub app with the real consent service (PROTOCOL §2.4, issue 5's livestream test):

an agency with an approved 10 s live grant receives frames; the owner revokes at 3 s and media stops
within 1 s; every start and end is audited; refused calls send no media. The owner's live view is
behind the owner session. The hub is the real daemon wiring (`running_hub`), the camera the simulator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import httpsig, rfc3339
from firmware_sim.camera import SimCamera
from hub.agency_client import Agency, keygen
from hub.consent import owner_client
from hub.consent.service import ConsentService
from hub.egress.whep_client import Signer, WhepError, WhepViewer, save_livestream
from hub.services import Services
from tests.egress.conftest import running_live_hub


@dataclass
class LiveHub:
    url: str
    services: Services
    owner: Ed25519PrivateKey
    camera: str

    @property
    def consent(self) -> ConsentService:
        assert self.services.consent is not None
        return self.services.consent

    async def decide(self, fields: dict[str, Any], key: Ed25519PrivateKey | None = None) -> Any:
        return await asyncio.to_thread(owner_client.decide, self.url, key or self.owner, fields)

    async def all_sessions_ended(self) -> bool:
        """Every audited live start has its audited end (the hub keeps no session open)."""
        types = [t for t, _ in await self.audit_types()]
        return types.count("egress.live.start") == types.count("egress.live.end")

    async def sessions_end_audited(self, timeout: float = 5.0) -> bool:
        """`all_sessions_ended`, waiting for an end being audited: a session closes (media stops) first
        and writes its `egress.live.end` entry after, so a viewer can see the end before it is written."""
        deadline = time.monotonic() + timeout
        while not await self.all_sessions_ended():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def audit_entries(self, since: int = 0) -> list[dict[str, Any]]:
        """Audit entries from seq `since` on, parsed."""
        entries = await self.consent.audit.entries(since, self.consent.audit.size)
        return [json.loads(e) for _, e in entries]

    async def audit_types(self) -> list[tuple[str, bytes]]:
        entries = await self.consent.audit.entries(0, self.consent.audit.size)
        return [(e.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode(), e) for _, e in entries]


@pytest.fixture
async def live_hub(sim: SimCamera, tmp_path: Path) -> AsyncIterator[LiveHub]:
    """The real daemon wiring (`running_hub`): the sim camera recorded and relayed, WHEP routes mounted."""
    async with running_live_hub(sim, tmp_path) as (services, owner):
        yield LiveHub(services.base_url, services, owner, sim.name)


@dataclass
class AgencyParty:
    client: Agency
    keyid: str

    def signer(self) -> Signer:
        def sign(method: str, url: str, body: bytes, ctype: str | None) -> Mapping[str, str]:
            parts = urlsplit(url)
            base = [("Content-Type", ctype)] if ctype else []
            lines = httpsig.sign_request(
                method=method, authority=parts.netloc, path=parts.path, query=parts.query or None,
                headers=base, body=body, private_key=self.client.key, keyid=self.keyid,
                created=int(time.time()), scheme=parts.scheme,
            )  # fmt: skip
            return dict(lines)

        return sign


async def add_agency(hub: LiveHub, directory: Path, name: str) -> AgencyParty:
    info = await asyncio.to_thread(keygen, directory)
    await hub.decide(
        {
            "decision": "add-agency",
            "subject": {"name": name, "sig_jwk": info["sig_jwk"], "recipient": info["recipient"]},
        }
    )
    return AgencyParty(Agency(directory, hub.url), info["keyid"])


async def live_grant(
    hub: LiveHub, agency: AgencyParty, seconds: int = 10, approver: Ed25519PrivateKey | None = None,
    audio: bool | None = None,
) -> tuple[str, str]:  # fmt: skip
    """Request a livestream and approve it; returns (request id, live URL from the poll)."""
    fields = {
        "case_id": "2026-000123", "kind": "live", "cameras": [hub.camera], "start": None, "end": None,
        "live_max_seconds": seconds, "reason": "test", "legal_basis": {"type": "consent", "reference": None},
        "contact": "Det. Test",
    }  # fmt: skip
    made = await asyncio.to_thread(agency.client.request, fields)
    await hub.decide(
        {
            "decision": "approve", "request_id": made["id"], "request_sha256": made["request_sha256"],
            "scope": {"kind": "live", "cameras": [hub.camera], "start": None, "end": None,
                      "live_max_seconds": seconds, **({} if audio is None else {"audio": audio})},
            "recipient": agency.keyid, "max_fetches": 1,
            "not_after": rfc3339.format(int(time.time()) + 3600),
        },
        approver,
    )  # fmt: skip
    state = await asyncio.to_thread(agency.client.status, made["id"])
    assert state["status"] == "live"
    return made["id"], state["live"]["url"]


async def stop_time(viewer: WhepViewer, quiet_s: float, limit_s: float) -> float:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        last = viewer.last_frame_at
        if viewer.ended.is_set() or (last is not None and time.time() - last > quiet_s):
            assert last is not None
            return last
        await asyncio.sleep(0.05)
    raise AssertionError("media never stopped")


async def test_approved_live_grant_streams_and_revoke_cuts_within_1s(
    live_hub: LiveHub, tmp_path: Path
) -> None:
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    request_id, url = await live_grant(live_hub, agency, seconds=10)
    assert urlsplit(url).path.startswith("/api/agency/v1/live/")
    viewer = WhepViewer()
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            assert viewer.resource_url is not None and viewer.resource_url.startswith(url + "/")
            started = time.time()
            await viewer.wait_frames(10, timeout=10)
            frames_before = viewer.frame_count
            # Revoke at 3 s into the stream.
            await asyncio.sleep(max(0.0, started + 3.0 - time.time()))
            await live_hub.decide({"decision": "revoke", "request_id": request_id})
            revoked_at = time.time()
            last = await stop_time(viewer, quiet_s=1.5, limit_s=8)
            # Refused from now on, and nothing more is sent.
            again = WhepViewer()
            with pytest.raises(WhepError) as err:
                await again.connect(url, http, sign=agency.signer())
            await again.close()
            assert err.value.status == 403
        finally:
            await viewer.close()
    assert frames_before >= 10
    assert last < revoked_at + 1.0  # PROTOCOL §2.4: within 1 s of the owner's revoke
    assert await live_hub.sessions_end_audited()
    types = [t for t, _ in await live_hub.audit_types()]
    assert types.count("egress.live.start") == 1
    assert types.count("egress.live.end") == 1
    end_entry = next(e for t, e in await live_hub.audit_types() if t == "egress.live.end")
    assert b"refused: " in end_entry  # the gate said no (grant_revoked or not_permitted)


async def test_revoke_cuts_through_the_listener_without_the_poll(
    live_hub: LiveHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revoke reaches the session through `grant_listeners` at once (issue 17: ≤ 100 ms, measured in
    bench/live_bench.py): with the sessions' periodic re-check made an hour long, media still stops
    within the 1 s of PROTOCOL §2.4 (it would otherwise run to the grant's 10 s end)."""
    from hub.egress import webrtc

    original = webrtc.LiveSession.__init__

    def without_poll(self: webrtc.LiveSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._recheck_interval_s = 3600.0

    monkeypatch.setattr(webrtc.LiveSession, "__init__", without_poll)
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    request_id, url = await live_grant(live_hub, agency, seconds=10)
    viewer = WhepViewer()
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            await viewer.wait_frames(5, timeout=10)
            await live_hub.decide({"decision": "revoke", "request_id": request_id})
            revoked_at = time.time()
            last = await stop_time(viewer, quiet_s=1.5, limit_s=12)
        finally:
            await viewer.close()
    assert last < revoked_at + 1.0
    assert await live_hub.sessions_end_audited()


async def test_a_livestream_sends_no_sound_even_when_asked_for(live_hub: LiveHub, tmp_path: Path) -> None:
    """PROTOCOL §2.4: sound only from a camera whose sound is recorded (the simulator's is not). A
    viewer that offers to receive audio, under a grant that allows it, gets video and an audio section
    the hub does not send on (tests/egress/test_live_audio.py: a camera with sound)."""
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    _, url = await live_grant(live_hub, agency, seconds=10, audio=True)
    viewer = WhepViewer()
    viewer.pc.addTransceiver("audio", direction="recvonly")
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            await viewer.wait_frames(5, timeout=10)
            answer = viewer.pc.remoteDescription.sdp
        finally:
            await viewer.close()
    sections = {part.split(" ", 1)[0]: part for part in answer.split("\r\nm=")[1:]}
    assert set(sections) == {"video", "audio"}, answer
    assert "a=sendonly" in sections["video"]
    assert "a=sendonly" not in sections["audio"] and "a=sendrecv" not in sections["audio"], answer


async def test_revoking_the_approving_owner_key_cuts_within_1s(live_hub: LiveHub, tmp_path: Path) -> None:
    laptop = Ed25519PrivateKey.generate()
    await live_hub.decide(
        {
            "decision": "enroll-key",
            "subject": {"public_jwk": owner_client.public_jwk(laptop), "name": "laptop"},
        }
    )
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    _, url = await live_grant(live_hub, agency, seconds=10, approver=laptop)
    viewer = WhepViewer()
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            await viewer.wait_frames(5, timeout=10)
            await live_hub.decide({"decision": "revoke-key", "subject": {"kid": owner_client.kid_of(laptop)}})
            revoked_at = time.time()
            last = await stop_time(viewer, quiet_s=1.5, limit_s=8)
        finally:
            await viewer.close()
    assert last < revoked_at + 1.0
    assert await live_hub.sessions_end_audited()


async def test_agency_saves_the_livestream_to_mp4(live_hub: LiveHub, tmp_path: Path) -> None:
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    _, url = await live_grant(live_hub, agency, seconds=10)
    out = tmp_path / "live.mp4"
    count = await save_livestream(url, out, 2.0, sign=agency.signer(), timeout=15)
    assert 25 <= count <= 32
    with av.open(str(out)) as f:
        assert sum(1 for _ in f.decode(video=0)) == count
    assert await live_hub.sessions_end_audited()  # the DELETE ended it
    end_entry = next(e for t, e in await live_hub.audit_types() if t == "egress.live.end")
    assert b'"reason":"agency sent DELETE"' in end_entry


async def test_live_max_seconds_ends_the_stream(live_hub: LiveHub, tmp_path: Path) -> None:
    agency = await add_agency(live_hub, tmp_path / "agency", "PD")
    _, url = await live_grant(live_hub, agency, seconds=2)
    viewer = WhepViewer()
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign=agency.signer())
            connected = time.time()
            await viewer.wait_frames(3, timeout=5)
            last = await stop_time(viewer, quiet_s=1.5, limit_s=8)
        finally:
            await viewer.close()
    assert last < connected + 2.0 + 1.0
    # The session's end is audited as the hub closes it, which on a loaded machine can come after the
    # viewer has seen the media stop: wait for the entry (bounded) instead of reading the log at once.
    async with asyncio.timeout(10):
        while not (ends := [e for t, e in await live_hub.audit_types() if t == "egress.live.end"]):
            await asyncio.sleep(0.05)
    assert b'"reason":"expired"' in ends[0]


async def _offer() -> bytes:
    """A real SDP offer (a receive-only viewer's), so only the refusal stands between it and media."""
    viewer = WhepViewer()
    try:
        return (await viewer.offer()).encode()
    finally:
        await viewer.close()


async def test_refused_live_calls_send_no_media(live_hub: LiveHub, tmp_path: Path) -> None:
    """Each refused WHEP call, case by case: its status, its error code, its own `request.rejected`
    audit entry, a JSON error body (never an SDP answer), no `egress.live.start`, and no viewer on the
    camera's relay (no subscriber: no packet of it can leave)."""
    pd = await add_agency(live_hub, tmp_path / "pd", "PD")
    other = await add_agency(live_hub, tmp_path / "other", "Other")
    _, url = await live_grant(live_hub, pd, seconds=10)
    relay = live_hub.services.cameras.relays.get(live_hub.camera) if live_hub.services.cameras else None
    assert relay is not None
    offer = await _offer()
    sdp = "application/sdp"
    cases: list[tuple[str, str, Signer | None, str, bytes, int, str, str | None]] = [
        # (case, url, signer, content type, body, status, error, the refused agency's keyid or None)
        ("unsigned", url, None, sdp, offer, 401, "signature_missing", None),
        ("another agency's grant", url, other.signer(), sdp, offer, 404, "not_found", other.keyid),
        ("no such grant", url.rsplit("/", 1)[0] + "/nonexistent", pd.signer(), sdp, offer, 404, "not_found", pd.keyid),
        ("a camera outside the grant", url + "?camera=garage", pd.signer(), sdp, offer, 404, "not_found", pd.keyid),
        ("not an SDP offer", url, pd.signer(), sdp, b"v=0\r\n", 400, "bad_offer", pd.keyid),
        ("not SDP at all", url, pd.signer(), "text/plain", offer, 415, "unsupported_media_type", pd.keyid),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for case, target, signer, ctype, body, status, code, keyid in cases:
            since = live_hub.consent.audit.size
            headers = {"Content-Type": ctype, **(await _signed(signer, target, body, ctype))}
            async with http.post(target, data=body, headers=headers) as resp:
                got = (case, resp.status, resp.headers.get("Content-Type"), await resp.read())
            assert got[1] == status, got
            assert got[2] is not None and got[2].startswith("application/json"), got
            error = json.loads(got[3])
            assert set(error) == {"error", "detail"} and error["error"] == code, got
            new = await live_hub.audit_entries(since)
            rejected = [e for e in new if e["type"] == "request.rejected" and e["data"]["code"] == code]
            assert len(rejected) == 1, (case, new)
            assert rejected[0]["actor"] == (f"agency:{keyid}" if keyid else "unauthenticated"), (
                case,
                rejected,
            )
            assert not [e for e in new if e["type"].startswith("egress.")], (case, new)
            assert relay.subscriber_count == 0, case

        # DELETE of the live URL with nothing open: 404, audited; after a connect it ends the session.
        since = live_hub.consent.audit.size
        headers = dict(pd.signer()("DELETE", url, b"", None))
        async with http.delete(url, headers=headers) as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        assert [e for e in await live_hub.audit_entries(since) if e["type"] == "request.rejected"]
        viewer = WhepViewer()
        try:
            await viewer.connect(url, http, sign=pd.signer())
            await viewer.wait_frames(2, timeout=5)
            headers = pd.signer()("DELETE", url, b"", None)
            async with http.delete(url, headers=headers) as resp:
                assert resp.status == 200
            await asyncio.wait_for(viewer.ended.wait(), 5)
        finally:
            await viewer.close()
    assert await live_hub.sessions_end_audited()
    types = [t for t, _ in await live_hub.audit_types()]
    assert types.count("egress.live.start") == 1  # only the one accepted connection
    assert types.count("egress.live.end") == 1


async def _signed(signer: Signer | None, url: str, body: bytes, ctype: str) -> Mapping[str, str]:
    if signer is None:
        return {}
    result = signer("POST", url, body, ctype)
    return await result if asyncio.iscoroutine(result) else result  # type: ignore[misc]


async def test_owner_view_needs_an_owner_session(live_hub: LiveHub) -> None:
    viewer = WhepViewer()
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(WhepError) as err:
                await viewer.connect(f"{live_hub.url}/api/v1/owner/cameras/{live_hub.camera}/whep", http)
            assert err.value.status == 401
    finally:
        await viewer.close()
    assert await live_hub.sessions_end_audited()
