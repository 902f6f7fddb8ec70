"""Live view over WebRTC (WHEP, draft-ietf-wish-whep): the agency livestream and the owner's view.

    POST   /api/agency/v1/live/{grant_id}                 agency signature + gate   SDP offer → 201 answer (§2.4)
    DELETE /api/agency/v1/live/{grant_id}                 agency signature          end every session of it
    DELETE /api/agency/v1/live/{grant_id}/{session_id}    agency signature          end one session (Location)
    POST   /api/v1/owner/cameras/{camera_id}/whep         owner session (+ CSRF)    the owner's live view
    DELETE /api/v1/owner/live/{session_id}                owner session (+ CSRF)    end it (Location)

The agency URL is the one `GET /api/agency/v1/requests/{id}` returns in `"live": {"url", "not_after"}`
(`hub/consent/requests.py`). A grant may name several cameras; the stream is of the first unless the
signed URL carries `?camera=<id>` (RFC 9421 then covers it through `@query`).

Agency path, in order: RFC 9421 verification (`requests.authenticate`, audited on failure) → the
grant named in the URL must be this agency's live grant → `gate.check(kind="live", grant_id=…)` at
connect time, judged on that grant alone, which opens its `live_max_seconds` window at the first
connection → answer the offer → audit `egress.live.start` and write a checkpoint. The session then
ends at `min(not_after, first connection + live_max_seconds)` — reconnecting buys no time — and its watchdog
calls `gate.check` again every ≤ 0.5 s; the consent service's `grant_listeners` also trigger an
immediate re-check after any revoke, revoke-key or remove-agency. Every end is audited
(`egress.live.end`, with the reason) and followed by a checkpoint (PROTOCOL §5).

Sound (§2.4): the agency's session gets the camera's sound only when its grant's signed `scope.audio`
is true and the camera records sound; the owner's (and a household member's with `live`) whenever the
camera records sound. `egress.live.start` says which (`"audio"`), `egress.live.end` how many audio
packets went to the encoder.

Owner path: `require_viewer` (the owner session on the LAN, or a household member's with `live` on
the camera, PROTOCOL §1.2; §4 exempts both from the gate: nothing leaves the house).
The view is bound to that session: it ends at the session's expiry, and its watchdog asks every
`VIEW_RECHECK_S` whether the session still exists, so logout, a password change or a box reset
end it within 1 s (issue 12).

Slots: `[hub] max_live_sessions` viewers at once; agencies together get all but one, so the owner can
always watch (`LiveSessions.open`, 503 `too_many_sessions`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration

from camhub_protocol import whep
from camhub_protocol.errors import ConsentError
from hub.api.agency import signed_message
from hub.api.session import (
    OWNER_SESSION,
    PRINCIPAL,
    VIEW_RECHECK_S,
    SessionError,
    require_viewer,
    session_alive,
)
from hub.api.views import view_log
from hub.config import Config
from hub.consent import gate, requests
from hub.consent.service import ConsentService
from hub.egress import ice
from hub.egress.webrtc import Audience, LiveError, LiveSession, LiveSessions, SessionKind
from hub.ingest.relay import RelayHub
from hub.services import SERVICES
from hub.store import consent as q

log = logging.getLogger(__name__)

AGENCY_PREFIX = "/api/agency/v1/live"
SDP = "application/sdp"


@dataclass
class LiveMedia:
    """The live-media state routes share: every camera's relay and the open sessions."""

    relays: RelayHub
    sessions: LiveSessions
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def grants_changed(self) -> None:
        """Consent listener (sync, on the loop): re-check every agency session at once."""
        task = asyncio.get_running_loop().create_task(self.sessions.recheck_all(), name="live-recheck")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


LIVE_MEDIA = web.AppKey("live_media", LiveMedia)


def _error(status: int, code: str, detail: str = "") -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def _answer(answer: str, location: str) -> web.Response:
    # WHEP §4.2: 201 Created, the answer as application/sdp, the session resource in Location.
    return web.Response(
        status=201,
        body=answer.encode(),
        content_type=SDP,
        headers={"Location": location, "Cache-Control": "no-store"},
    )


