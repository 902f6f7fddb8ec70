"""Signed agency requests (PROTOCOL.md §2): authentication, asking for footage (§2.1), polling (§2.2).

Every call under `/api/agency/v1/` is authenticated here with RFC 9421 (`httpsig.verify_request_async`):
the key must belong to an agency the owner added and has not removed, and the nonce must be new for
that key within 600 s. Nonces live in the database (`seen_nonces`), so a restart forgets none; they
are recorded only after the signature and digest verified, so unauthenticated traffic cannot fill
the table. Every rejection is an audit entry (`request.rejected`) and answers the same way whether the
key is unknown or removed: 401 and nothing about cameras or footage.

The privacy rule (§2.2). A decline, no footage in range, an unknown camera and an expired request
look the same to the agency: `pending` until `respond_by`, then `closed`. That is structural here:
the agency-facing status is computed by one function (`agency_status`) from the request's times,
the grant and the deliveries only — the internal `declined` state never reaches it — and every poll,
including one for an unknown or another agency's id, costs the same single indexed query. An unknown
camera is accepted like any other (§2.1), so the 202 reveals nothing either.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from camhub_protocol import httpsig, rfc3339, sealed_bodies
from camhub_protocol.errors import ConsentError, SignatureError
from camhub_protocol.keys import public_key_from_jwk
from camhub_protocol.structured_fields import InnerList, parse_dictionary
from hub.consent.service import NONCE_WINDOW_S, ConsentService
from hub.store import consent as q

MAX_BODY_BYTES = httpsig.MAX_BODY_BYTES
MAX_SPAN_S = 24 * 3600
MAX_LIVE_S = 3600
MAX_REASON_CHARS = 2000
MAX_TEXT_CHARS = 2000
MAX_CAMERAS = 64
LEGAL_BASES = ("consent", "warrant", "exigent")
REQUEST_FIELDS = frozenset(
    {"hub", "case_id", "kind", "cameras", "start", "end", "live_max_seconds", "reason", "legal_basis",
     "contact"}
)  # fmt: skip
REQUIRED_FIELDS = ("hub", "case_id", "kind", "cameras", "reason", "legal_basis", "contact")
NOT_FOUND_DETAIL = "no such request"


@dataclass(frozen=True)
class SignedMessage:
    """An incoming agency HTTP request, as received (RFC 9421 covers these exact values)."""

    method: str
    authority: str
    path: str
    query: str | None
    headers: list[tuple[str, str]]
    body: bytes
    scheme: str
    remote: str
    # The router's pattern (`POST /api/agency/v1/requests`): what refusals are counted under.
    route: str = ""


@dataclass(frozen=True)
class RequestFields:
    """A validated §2.1 request body."""

    kind: str
    cameras: tuple[str, ...]
    start: float | None
    end: float | None
    live_max_seconds: int | None
    case_id: str


def _claimed_keyid(msg: SignedMessage) -> str | None:
    """The keyid a rejected request claimed, for the audit entry only (never trusted)."""
    for name, value in msg.headers:
        if name.lower() == "signature-input":
            try:
                member = parse_dictionary(value).get(httpsig.LABEL)
            except ConsentError:
                return None
            if isinstance(member, InnerList):
                keyid = member.params.get("keyid")
                return keyid if isinstance(keyid, str) else None
    return None


async def reject(
    svc: ConsentService, msg: SignedMessage, exc: ConsentError, keyid: str | None = None
) -> None:
    """Audit one refused agency call (§2, §5): one entry each for a verified agency (`keyid`);
    counted per route and reason for calls whose signature proved nothing (`svc.record_unauthenticated`)."""
    data: dict[str, Any] = {
        "code": exc.code,
        "status": exc.status,
        "method": msg.method,
        "path": msg.path[:512],
        "remote": msg.remote,
    }
    if keyid and exc.code != "rate_limited":
        await svc.record("request.rejected", f"agency:{keyid}", data)
        return
    if keyid:
        # A trusted agency past its rate limit is counted like a flood, not logged call by call.
        route = msg.route or f"{msg.method} {msg.path[:200]}"
        await svc.record_unauthenticated("request.rejected", route, exc.code, data, f"agency:{keyid}")
        return
    claimed = _claimed_keyid(msg)
    if claimed:
        data["claimed_keyid"] = claimed[:128]
    route = msg.route or f"{msg.method} {msg.path[:200]}"
    await svc.record_unauthenticated("request.rejected", route, exc.code, data)


async def authenticate(
    svc: ConsentService, msg: SignedMessage, *, queued_max_age_s: int | None = None
) -> httpsig.Verified:
    """§2: verify the RFC 9421 signature of an agency call; audit and raise on any rejection.
    `queued_max_age_s`: the call was held in a relay's queue (§7.2), see `httpsig`."""
    try:
        await svc.require_clock("unauthenticated", f"{msg.method} {msg.path}")
        if len(msg.body) > MAX_BODY_BYTES:
            raise SignatureError("body_too_large", f"body over {MAX_BODY_BYTES} bytes", status=413)
        now = svc.now()

        async def resolve_key(keyid: str) -> Ed25519PublicKey | None:
            agency = await svc.store.run(q.agency, keyid)
            if agency is None or not agency.active:
                return None
            return public_key_from_jwk(agency.sig_jwk)

        async def nonce_check(keyid: str, nonce: str, expires: int) -> bool:
            return await svc.store.run(q.record_nonce, keyid, nonce, now, NONCE_WINDOW_S)

        return await httpsig.verify_request_async(
            method=msg.method,
            authority=msg.authority,
            path=msg.path,
            query=msg.query,
            headers=msg.headers,
            body=msg.body,
            now=int(now),
            resolve_key=resolve_key,
            nonce_check=nonce_check,
            scheme=msg.scheme,
            queued_max_age_s=queued_max_age_s,
        )
    except ConsentError as exc:
        if exc.code != "clock_unsynced":
            await reject(svc, msg, exc)
        raise


