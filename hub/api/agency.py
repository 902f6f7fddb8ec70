"""Agency routes (PROTOCOL.md §2): every call RFC 9421 signed by a trusted agency; media only via the gate.

    POST /api/agency/v1/requests          agency signature         ask for footage or a livestream (§2.1)
    GET  /api/agency/v1/requests/{id}     agency signature         poll (§2.2)
    GET  /api/agency/v1/deliveries/{id}   agency signature + gate  fetch an encrypted delivery (§2.3)

(declared in `hub/api/guards.py`). Bodies over 64 KiB get 413 from the Content-Length alone,
before anything is parsed or verified; chunked bodies are cut off by aiohttp's `client_max_size`.
"""

from __future__ import annotations

import logging

from aiohttp import web

from camhub_protocol.delivery import CONTENT_TYPE as DELIVERY_CONTENT_TYPE
from camhub_protocol.errors import ConsentError, SignatureError
from hub.consent import deliveries, requests
from hub.consent.service import ConsentService
from hub.services import SERVICES

log = logging.getLogger(__name__)

PREFIX = "/api/agency/v1"


def _consent(request: web.Request) -> ConsentService:
    consent = request.app[SERVICES].consent
    assert consent is not None
    return consent


def _split_target(raw: str) -> tuple[str, str | None]:
    path, sep, query = raw.partition("?")
    return path, (query if sep else None)


async def signed_message(request: web.Request, consent: ConsentService) -> requests.SignedMessage:
    """The request exactly as received, for RFC 9421 (every agency route, WHEP included); 413
    (audited) for an oversized body before any parsing."""
    path, query = _split_target(request.raw_path)
    remote = request.remote or ""
    headers = list(request.headers.items())
    route = route_name(request)

    def msg(body: bytes) -> requests.SignedMessage:
        return requests.SignedMessage(
            request.method, request.host, path, query, headers, body, request.scheme, remote, route
        )

    too_large = SignatureError("body_too_large", f"body over {requests.MAX_BODY_BYTES} bytes", status=413)
    if request.content_length is not None and request.content_length > requests.MAX_BODY_BYTES:
        await requests.reject(consent, msg(b""), too_large)
        raise too_large
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        await requests.reject(consent, msg(b""), too_large)
        raise too_large from None
    return msg(body)


def route_name(request: web.Request) -> str:
    """`METHOD /pattern` of the route that matched (what refusals are counted under, never the raw
    path, which a flood could vary without end)."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else '-'}"


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def post_request(request: web.Request) -> web.Response:
    consent = _consent(request)
    msg = await signed_message(request, consent)
    verified = await requests.authenticate(consent, msg)
    body = await requests.submit(consent, msg, verified)
    return web.json_response(body, status=202)


async def get_request(request: web.Request) -> web.Response:
    consent = _consent(request)
    msg = await signed_message(request, consent)
    verified = await requests.authenticate(consent, msg)
    body = await requests.poll(consent, msg, verified.keyid, request.match_info["id"], _base_url(request))
    return web.json_response(body)


async def get_delivery(request: web.Request) -> web.StreamResponse:
    consent = _consent(request)
    msg = await signed_message(request, consent)
    verified = await requests.authenticate(consent, msg)
    try:
        record, path = await deliveries.open_for_fetch(consent, verified.keyid, request.match_info["id"])
    except ConsentError as exc:
        await requests.reject(consent, msg, exc, verified.keyid)
        raise
    response = web.StreamResponse(
        status=200, headers={"Content-Type": DELIVERY_CONTENT_TYPE, "Cache-Control": "no-store"}
    )
    response.content_length = record.bytes
    await response.prepare(request)
    try:
        async for chunk in deliveries.stream(consent, verified.keyid, record, path):
            await response.write(chunk)
        await response.write_eof()
    except ConsentError as exc:
        # Revoked (or expired) mid-transfer: stop sending; the short body tells the client it failed.
        log.warning("delivery %s stopped mid-transfer: %s", record.id, exc.code)
        await consent.record(
            "egress.delivery.stopped",
            f"agency:{verified.keyid}",
            {"delivery_id": record.id, "code": exc.code},
        )
        if request.transport is not None:
            request.transport.close()
    finally:
        # PROTOCOL §5: a checkpoint after every egress.
        await consent.audit.checkpoint()
    return response


def setup(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/requests", post_request)
    app.router.add_get(f"{PREFIX}/requests/{{id}}", get_request)
    # No HEAD: a fetch is counted and audited, and a HEAD would spend one without sending anything.
    app.router.add_get(f"{PREFIX}/deliveries/{{id}}", get_delivery, allow_head=False)
