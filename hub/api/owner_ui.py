"""The owner's web UI: static pages (hub/web) and the JSON the pages read, all behind an owner session.

Route table (who may call each is declared here, where it is registered):
    GET  /                                   public   the single page (it decides: onboarding/login/app)
    GET  /ui/*                               public   static JS/CSS (no data in them)
    GET  /ca.crt                             public   the local HTTPS CA to trust once (hub/tls.py)
    GET  /api/v1/owner/cameras               owner    configured cameras, their status, discovered ones
                                                      (`protocol` "mdns" with `rtsp_url`, or "onvif" with
                                                      `onvif_url`; `added_as` once configured)
    GET  /api/v1/owner/timeline              owner    one camera's segments, gaps and events in a range
    GET  /api/v1/owner/segments/{id}.mp4     owner    one fMP4 segment, with HTTP Range (RFC 9110 §14)
    GET  /api/v1/owner/segments/{id}/h264.mp4  owner  an H.264 copy of an H.265 segment, for a browser
                                                      that cannot play H.265 (hub/record/transcode.py)
    GET  /api/v1/owner/events                owner    events by camera / kind / day; `source` "hub" (the
                                                      hub's motion analysis) or "camera" (presses, ONVIF motion)
    GET  /api/v1/owner/events/{id}.jpg       owner    an event's thumbnail
    GET  /api/v1/owner/requests              owner    agency requests with what would leave, and each
                                                      one's history from the audit log (hub/api/history.py)
    GET  /api/v1/owner/requests/waiting      owner    just the requests waiting for an answer (cheap: the
                                                      page polls it for the tab title and announcements)
    GET  /api/v1/owner/grants                owner    grants in force (to revoke), downloads used, time left
    GET  /api/v1/owner/agencies              owner    trusted agencies
    GET  /api/v1/owner/holds                 owner    footage retention keeps for pending requests and approvals
    GET  /api/v1/owner/devices/{kid}/revoke-preview  owner  what revoking that device also revokes
    GET  /api/v1/owner/devices               owner    owner keys, and browsers asking to be enrolled
    POST /api/v1/owner/device-requests       owner+CSRF  this browser asks to be enrolled
    GET  /api/v1/owner/settings              owner    storage/consent settings (the config file plus the
                                                      owner's changes; those are made in hub/api/settings.py)
    GET  /api/v1/owner/audit/entries         owner    one page of the audit log, newest first, each entry
                                                      with its RFC 9162 inclusion proof (see below)

GET /api/v1/owner/audit/entries pages, so the browser never downloads the whole log:
    ?before=<seq>   entries with seq < before (default: the newest entry the checkpoint covers, +1)
    ?limit=<n>      at most n entries, 1..200 (default 50)
    ?size=<n>       prove the entries against the tree of this size (default: the latest signed
                    checkpoint, signed now if entries were appended since); only entries with
                    seq < size are returned, so every entry on the page has a proof
    ?types=<a,b>    only entries of these types (a filter; pages still go newest first)
Answer: {"size": entries in the log, "tree_size", "checkpoint": signed note of tree_size (or null
when size was given), "entries": [{"seq", "entry": exact bytes as text, "inclusion_proof": [b64]}],
"next_before": seq to ask for the next (older) page or null, "names": display names of the agencies,
owner keys, cameras, requests and deliveries the page's entries mention, "hub_public_jwk"}.
The browser checks the checkpoint's signature, each entry's proof against the signed root, and
consistency with the last checkpoint it saw (GET /api/v1/audit/consistency), hub/web/views/audit.js.

Owner media here (segments, thumbnails) is the owner's own footage on the LAN, which PROTOCOL §4
exempts from the egress gate; it never serves anything without a session.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import io
import json
import logging
import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error
from aiohttp import web

from camhub_protocol import rfc3339
from camhub_protocol.keys import jwk_thumbprint
from hub.api import history as history_mod
from hub.api.session import OWNER_SESSION, PRINCIPAL, require_owner, require_viewer
from hub.api.settings import OWNER_SETTINGS
from hub.api.views import view_log
from hub.config import CAMERA_ID_RE, MotionConfig
from hub.errors import BadRequest, HubError, NotFound
from hub.record.sealed import SealedError
from hub.record.transcode import H264Copies
from hub.services import SERVICES
from hub.settings import public_camera
from hub.store import audit as audit_q
from hub.store import consent as consent_q
from hub.store import events as events_q
from hub.store import segments as segments_q
from hub.store import web as q

log = logging.getLogger(__name__)

WEB_DIR = Path(str(resources.files("hub").joinpath("web")))
MAX_RANGE_S = 2 * 24 * 3600
MAX_AUDIT_PAGE = 200
DEFAULT_AUDIT_PAGE = 50
# A type-filtered page reads back through the log in batches; this bounds one call's work (the
# page then offers "older" from where it stopped).
AUDIT_SCAN_BATCH = 500
AUDIT_SCAN_MAX = 20_000


def _float_arg(request: web.Request, name: str) -> float:
    try:
        value = float(request.query[name])
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"query parameter {name} must be a number (unix seconds)") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"{name} must be finite")
    return value


def _camera_arg(request: web.Request, required: bool = True) -> str | None:
    camera = request.query.get("camera")
    if camera is None or camera == "":
        if required:
            raise BadRequest("query parameter camera is required")
        return None
    if not CAMERA_ID_RE.match(camera):
        raise BadRequest("bad camera id")
    return camera


def _inside(base: Path, relative: str) -> Path:
    """`base/relative`, refusing anything that resolves outside `base` (a tampered index row)."""
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise NotFound("no such file")
    return path


# ------------------------------------------------------------------------------------------------
# Static pages


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def ca_certificate(request: web.Request) -> web.Response:
    path = request.app[SERVICES].config.keys_dir / "web-ca.crt"
    try:
        pem = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound("HTTPS is not enabled on this hub (no local CA yet)") from exc
    return web.Response(
        body=pem,
        content_type="application/x-x509-ca-cert",
        headers={"Content-Disposition": 'attachment; filename="camhub-ca.crt"'},
    )


# ------------------------------------------------------------------------------------------------
# Cameras, timeline, media, events


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def _redacted(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """Camera errors can quote the pull URL; never show its password, even to the owner's page."""
    if status is None or not status.get("last_error"):
        return status
    return {**status, "last_error": _URL_USERINFO.sub(r"\1***@", status["last_error"])}


