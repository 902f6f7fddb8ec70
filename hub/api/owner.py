"""Owner routes of the consent protocol (PROTOCOL.md §1, §3, §5, §6):

    POST /api/v1/owner/enroll       pairing code   first owner key `{"pairing_code","public_jwk","name"}` → 201 {"kid"}
    POST /api/v1/decisions          owner JWS      every owner decision, `application/jose` → 201 {"decision_id","request_id"?}
                                    or passkey     the same as a WebAuthn assertion, `application/json` (§3.1)
    POST /api/v1/owner/clock        owner JWS      confirm the hub's clock (§6; see hub/consent/clock.py)
    GET  /api/v1/audit/checkpoint   owner session  the latest signed checkpoint (C2SP signed note, text/plain)
    GET  /api/v1/audit/proof        owner session  ?seq=N&size=M → RFC 9162 inclusion proof
    GET  /api/v1/audit/consistency  owner session  ?from=A&to=B → RFC 9162 consistency proof

(declared in `hub/api/guards.py`). The signature is the authentication for decisions: no session is
needed (§1). Only the owner reads the log (§5: a decline is recorded, but only the owner can read it),
so the audit routes sit behind the owner session like the web UI's own routes — from the box itself
too: a local user of the machine is not the owner.
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from camhub_protocol import sealed_bodies
from camhub_protocol.errors import ConsentError
from hub.api.session import check_owner_local, require_owner
from hub.consent import decisions, owners
from hub.consent.clock_confirm import confirm_clock
from hub.consent.service import ConsentService
from hub.services import SERVICES
from hub.store import audit as audit_q

JOSE = "application/jose"


def _consent(request: web.Request) -> ConsentService:
    consent = request.app[SERVICES].consent
    assert consent is not None
    return consent


async def _jose_body(request: web.Request, passkey: bool = False) -> bytes:
    """The signed body: a JWS (`application/jose`), for decisions also a passkey decision
    (`application/json`, PROTOCOL §3.1), or either sealed to the hub (§7.6). Which one a sealed body
    is, `decisions.submit` (and `confirm_clock`) tells by its first byte; elsewhere only a JWS."""
    if request.content_type == sealed_bodies.CONTENT_TYPE:
        # A decision sealed to the hub (PROTOCOL §7.6), as owner tools send it through a relay.
        body = _consent(request).open_sealed(await request.read()).strip()
    elif request.content_type == JOSE or (passkey and request.content_type == "application/json"):
        body = (await request.read()).strip()
    else:
        allowed = f"{JOSE} or application/json" if passkey else JOSE
        raise ConsentError("unsupported_media_type", f"Content-Type must be {allowed}", 415)
    return body


async def enroll(request: web.Request) -> web.Response:
    consent = _consent(request)
    check_owner_local(request)  # pairing is an owner's act on the home network (PROTOCOL §1.1)
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..."
        raise ConsentError("invalid_json", "body must be JSON", 400) from exc
    result = await owners.enroll_first(consent, body, request.remote or "")
    return web.json_response(result, status=201)


async def post_decision(request: web.Request) -> web.Response:
    consent = _consent(request)
    result = await decisions.submit(consent, await _jose_body(request, passkey=True))
    return web.json_response(result, status=201)


async def post_clock(request: web.Request) -> web.Response:
    consent = _consent(request)
    result = await confirm_clock(consent, await _jose_body(request, passkey=True))
    return web.json_response(result, status=201)


def _int_param(request: web.Request, name: str) -> int:
    value = request.query.get(name, "")
    # isascii: str.isdigit() is also true for "²" and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ConsentError("bad_request", f"{name} must be a non-negative integer", 400)
    return int(value)


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in items]


async def audit_checkpoint(request: web.Request) -> web.Response:
    audit = _consent(request).audit
    latest = await _consent(request).store.run(audit_q.latest_checkpoint)
    # The latest checkpoint of the whole log: sign one now if entries were appended since the last.
    note = latest[1] if latest is not None and latest[0] == audit.size else await audit.checkpoint()
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


async def audit_proof(request: web.Request) -> web.Response:
    audit = _consent(request).audit
    seq, size = _int_param(request, "seq"), _int_param(request, "size")
    if not seq < size <= audit.size:
        raise ConsentError("bad_request", f"need 0 <= seq < size <= {audit.size}", 400)
    entry = await audit.entry(seq)
    return web.json_response(
        {
            "seq": seq,
            "size": size,
            "entry": entry.decode("utf-8"),
            "inclusion_proof": _b64(audit.inclusion_proof(seq, size)),
            "root": base64.b64encode(audit.root(size)).decode("ascii"),
        }
    )


async def audit_consistency(request: web.Request) -> web.Response:
    audit = _consent(request).audit
    old, new = _int_param(request, "from"), _int_param(request, "to")
    if not 0 < old <= new <= audit.size:
        raise ConsentError("bad_request", f"need 0 < from <= to <= {audit.size}", 400)
    return web.json_response(
        {
            "from": old,
            "to": new,
            "consistency_proof": _b64(audit.consistency_proof(old, new)),
            "root": base64.b64encode(audit.root(new)).decode("ascii"),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/owner/enroll", enroll)
    app.router.add_post("/api/v1/decisions", post_decision)
    app.router.add_post("/api/v1/owner/clock", post_clock)
    app.router.add_get("/api/v1/audit/checkpoint", require_owner(audit_checkpoint))
    app.router.add_get("/api/v1/audit/proof", require_owner(audit_proof))
    app.router.add_get("/api/v1/audit/consistency", require_owner(audit_consistency))