def camera_records_sound(config: Config, camera: str) -> bool:
    """True if the owner turned sound recording on for `camera`: without it there is none to send."""
    cam = config.camera(camera)
    return cam is not None and cam.audio


# --- agency (PROTOCOL §2.4) ---------------------------------------------------------------------


def _consent(request: web.Request) -> ConsentService:
    consent = request.app[SERVICES].consent
    if consent is None:
        raise ConsentError("unavailable", "consent service not running", 503)
    return consent


def _not_found() -> ConsentError:
    # The same answer for "no such grant", "another agency's grant" and "not a live grant".
    return ConsentError("not_found", "no such livestream", 404)


async def _live_grant(
    consent: ConsentService, keyid: str, grant_id: str, camera: str | None, *, connect: bool = False
) -> q.GrantRecord:
    """The gate's answer for this URL's grant now, or a ConsentError (404 or 403). `connect` opens
    the grant's live_max_seconds window at its first connection (the watchdog's rechecks do not)."""
    grant = await consent.store.run(q.grant, grant_id[:128])
    if grant is None or grant.recipient != keyid or grant.kind != "live":
        raise _not_found()
    camera = camera or grant.cameras[0]
    if camera not in grant.cameras:
        raise _not_found()
    return await gate.check(
        consent.store, keyid, camera, None, None, kind="live", now=consent.now(), grant_id=grant.id,
        start_live=connect, deadlines=consent.deadlines,
    )  # fmt: skip


async def post_agency_live(request: web.Request) -> web.StreamResponse:
    consent = _consent(request)
    media = request.app[LIVE_MEDIA]
    msg = await signed_message(request, consent)
    verified = await requests.authenticate(consent, msg)
    answer, location = await open_agency_live(
        consent, media, msg, verified.keyid, request.match_info["grant_id"], request.query.get("camera"),
        request.content_type, AGENCY_PREFIX,
    )  # fmt: skip
    response = _answer(answer, location)
    response.headers[whep.HEADER] = answer_signature(consent, msg.body, answer)
    return response


def answer_signature(consent: ConsentService, offer: bytes, answer: str) -> str:
    """The hub's signature over an agency's offer and its answer (camhub_protocol/whep.py): whatever
    carried the answer (a relay) cannot swap the DTLS fingerprint in it unnoticed."""
    return whep.sign_answer(consent.hub_key.private_key, consent.hub_id, offer, answer.encode())