def new_id() -> str:
    """128 random bits, base64url, starting with a letter or digit: an id that begins with "-" would
    be read as an option by command-line tools that take it as an argument."""
    while True:
        candidate = secrets.token_urlsafe(16)
        if candidate[0].isalnum():
            return candidate


def _field_error(name: str, problem: str) -> ConsentError:
    return ConsentError("invalid_field", f"{name}: {problem}", 400)


def _text(obj: dict[str, Any], name: str, max_chars: int, *, nullable: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _field_error(name, "must be a string")
    if len(value) > max_chars:
        raise _field_error(name, f"must be at most {max_chars} characters")
    return value


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConsentError("invalid_json", f"duplicate member {key!r}", 400)
        out[key] = value
    return out


def _bad_constant(name: str) -> Any:
    raise ConsentError("invalid_json", f"{name} is not JSON", 400)


def parse_body(body: bytes, hub_id: str, now: float | None = None) -> RequestFields:
    """Validate a §2.1 body (a clip's `end` not after `now`, when given). Raises 400
    `invalid_json`, `unknown_field`, `missing_field`, `invalid_field` or `wrong_hub`."""
    try:
        doc = json.loads(
            body.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_bad_constant
        )
    except ConsentError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConsentError("invalid_json", "body is not a UTF-8 JSON document", 400) from exc
    if not isinstance(doc, dict):
        raise ConsentError("invalid_json", "body must be a JSON object", 400)
    unknown = sorted(set(doc) - REQUEST_FIELDS)
    if unknown:
        raise ConsentError("unknown_field", f"unknown fields: {', '.join(unknown)}", 400)
    missing = [f for f in REQUIRED_FIELDS if f not in doc]
    if missing:
        raise ConsentError("missing_field", f"missing fields: {', '.join(missing)}", 400)
    if not isinstance(doc["hub"], str):
        raise _field_error("hub", "must be a string")
    if doc["hub"] != hub_id:
        # §2.1: a request signed for one hub cannot be replayed at another.
        raise ConsentError("wrong_hub", "hub is not this hub's hub_id", 400)
    case_id = _text(doc, "case_id", 200) or ""
    _text(doc, "reason", MAX_REASON_CHARS)
    _text(doc, "contact", MAX_TEXT_CHARS)
    legal = doc["legal_basis"]
    if not isinstance(legal, dict):
        raise _field_error("legal_basis", "must be an object")
    extra = sorted(set(legal) - {"type", "reference"})
    if extra:
        raise ConsentError(
            "unknown_field", f"unknown fields: legal_basis.{', legal_basis.'.join(extra)}", 400
        )
    if legal.get("type") not in LEGAL_BASES:
        raise _field_error("legal_basis.type", f"must be one of {', '.join(LEGAL_BASES)}")
    _text(legal, "reference", MAX_TEXT_CHARS, nullable=True)

    cameras = doc["cameras"]
    if not isinstance(cameras, list) or not cameras:
        raise _field_error("cameras", "must be a non-empty list of camera ids")
    if len(cameras) > MAX_CAMERAS:
        raise _field_error("cameras", f"at most {MAX_CAMERAS} cameras")
    if not all(isinstance(c, str) and 0 < len(c) <= 128 for c in cameras):
        raise _field_error("cameras", "camera ids are non-empty strings")
    if len(set(cameras)) != len(cameras):
        raise _field_error("cameras", "a camera is listed twice")

    kind = doc["kind"]
    start_text, end_text, live = doc.get("start"), doc.get("end"), doc.get("live_max_seconds")
    if kind == "clip":
        if live is not None:
            raise _field_error("live_max_seconds", "must be null for a clip")
        try:
            start, end = rfc3339.parse(start_text), rfc3339.parse(end_text)
        except ValueError as exc:
            raise _field_error("start/end", str(exc)) from exc
        if not start < end:
            raise _field_error("end", "must be after start")
        if end - start > MAX_SPAN_S:
            raise _field_error("end", "the span must be at most 24 h")
        if now is not None and end > now:
            # Footage not yet recorded cannot be asked for: a request's range is a retention hold
            # until respond_by, and a range in the future would hold whatever gets recorded there.
            raise _field_error("end", "must not be in the future (ask for footage already recorded)")
        return RequestFields("clip", tuple(cameras), start, end, None, case_id)
    if kind == "live":
        if start_text is not None or end_text is not None:
            raise _field_error("start/end", "must be null for a livestream")
        if isinstance(live, bool) or not isinstance(live, int) or not 1 <= live <= MAX_LIVE_S:
            raise _field_error("live_max_seconds", f"must be an integer in 1..{MAX_LIVE_S}")
        return RequestFields("live", tuple(cameras), None, None, live, case_id)
    raise _field_error("kind", "must be clip or live")


AREA_FIELDS = frozenset(
    {"area", "case_id", "kind", "start", "end", "reason", "legal_basis", "contact"}
)  # fmt: skip


def parse_area_body(
    body: bytes, cell: str, cameras: tuple[str, ...], now: float | None = None
) -> RequestFields:
    """Validate a §7.4 area request: the §2.1 rules of a clip, with `area` instead of `hub` and
    `cameras` (the hub's own, which the owner narrows in the approval). Raises 400 like `parse_body`."""
    try:
        doc = json.loads(
            body.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_bad_constant
        )
    except ConsentError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConsentError("invalid_json", "body is not a UTF-8 JSON document", 400) from exc
    if not isinstance(doc, dict):
        raise ConsentError("invalid_json", "body must be a JSON object", 400)
    unknown = sorted(set(doc) - AREA_FIELDS)
    if unknown:
        raise ConsentError("unknown_field", f"unknown fields: {', '.join(unknown)}", 400)
    if doc.get("area") != cell:
        raise ConsentError("wrong_area", "area is not the cell of the URL", 400)
    if doc.get("kind") != "clip":
        raise _field_error("kind", "an area request is a clip")
    if not cameras:
        raise ConsentError("no_cameras", "this hub has no cameras", 400)
    inner = {k: v for k, v in doc.items() if k != "area"}
    fields = parse_body(
        json.dumps({**inner, "hub": "-", "cameras": list(cameras), "live_max_seconds": None}).encode(),
        "-",
        now,
    )
    return fields


async def submit(
    svc: ConsentService,
    msg: SignedMessage,
    verified: httpsig.Verified,
    *,
    request_id: str | None = None,
    respond_by: float | None = None,
    area: tuple[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """§2.1: store a verified request and answer `{"id","status":"pending","respond_by"}`.

    From a relay's queue (§7.2) the id and respond_by are given (derived from the signature); an
    area request (§7.4) comes with `area` = (cell, this hub's cameras)."""
    keyid = verified.keyid
    now = svc.now()
    body = msg.body
    try:
        content_type = next((v for k, v in msg.headers if k.lower() == "content-type"), "")
        if sealed_bodies.is_sealed(content_type):
            # §7.6: the JSON request sealed to this hub (what a relay carries); the signature covered
            # the sealed bytes, the digest the owner signs over is of the JSON inside.
            body = svc.open_sealed(msg.body)
        elif content_type.split(";")[0].strip().lower() != "application/json":
            raise ConsentError(
                "unsupported_media_type", "Content-Type must be application/json (or application/age)", 415
            )
        if respond_by is not None and respond_by <= now:
            raise ConsentError(
                "respond_by_passed", "the request waited in the queue past its respond_by", 400
            )
        if area is not None:
            fields = parse_area_body(body, area[0], area[1], now)
        else:
            fields = parse_body(body, svc.hub_id, now)
        wait = svc.agency_limits.take(keyid, time.monotonic())
        if wait > 0:
            raise ConsentError(
                "rate_limited",
                f"at most {svc.config.consent.agency_requests_per_hour} requests per hour;"
                f" try again in {math.ceil(wait)} s",
                429,
                retry_after=wait,
            )
    except ConsentError as exc:
        await reject(svc, msg, exc, keyid)
        raise
    record = q.RequestRecord(
        id=request_id or new_id(),
        agency_keyid=keyid,
        body_sha256=hashlib.sha256(body).hexdigest(),
        kind=fields.kind,
        cameras=fields.cameras,
        start_at=fields.start,
        end_at=fields.end,
        live_max_seconds=fields.live_max_seconds,
        received_at=now,
        respond_by=respond_by if respond_by is not None else now + svc.config.consent.respond_by_days * 86400,
        state="pending",
    )
    await svc.store.run(q.insert_request, record, body)
    if record.kind == "clip":
        # Add this request's ranges instead of re-reading every pending request: a full refresh per
        # submission made each one O(pending requests), the top of the daemon's profile with 50
        # agencies filing (bench/agency_bench.py). Decisions and the checkpoint loop still refresh.
        svc.add_holds(record.cameras, record.start_at, record.end_at)
    await svc.record(
        "request.received",
        f"agency:{keyid}",
        {
            "request_id": record.id,
            "request_sha256": record.body_sha256,
            "kind": record.kind,
            "cameras": list(record.cameras),
            "start": svc.time_text(record.start_at),
            "end": svc.time_text(record.end_at),
            "live_max_seconds": record.live_max_seconds,
            "case_id": fields.case_id,
            "respond_by": rfc3339.format(record.respond_by),
        },
    )
    return {"id": record.id, "status": "pending", "respond_by": rfc3339.format(record.respond_by)}


@dataclass(frozen=True)
class PollView:
    request: q.RequestRecord | None
    grants: list[q.GrantRecord]
    deliveries: list[q.DeliveryRecord]


def _poll_view(conn: Any, request_id: str, keyid: str) -> PollView:
    # The same three indexed reads happen for every id, found or not (no early return: §2.2 timing).
    record = q.request_of_agency(conn, request_id, keyid)
    rid = record.id if record is not None else ""
    return PollView(record, q.grants_for_request(conn, rid), q.deliveries_for_request(conn, rid))


def agency_status(view: PollView, now: float) -> str:
    """The only place the agency-facing status is computed (§2.2 privacy rule, see module doc)."""
    record = view.request
    assert record is not None
    if record.state == "closed":
        return "closed"
    grant = next((g for g in reversed(view.grants)), None)
    if grant is not None:
        usable = grant.revoked_at is None and grant.ended_at is None and grant.ends_at > now
        if grant.kind == "live":
            return "live" if usable else "closed"
        if any(d.grant_id == grant.id for d in view.deliveries):
            return "fulfilled" if usable else "closed"
        # Approved with no footage (or not built yet): indistinguishable from a decline.
    return "pending" if now < record.respond_by else "closed"


async def poll(
    svc: ConsentService, msg: SignedMessage, keyid: str, request_id: str, base_url: str
) -> dict[str, Any]:
    """§2.2: the status of one of this agency's requests; 404 (same shape) for anything else."""
    view = await svc.store.run(_poll_view, request_id[:128], keyid)
    if view.request is None:
        refusal = await svc.store.run(q.relay_refusal, request_id[:128], keyid)
        if refusal is not None:
            # §7.2: a queued request refused after the agency's signature verified.
            return {
                "id": refusal.id,
                "status": "refused",
                "respond_by": rfc3339.format(refusal.respond_by),
                "error": refusal.code,
                "detail": refusal.detail,
            }
        exc = ConsentError("not_found", NOT_FOUND_DETAIL, 404)
        await reject(svc, msg, exc, keyid)
        raise exc
    now = svc.now()
    status = agency_status(view, now)
    out: dict[str, Any] = {
        "id": view.request.id,
        "status": status,
        "respond_by": rfc3339.format(view.request.respond_by),
    }
    if status == "fulfilled":
        grant = view.grants[-1]
        out["deliveries"] = [
            {"url": f"{base_url}/api/agency/v1/deliveries/{d.id}", "bytes": d.bytes, "sha256": d.sha256}
            for d in view.deliveries
            if d.grant_id == grant.id
        ]
    elif status == "live":
        grant = view.grants[-1]
        out["live"] = {
            "url": f"{base_url}/api/agency/v1/live/{grant.id}",
            "not_after": rfc3339.format(grant.ends_at),
        }
    return out