def _stream_key(url: str | None) -> tuple[str, int | None, str] | None:
    """host, port and path of a camera URL, ignoring credentials (the same camera, however written)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    return ((parts.hostname or "").lower(), port, parts.path.rstrip("/") or "/")


async def cameras(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    status = await services.store.run(q.camera_status)
    if services.cameras is not None:
        # The rows keep errors and reconnects; whether a camera streams now is read live (a row is
        # written only when that changes, hub/ingest/camera.py STATUS_SAVE_S).
        now = time.time()
        for cam_id, live in services.cameras.status().items():
            row = status.setdefault(cam_id, {"last_error": None, "reconnect_count": 0})
            last = live.last_frame_at or row.get("last_frame_at")
            row.update(online=live.online, last_frame_at=last, updated_at=now)
    owner_settings = request.app.get(OWNER_SETTINGS)
    added = owner_settings.cameras if owner_settings is not None else {}
    configured = []
    for c in services.config.cameras:
        camera: dict[str, Any] = {
            "id": c.id,
            "name": c.name,
            "source": "whip" if c.whip else "rtsp",
            "record": c.record,
            "audio": c.audio,
            "rtsp_transport": c.rtsp_transport,
            "retention_days": c.retention_days
            if c.retention_days is not None
            else services.config.storage.max_age_days,
            "status": _redacted(status.get(c.id)),
            # camhub.toml cameras are read-only in the UI; those added there are editable (hub/settings.py)
            "configured_in": "file",
        }
        if c.id in added:
            camera.update(public_camera(added[c.id]), configured_in="settings")
            camera["own_retention_days"] = c.retention_days
            camera["retention_days"] = camera["own_retention_days"] or services.config.storage.max_age_days
        configured.append(camera)
    discovery = getattr(services, "discovery", None)
    found = []
    # A discovered camera whose stream is one the hub already pulls is not offered as new.
    pulled = {k: c.id for c in services.config.cameras if (k := _stream_key(c.url)) is not None}
    if discovery is not None:
        for cam in discovery.cameras():
            found.append(
                {
                    "protocol": "mdns",
                    "added_as": pulled.get(_stream_key(cam.rtsp_url) or ("", None, "")),
                    "uid": cam.uid,
                    "instance": cam.instance,
                    "model": cam.model,
                    "addresses": list(cam.addresses),
                    "rtsp_url": cam.rtsp_url,
                    "events_url": cam.events_url,
                    "last_seen": cam.last_seen,
                }
            )
    onvif_discovery = getattr(services, "onvif_discovery", None)
    if onvif_discovery is not None:
        # ONVIF cameras (WS-Discovery): added with their credentials, which read their stream URIs.
        onvif_added = {k: c.id for c in services.config.cameras if (k := _stream_key(c.onvif)) is not None}
        for ocam in onvif_discovery.cameras():
            found.append(
                {
                    "protocol": "onvif",
                    "added_as": onvif_added.get(_stream_key(ocam.onvif_url) or ("", None, "")),
                    "uid": ocam.uid,
                    "instance": ocam.name or ocam.address,
                    "model": ocam.hardware,
                    "addresses": [ocam.address],
                    "rtsp_url": None,
                    "onvif_url": ocam.onvif_url,
                    "events_url": None,
                    "last_seen": ocam.last_seen,
                }
            )
    recorded = await services.store.run(segments_q.camera_ids)
    member = request[PRINCIPAL].member
    if member is not None:
        # A household member (PROTOCOL §1.2): their cameras only, and nothing about the setup.
        mine = [
            {"id": c["id"], "name": c["name"], "status": c["status"], "rights": member.rights[c["id"]]}
            for c in configured
            if any(member.rights.get(c["id"], {}).values())
        ]
        recorded = [r for r in recorded if member.may(r, "recordings")]
        return web.json_response({"cameras": mine, "recorded": recorded, "discovered": []})
    return web.json_response({"cameras": configured, "recorded": recorded, "discovered": found})


async def timeline(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    camera = _camera_arg(request)
    assert camera is not None
    start, end = _float_arg(request, "start"), _float_arg(request, "end")
    if not 0 < end - start <= MAX_RANGE_S:
        raise BadRequest(f"need start < end and a range of at most {MAX_RANGE_S} s")
    segments = await services.store.run(segments_q.segments_between, camera, start, end)
    gaps = await services.store.run(segments_q.gaps_between, camera, start, end)
    events = await services.store.run(q.events_between, [camera], start, end, 500)
    return web.json_response(
        {
            "camera": camera,
            "start": start,
            "end": end,
            "segments": [
                {
                    "id": s.id,
                    "start": s.start_at,
                    "end": s.end_at,
                    "bytes": s.bytes,
                    "width": s.width,
                    "height": s.height,
                    # The player asks the browser whether it can play these (H.265, audio).
                    "codec": s.codec,
                    "audio_codec": s.audio_codec,
                }
                for s in segments
            ],
            "gaps": [{"start": g.start_at, "end": g.end_at, "reason": g.reason} for g in gaps],
            "events": events,
        }
    )


# Where a viewer route's camera is (session.require_viewer's `camera_of`): 404 for an id that names
# nothing, exactly as the handler would answer the owner.


async def _camera_in_query(request: web.Request) -> str:
    camera = _camera_arg(request)
    assert camera is not None
    return camera


async def _segment_camera(request: web.Request) -> str:
    segment_id = int(request.match_info["id"])  # the route's pattern is \d+
    if segment_id >= 1 << 63:  # beyond SQLite's INTEGER
        raise NotFound("no such segment")
    row = await request.app[SERVICES].store.run(q.segment, segment_id)
    if row is None:
        raise NotFound("no such segment")
    return row[0]


async def _event_camera(request: web.Request) -> str:
    event = await request.app[SERVICES].store.run(events_q.get_event, request.match_info["id"])
    if event is None:
        raise NotFound("no thumbnail")
    return event.camera_id


async def _segment_file(request: web.Request) -> tuple[int, Any, Path]:
    """The segment named in the URL: (id, its index row, its file), or a 404 saying why."""
    services = request.app[SERVICES]
    try:
        segment_id = int(request.match_info["id"])
    except ValueError as exc:
        raise NotFound("no such segment") from exc
    row = await services.store.run(q.segment, segment_id)
    if row is None:
        raise NotFound("no such segment")
    path = _inside(services.config.segments_dir, row[1])
    if not path.is_file():
        raise NotFound("segment file is gone (retention)")
    return segment_id, row, path


async def segment_media(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    segment_id, row, path = await _segment_file(request)
    # Who watched what (PROTOCOL §5): once per segment per browser session, not per Range request.
    span = await services.store.run(q.segment_span, segment_id)
    await view_log(request).record(
        request, "view.playback",
        {"camera": row[0], "segment": segment_id,
         "start": rfc3339.format(span[0]) if span else None, "end": rfc3339.format(span[1]) if span else None},
        fold=(request[OWNER_SESSION].id_sha256, f"segment:{segment_id}"),
    )  # fmt: skip
    # no-store: footage must not outlive the session in the browser's cache (a shared tablet, a
    # phone handed to someone) nor a retention deletion on the hub.
    headers = {"Content-Type": "video/mp4", "Cache-Control": "no-store"}
    at_rest = services.at_rest
    if not await asyncio.to_thread(at_rest.is_sealed, path):
        # FileResponse answers Range requests with 206 and Content-Range (RFC 9110 §14), which the
        # <video> element uses to seek.
        return web.FileResponse(path, headers=headers)
    # Sealed at rest: a segment is a few seconds, so it is opened whole in memory for each request.
    return _ranged(request, await _open_sealed(at_rest.read_file, path), headers)


H264_COPIES = web.AppKey("h264_copies", H264Copies)


async def segment_h264(request: web.Request) -> web.StreamResponse:
    """The owner's H.265 footage re-encoded as H.264 for watching (never what leaves the box)."""
    services = request.app[SERVICES]
    segment_id, _row, path = await _segment_file(request)
    at_rest = services.at_rest

    def source() -> str | io.BytesIO:
        return io.BytesIO(at_rest.read_file(path)) if at_rest.is_sealed(path) else str(path)

    try:
        data = await request.app[H264_COPIES].get(segment_id, source)
    except (av.error.FFmpegError, IndexError, SealedError) as exc:
        log.error("H.264 copy of segment %d failed: %s", segment_id, exc)
        raise HubError(
            "this segment could not be converted for this browser", code="transcode_failed", status=500
        ) from exc
    return _ranged(request, data, {"Content-Type": "video/mp4", "Cache-Control": "no-store"})