async def open_agency_live(
    consent: ConsentService,
    media: LiveMedia,
    msg: requests.SignedMessage,
    keyid: str,
    grant_id: str,
    camera_query: str | None,
    content_type: str,
    prefix: str,
    configuration: RTCConfiguration | None = None,
) -> tuple[str, str]:
    """§2.4 after the signature verified (directly or through a relay, §7.3): gate the grant, answer
    the offer, audit the start. Returns (SDP answer, session URL path under `prefix`)."""
    actor = f"agency:{keyid}"
    try:
        if content_type.split(";")[0].strip().lower() != SDP:
            raise ConsentError("unsupported_media_type", "Content-Type must be application/sdp", 415)
        grant = await _live_grant(consent, keyid, grant_id, camera_query, connect=True)
    except ConsentError as exc:
        await requests.reject(consent, msg, exc, keyid)
        raise
    camera = camera_query or grant.cameras[0]
    relay = media.relays.get(camera)
    if relay is None:
        exc = ConsentError("camera_unavailable", "the camera is not streaming", 503)
        await requests.reject(consent, msg, exc, keyid)
        raise exc
    # not_after, or the end of the live_max_seconds window opened above, by whichever clock is sooner.
    now = consent.now()
    not_after = now + consent.deadlines.remaining(grant, now)

    async def recheck() -> None:
        await _live_grant(consent, keyid, grant_id, camera)

    async def ended(session: LiveSession) -> None:
        await consent.record(
            "egress.live.end",
            actor,
            {
                "session": session.id,
                "grant_id": grant.id,
                "request_id": grant.request_id,
                "camera": camera,
                "reason": session.close_reason or "closed",
                "seconds": int((session.ended_at or time.time()) - session.started_at),
                "packets": session.track.packets_sent,
                "bytes": session.track.bytes_sent,
                "audio_packets": session.audio_track.packets_sent if session.audio_track else 0,
            },
        )
        await consent.audit.checkpoint()

    try:
        session, answer = await media.sessions.open(
            camera_id=camera,
            relay=relay,
            offer_sdp=msg.body.decode("utf-8", "replace"),
            audience=Audience(SessionKind.AGENCY, keyid, grant.request_id, grant.id),
            not_after=not_after,
            recheck=recheck,
            on_close=ended,
            configuration=configuration,
            # Whatever leaves for an agency carries the masks in force when each frame is sent (§4.1).
            masks=lambda: consent.privacy_masks(camera),
            # Sound only under the grant's signed scope.audio, and only if it is recorded at all (§2.4).
            audio=grant.audio and camera_records_sound(consent.config, camera),
        )
    except LiveError as exc:
        refusal = ConsentError(exc.code, exc.detail, exc.status)
        await requests.reject(consent, msg, refusal, keyid)
        raise refusal from exc
    await consent.record(
        "egress.live.start",
        actor,
        {
            "session": session.id,
            "grant_id": grant.id,
            "request_id": grant.request_id,
            "camera": camera,
            "not_after": consent.time_text(not_after),
            "masked": session.masked,
            "audio": session.audio_track is not None,
        },
    )
    await consent.audit.checkpoint()
    return answer, f"{prefix}/{grant.id}/{session.id}"


async def delete_agency_live(request: web.Request) -> web.StreamResponse:
    consent = _consent(request)
    media = request.app[LIVE_MEDIA]
    msg = await signed_message(request, consent)
    verified = await requests.authenticate(consent, msg)
    await close_agency_live(
        consent,
        media,
        msg,
        verified.keyid,
        request.match_info["grant_id"],
        request.match_info.get("session_id"),
    )
    return web.Response(status=200)


async def close_agency_live(
    consent: ConsentService,
    media: LiveMedia,
    msg: requests.SignedMessage,
    keyid: str,
    grant_id: str,
    session_id: str | None,
) -> None:
    """End this agency's sessions of a grant (one, with `session_id`); 404 if there are none."""
    mine = [
        s
        for s in media.sessions.sessions()
        if s.audience.kind is SessionKind.AGENCY
        and s.audience.recipient == keyid
        and s.audience.grant_id == grant_id
        and (session_id is None or s.id == session_id)
    ]
    if not mine:
        exc = _not_found()
        await requests.reject(consent, msg, exc, keyid)
        raise exc
    await asyncio.gather(*(s.close("agency sent DELETE") for s in mine))


# --- owner (LAN live view) ----------------------------------------------------------------------