async def _open_sealed(read: Callable[[Path], bytes], path: Path) -> bytes:
    try:
        return await asyncio.to_thread(read, path)
    except FileNotFoundError as exc:
        raise NotFound("file is gone (retention)") from exc
    except SealedError as exc:
        log.error("cannot open %s: %s", path, exc)
        raise HubError(str(exc), code=exc.code, status=500) from exc


def _ranged(request: web.Request, data: bytes, headers: dict[str, str]) -> web.Response:
    """`data` with HTTP Range (RFC 9110 §14): one range gets 206 + Content-Range, an unsatisfiable one
    416; a malformed or multi-range header is ignored and the whole body sent (§14.2 allows that)."""
    size = len(data)
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        rng = request.http_range
    except ValueError:
        rng = slice(None, None)
    if rng.start is None and rng.stop is None:
        return web.Response(body=data, headers=headers)
    if rng.start is not None and rng.start < 0:  # suffix range "bytes=-N": the last N bytes
        start, stop = max(0, size + rng.start), size
    else:
        start = rng.start or 0
        stop = size if rng.stop is None else min(rng.stop, size)
    if start >= size or start >= stop:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return web.Response(status=206, body=data[start:stop], headers=headers)


async def events(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    camera = _camera_arg(request, required=False)
    kind = request.query.get("kind") or None
    if kind is not None and kind not in events_q.KINDS:
        raise BadRequest(f"kind must be one of {', '.join(events_q.KINDS)}")
    day = None
    tz: dt.tzinfo = dt.UTC
    if request.query.get("day"):
        try:
            day = dt.date.fromisoformat(request.query["day"])
            # The browser's UTC offset in minutes (JavaScript's getTimezoneOffset() sign flipped).
            offset = int(request.query.get("tz_offset_min", "0"))
        except ValueError as exc:
            raise BadRequest("day must be YYYY-MM-DD and tz_offset_min an integer") from exc
        if not -16 * 60 <= offset <= 16 * 60:
            raise BadRequest("tz_offset_min out of range")
        # The day's bounds are computed with a day either side: 9999-12-31 would overflow datetime.
        if not dt.date(1970, 1, 1) <= day <= dt.date(9000, 1, 1):
            raise BadRequest("day out of range")
        tz = dt.timezone(dt.timedelta(minutes=offset))

    def query(conn: Any) -> list[events_q.Event]:
        return events_q.list_events(conn, camera_id=camera, kind=kind, day=day, tz=tz, limit=200)

    rows = await services.store.run(query)
    default_motion = MotionConfig()
    motion = {c.id: c.motion for c in services.config.cameras}

    def footage(e: events_q.Event) -> dict[str, float]:
        # The footage that shows the event, with the camera's configured pre-roll and post-roll.
        m = motion.get(e.camera_id, default_motion)
        start, end = events_q.footage_range(e, m.pre_roll_seconds, m.post_roll_seconds)
        return {"start": start, "end": end}

    return web.json_response(
        {
            "events": [
                {
                    "id": e.id,
                    "camera_id": e.camera_id,
                    "kind": e.kind,
                    "start_at": e.start_at,
                    "end_at": e.end_at,
                    "score": e.score,
                    "has_thumbnail": e.thumbnail is not None,
                    "source": e.source,
                    "footage": footage(e),
                }
                for e in rows
            ]
        }
    )


async def event_thumbnail(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    event = await services.store.run(events_q.get_event, request.match_info["id"])
    if event is None or event.thumbnail is None:
        raise NotFound("no thumbnail")
    path = _inside(services.config.hub.data_dir, event.thumbnail)
    if not path.is_file():
        raise NotFound("thumbnail file is gone")
    # Plain or sealed at rest (record/sealed.py tells them apart by magic); a JPEG is small.
    body = await _open_sealed(services.at_rest.read_file, path)
    return web.Response(body=body, headers={"Content-Type": "image/jpeg", "Cache-Control": "no-store"})


# ------------------------------------------------------------------------------------------------
# Consent: requests, grants, agencies, devices


def _agency_json(a: consent_q.Agency | None, keyid: str) -> dict[str, Any]:
    if a is None:
        return {"keyid": keyid, "name": None, "recipient": None, "active": False}
    return {
        "keyid": a.keyid,
        "name": a.name,
        "recipient": a.recipient,
        "sig_jwk": a.sig_jwk,
        "added_at": a.added_at,
        "removed_at": a.removed_at,
        "active": a.active,
    }


def _requests_snapshot(conn: Any, now: float, known_cameras: frozenset[str]) -> list[dict[str, Any]]:
    out = []
    records = consent_q.requests(conn, limit=100)
    histories = history_mod.histories(conn, [r.id for r in records], now)
    for r in records:
        body_bytes = consent_q.request_body(conn, r.id) or b"{}"
        try:
            body = json.loads(body_bytes)
        except ValueError:
            body = {}
        preview: list[dict[str, Any]] = []
        events_in_range: list[dict[str, Any]] = []
        if r.kind == "clip" and r.start_at is not None and r.end_at is not None:
            for camera in r.cameras:
                segs = segments_q.segments_between(conn, camera, r.start_at, r.end_at)
                preview.append(
                    {
                        "camera": camera,
                        "segments": [
                            {
                                "id": s.id,
                                "start": s.start_at,
                                "end": s.end_at,
                                "bytes": s.bytes,
                                "codec": s.codec,
                                "audio_codec": s.audio_codec,
                            }
                            for s in segs[:2000]
                        ],
                        "bytes": sum(s.bytes for s in segs),
                    }
                )
            events_in_range = q.events_between(conn, list(r.cameras), r.start_at, r.end_at, 12)
        out.append(
            {
                "id": r.id,
                "state": r.state,
                "expired": r.respond_by <= now,
                "received_at": r.received_at,
                "respond_by": r.respond_by,
                "request_sha256": r.body_sha256,
                "kind": r.kind,
                "cameras": list(r.cameras),
                "start": body.get("start"),
                "end": body.get("end"),
                "live_max_seconds": r.live_max_seconds,
                "case_id": body.get("case_id"),
                "reason": body.get("reason"),
                "legal_basis": body.get("legal_basis"),
                "contact": body.get("contact"),
                "agency": _agency_json(consent_q.agency(conn, r.agency_keyid), r.agency_keyid),
                "grants": [
                    {"id": g.id, "not_after": g.not_after, "revoked_at": g.revoked_at}
                    for g in consent_q.grants_for_request(conn, r.id)
                ],
                "preview": preview,
                "events": events_in_range,
                # PROTOCOL §2.1: an unknown camera is not an error to the agency (it sees pending),
                # but the owner is told: nothing of it can be sent.
                "unknown_cameras": [c for c in r.cameras if c not in known_cameras],
                "history": histories.get(r.id),
            }
        )
    return out


async def requests(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    known = frozenset(c.id for c in services.config.cameras)
    rows = await services.store.run(_requests_snapshot, time.time(), known)
    return web.json_response(
        {"requests": rows, "hub_id": services.hub_key.hub_id, "clock_synced": _clock_synced(request)}
    )


def _waiting(conn: Any, now: float) -> list[dict[str, Any]]:
    out = []
    for r in consent_q.requests(conn, state="pending", limit=100):
        if r.respond_by <= now:
            continue
        try:
            body = json.loads(consent_q.request_body(conn, r.id) or b"{}")
        except ValueError:
            body = {}
        agency = consent_q.agency(conn, r.agency_keyid)
        legal = body.get("legal_basis") if isinstance(body.get("legal_basis"), dict) else {}
        out.append(
            {
                "id": r.id,
                "agency": agency.name if agency is not None else None,
                "case_id": body.get("case_id"),
                "kind": r.kind,
                "urgent": legal.get("type") == "exigent",
                "received_at": r.received_at,
            }
        )
    return out


async def waiting(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    rows = await services.store.run(_waiting, time.time())
    return web.json_response({"waiting": rows}, headers={"Cache-Control": "no-store"})


def _grants_with_use(conn: Any, now: float) -> list[dict[str, Any]]:
    rows = q.grants_in_force(conn, now)
    histories = history_mod.histories(conn, sorted({g["request_id"] for g in rows}), now)
    for g in rows:
        approval = next(
            (a for a in (histories.get(g["request_id"]) or {}).get("approvals", []) if a["id"] == g["id"]),
            None,
        )
        # Downloads used per camera and when it stops, from the audit log (hub/api/history.py).
        g["downloads_used"] = approval["downloads_used"] if approval else {}
        g["ends_at"] = approval["ends_at"] if approval and approval["ends_at"] else g["not_after"]
    # A livestream approval whose window (live_max_seconds from the first connection) has run out is
    # not in force any more, though its not_after is still ahead.
    return [g for g in rows if g["ends_at"] > now]


async def grants(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    rows = await services.store.run(_grants_with_use, time.time())
    return web.json_response({"grants": rows})


async def holds(request: web.Request) -> web.Response:
    """Footage retention keeps for agencies: pending requests (until respond_by) and approvals."""
    services = request.app[SERVICES]
    limits = services.consent.hold_limits() if services.consent is not None else None
    rows = await services.store.run(consent_q.holds_detail, time.time(), limits)
    return web.json_response({"holds": rows})


async def revoke_preview(request: web.Request) -> web.Response:
    """What revoking this device would also revoke (PROTOCOL §3 revoke-key), for the confirmation."""
    from hub.consent.owners import revoke_plan

    services = request.app[SERVICES]
    plan = await services.store.run(revoke_plan, request.match_info["kid"][:128])
    if plan is None:
        raise NotFound("no enrolled, unrevoked owner key with this kid")
    return web.json_response(plan.to_json())


async def agencies(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    rows = await services.store.run(consent_q.agencies, True)
    return web.json_response({"agencies": [_agency_json(a, a.keyid) for a in rows]})


async def devices(request: web.Request) -> web.Response:
    services = request.app[SERVICES]

    def snapshot(
        conn: Any,
    ) -> tuple[list[consent_q.OwnerKey], list[dict[str, Any]], dict[str, consent_q.Passkey]]:
        keys = consent_q.active_owner_keys(conn)
        enrolled = {k.kid for k in keys}
        pending = [d for d in q.device_requests(conn, time.time() - 24 * 3600) if d["kid"] not in enrolled]
        return keys, pending, consent_q.passkeys(conn)

    keys, pending, passkeys = await services.store.run(snapshot)

    def key_json(k: consent_q.OwnerKey) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kid": k.kid, "name": k.name, "enrolled_at": k.enrolled_at, "enrolled_by": k.enrolled_by
        }  # fmt: skip
        if k.kid in passkeys:  # PROTOCOL §3.1: what the UI asks the browser to sign with
            pk = passkeys[k.kid]
            out["passkey"] = {"credential_id": pk.credential_id, "rp_id": pk.rp_id}
        return out

    return web.json_response(
        {
            "keys": [key_json(k) for k in keys],
            "pending": pending,
        }
    )


async def add_device_request(request: web.Request) -> web.Response:
    """A logged-in browser whose key is not enrolled asks an enrolled device to approve it (§3 enroll-key)."""
    services = request.app[SERVICES]
    try:
        body = await request.json()
        public_jwk = body["public_jwk"]
        name = body["name"]
        if not isinstance(public_jwk, dict) or set(public_jwk) - {"kty", "crv", "x", "ext", "key_ops"}:
            raise ValueError("public_jwk must be a public OKP JWK")
        public_jwk = {k: public_jwk[k] for k in ("kty", "crv", "x") if k in public_jwk}
        kid = jwk_thumbprint(public_jwk)
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise ValueError("name must be 1-64 characters")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[..."
        raise BadRequest(f"need {{public_jwk, name}}: {exc}") from exc
    await services.store.run(q.add_device_request, kid, public_jwk, name, time.time())
    return web.json_response({"kid": kid}, status=201)


def _clock_synced(request: web.Request) -> bool | None:
    """PROTOCOL §6: whether consent decisions may run now (None: no consent service)."""
    consent = request.app[SERVICES].consent
    return None if consent is None else consent.clock.synced()


async def settings(request: web.Request) -> web.Response:
    config = request.app[SERVICES].config
    owner_settings = request.app.get(OWNER_SETTINGS)
    file_storage = owner_settings.file_config.storage if owner_settings is not None else config.storage
    return web.json_response(
        {
            "name": config.hub.name,
            "storage": {
                "segment_seconds": config.storage.segment_seconds,
                "max_age_days": config.storage.max_age_days,
                "quota_bytes": config.storage.quota_bytes,
                "min_free_percent": config.storage.min_free_percent,
                # What camhub.toml says, and which of the above the owner changed in the UI instead.
                "file": {"max_age_days": file_storage.max_age_days, "quota_bytes": file_storage.quota_bytes},
                "overrides": sorted(owner_settings.storage) if owner_settings is not None else [],
            },
            "consent": {
                "respond_by_days": config.consent.respond_by_days,
                "max_fetches": config.consent.max_fetches,
                "trust_system_clock": config.consent.trust_system_clock,
            },
            "https_port": config.https_port,
            "clock_synced": _clock_synced(request),
            # The outbound link to a camhub-relay (PROTOCOL §7): connected / retrying, or null.
            "relay": _relay_status(request),
        }
    )


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    # isascii: str.isdigit() is also true for "²" and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadRequest(f"query parameter {name} must be a non-negative integer")
    return int(value)


def _audit_names(conn: Any, entries: list[dict[str, Any]], cameras: dict[str, str]) -> dict[str, Any]:
    """Display names for what the page's entries mention; the entries themselves stay exact bytes."""
    kids: set[str] = set()
    agencies: set[str] = set()
    requests: set[str] = set()
    deliveries: set[str] = set()
    for e in entries:
        actor = str(e.get("actor", ""))
        if actor.startswith("owner:"):
            kids.add(actor.removeprefix("owner:"))
        if actor.startswith("agency:"):
            agencies.add(actor.removeprefix("agency:"))
        data = e.get("data") if isinstance(e.get("data"), dict) else {}
        for member, into in (("kid", kids), ("keyid", agencies), ("recipient", agencies),
                             ("request_id", requests), ("delivery_id", deliveries)):  # fmt: skip
            if isinstance(data.get(member), str):
                into.add(data[member][:128])
    out: dict[str, Any] = {
        "cameras": cameras,
        "owner_keys": {},
        "agencies": {},
        "requests": {},
        "deliveries": {},
    }
    for kid in sorted(kids)[:500]:
        key = consent_q.owner_key(conn, kid)
        if key is not None:
            out["owner_keys"][kid] = key.name
    for keyid in sorted(agencies)[:500]:
        agency = consent_q.agency(conn, keyid)
        if agency is not None:
            out["agencies"][keyid] = agency.name
    for rid in sorted(requests)[:500]:
        record = consent_q.request(conn, rid)
        if record is None:
            continue
        try:
            case_id = json.loads(consent_q.request_body(conn, rid) or b"{}").get("case_id")
        except (ValueError, AttributeError):
            case_id = None
        agency = consent_q.agency(conn, record.agency_keyid)
        out["requests"][rid] = {"agency": agency.name if agency else None, "case_id": case_id}
    for did in sorted(deliveries)[:500]:
        d = consent_q.delivery(conn, did)
        if d is not None:
            out["deliveries"][did] = {"camera": d.camera_id, "start": d.start_at, "end": d.end_at}
    return out


def _relay_status(request: web.Request) -> dict[str, Any] | None:
    uplink = request.app[SERVICES].uplink
    return None if uplink is None else uplink.describe()


async def audit_entries(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    consent = services.consent
    if consent is None:
        raise HubError("the audit log is not running", code="unavailable", status=503)
    audit = consent.audit
    limit = _int_query(request, "limit", DEFAULT_AUDIT_PAGE)
    assert limit is not None
    if not 1 <= limit <= MAX_AUDIT_PAGE:
        raise BadRequest(f"limit must be 1..{MAX_AUDIT_PAGE}")
    size = _int_query(request, "size", None)
    before = _int_query(request, "before", None)
    types = {t for t in request.query.get("types", "").split(",") if t}
    if len(types) > 50 or any(len(t) > 64 for t in types):
        raise BadRequest("types: at most 50 entry types")
    note: str | None = None
    if size is None:
        # The latest checkpoint of the whole log: sign one now if entries were appended since the
        # last (as GET /api/v1/audit/checkpoint does), so every entry on the page can be proven.
        latest = await services.store.run(audit_q.latest_checkpoint)
        note = latest[1] if latest is not None and latest[0] == audit.size else await audit.checkpoint()
        size = int(note.split("\n")[1])
    if not 0 <= size <= audit.size:
        raise BadRequest(f"size must be 0..{audit.size}")
    before = size if before is None else min(before, size)
    cameras = {c.id: c.name for c in services.config.cameras}

    def read(conn: Any) -> tuple[int, list[tuple[int, bytes]], int | None, dict[str, Any]]:
        total = audit_q.entry_count(conn)
        picked: list[tuple[int, bytes]] = []
        cursor, scanned = before, 0
        while cursor > 0 and len(picked) < limit:
            batch = audit_q.entries_before(conn, cursor, limit if not types else AUDIT_SCAN_BATCH)
            if not batch:
                cursor = 0
                break
            for seq, raw in batch:
                cursor = seq
                scanned += 1
                if not types or json.loads(raw).get("type") in types:
                    picked.append((seq, raw))
                    if len(picked) == limit:
                        break
            if types and scanned >= AUDIT_SCAN_MAX:
                break
        next_before = cursor if cursor > 0 else None
        names = _audit_names(conn, [json.loads(raw) for _, raw in picked], cameras)
        return total, picked, next_before, names

    total, rows, next_before, names = await services.store.run(read)
    return web.json_response(
        {
            "size": total,
            "tree_size": size,
            "checkpoint": note,
            "entries": [
                {
                    "seq": seq,
                    "entry": raw.decode("utf-8"),
                    "inclusion_proof": [
                        base64.b64encode(h).decode("ascii") for h in audit.inclusion_proof(seq, size)
                    ],
                }
                for seq, raw in rows
            ],
            "next_before": next_before,
            "names": names,
            "hub_public_jwk": services.hub_key.public_jwk,
        },
        headers={"Cache-Control": "no-store"},
    )


def setup(app: web.Application) -> None:
    if not (WEB_DIR / "index.html").is_file():
        raise HubError(f"owner UI files missing in {WEB_DIR}", status=500)
    app.router.add_get("/", index)
    app.router.add_static("/ui/", WEB_DIR, show_index=False, follow_symlinks=False)
    app.router.add_get("/ca.crt", ca_certificate)
    owner = require_owner
    # Viewer routes (PROTOCOL §1.2): the owner, or a household member with the right on the camera.
    recordings = functools.partial(require_viewer, right="recordings")
    app.router.add_get("/api/v1/owner/cameras", require_viewer(cameras, right=None))
    app.router.add_get("/api/v1/owner/timeline", recordings(timeline, camera_of=_camera_in_query))
    app.router.add_get(
        r"/api/v1/owner/segments/{id:\d+}.mp4", recordings(segment_media, camera_of=_segment_camera)
    )
    app[H264_COPIES] = H264Copies()
    app.router.add_get(
        r"/api/v1/owner/segments/{id:\d+}/h264.mp4", recordings(segment_h264, camera_of=_segment_camera)
    )
    app.router.add_get("/api/v1/owner/events", owner(events))
    app.router.add_get(r"/api/v1/owner/events/{id}.jpg", recordings(event_thumbnail, camera_of=_event_camera))
    app.router.add_get("/api/v1/owner/requests", owner(requests))
    app.router.add_get("/api/v1/owner/requests/waiting", owner(waiting))
    app.router.add_get("/api/v1/owner/grants", owner(grants))
    app.router.add_get("/api/v1/owner/agencies", owner(agencies))
    app.router.add_get("/api/v1/owner/holds", owner(holds))
    app.router.add_get("/api/v1/owner/devices/{kid}/revoke-preview", owner(revoke_preview))
    app.router.add_get("/api/v1/owner/devices", owner(devices))
    app.router.add_post("/api/v1/owner/device-requests", owner(add_device_request))
    app.router.add_get("/api/v1/owner/settings", owner(settings))
    app.router.add_get("/api/v1/owner/audit/entries", owner(audit_entries))