async def post_owner_whep(request: web.Request) -> web.StreamResponse:
    """The owner's (or a household member's) live view of one camera (mount behind `require_viewer`)."""
    media = request.app[LIVE_MEDIA]
    camera = request.match_info["camera_id"]
    if request.content_type != SDP:
        return _error(415, "unsupported_media_type", "Content-Type must be application/sdp")
    relay = media.relays.get(camera)
    if relay is None:
        config = request.app[SERVICES].config
        if config.camera(camera) is None:
            return _error(404, "not_found", "no such camera")
        return _error(503, "camera_unavailable", "the camera is not streaming")
    offer = await request.text()
    services = request.app[SERVICES]
    owner_session = request[OWNER_SESSION]

    async def recheck() -> None:
        # A member's view also ends when the member is removed or loses `live` here (§1.2).
        if not await session_alive(services, owner_session.id_sha256, camera):
            raise SessionError("the session ended or may no longer watch this camera")

    views = view_log(request)

    async def ended(session: LiveSession) -> None:
        # Who watched what (PROTOCOL §5): the owner's view is audited like an agency's.
        seconds = int((session.ended_at or time.time()) - session.started_at)
        await views.record(
            request, "view.live.end",
            {"session": session.id, "camera": camera, "via": "webrtc", "seconds": seconds},
        )  # fmt: skip

    try:
        session, answer = await media.sessions.open(
            camera_id=camera,
            relay=relay,
            offer_sdp=offer,
            audience=Audience(SessionKind.OWNER, owner_session.id_sha256),
            not_after=owner_session.expires_at,
            recheck=recheck,
            recheck_interval_s=VIEW_RECHECK_S,
            # The owner's own view is whole unless the owner asked for masks there too (§4.1).
            masks=lambda: gate.privacy_masks(services.config, camera, audience="owner"),
            on_close=ended,
            # The owner hears what the camera records (§2.4; the owner's view is exempt from the gate).
            audio=camera_records_sound(services.config, camera),
        )
    except LiveError as exc:
        return _error(exc.status, exc.code, exc.detail)
    await views.record(request, "view.live.start", {"session": session.id, "camera": camera, "via": "webrtc"})
    return _answer(answer, f"/api/v1/owner/live/{session.id}")


async def delete_owner_live(request: web.Request) -> web.StreamResponse:
    media = request.app[LIVE_MEDIA]
    session = media.sessions.get(request.match_info["session_id"])
    if session is None or session.audience.kind is not SessionKind.OWNER:
        return _error(404, "not_found", "no such live session")
    principal = request[PRINCIPAL]
    # A household member ends only their own browser session's views (PROTOCOL §1.2).
    if principal.member is not None and session.audience.recipient != principal.session.id_sha256:
        return _error(404, "not_found", "no such live session")
    await session.close("owner sent DELETE")
    return web.Response(status=200)


# --- wiring ---------------------------------------------------------------------------------------


def setup(app: web.Application, relays: RelayHub, sessions: LiveSessions | None = None) -> LiveMedia:
    """Mount the live routes. The daemon owns `relays` (one per camera, fed by each camera's task).

    On startup ICE host candidates are pinned (`ice.addresses_for(config.hub)`) and the consent
    service's revoke notifications are subscribed; on shutdown every live session is closed before the
    HTTP server goes away.
    """
    media = LiveMedia(
        relays, sessions or LiveSessions(max_sessions=app[SERVICES].config.hub.max_live_sessions)
    )
    app[LIVE_MEDIA] = media
    app.router.add_post(f"{AGENCY_PREFIX}/{{grant_id}}", post_agency_live)
    app.router.add_delete(f"{AGENCY_PREFIX}/{{grant_id}}", delete_agency_live)
    app.router.add_delete(f"{AGENCY_PREFIX}/{{grant_id}}/{{session_id}}", delete_agency_live)
    # The owner, or a household member with `live` on the camera (PROTOCOL §1.2).
    app.router.add_post(
        "/api/v1/owner/cameras/{camera_id}/whep", require_viewer(post_owner_whep, right="live")
    )
    app.router.add_delete("/api/v1/owner/live/{session_id}", require_viewer(delete_owner_live, right=None))

    async def subscribe(app: web.Application) -> None:
        ice.use_host_addresses(ice.addresses_for(app[SERVICES].config.hub))
        consent = app[SERVICES].consent
        if consent is not None:
            consent.grant_listeners.append(media.grants_changed)

    async def close_sessions(app: web.Application) -> None:
        consent = app[SERVICES].consent
        if consent is not None and media.grants_changed in consent.grant_listeners:
            consent.grant_listeners.remove(media.grants_changed)
        await media.sessions.close_all()
        for task in list(media._tasks):
            task.cancel()

    app.on_startup.append(subscribe)
    app.on_shutdown.append(close_sessions)
    return media
