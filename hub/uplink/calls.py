"""Calls that reach the hub through a relay (PROTOCOL §7), judged exactly like calls on the LAN.

Which paths a relay may reach, and their guard, are declared in `hub/api/guards.py` (`RELAYED`); this
module refuses every other path with 404, so an owner-session route, pairing, login, the audit
routes or camera WHIP can never be reached from the relay, whatever it sends.

Every agency call is an RFC 9421 message (`requests.SignedMessage`) whose `@authority` and
`@scheme` come from the hub's own `[relay] public_url` and whose `@path` is the path the agency
signed, `/hubs/{hub_id}` (or `/areas/{cell}`) prefix included — never from anything the relay says
about itself. From there the same functions as the LAN routes run: `requests.authenticate`,
`requests.submit` / `poll`, `deliveries.open_for_fetch` / `stream` (the gate before the first chunk and
between chunks), `decisions.submit`, `live.open_agency_live`. Refusals that proved nothing are counted
under `relay <METHOD> <pattern>` route names (`ConsentService.record_unauthenticated`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from camhub_protocol import relay_wire as wire
from camhub_protocol import sealed_bodies, whep
from camhub_protocol.delivery import CONTENT_TYPE as DELIVERY_CONTENT_TYPE
from camhub_protocol.errors import ConsentError
from hub.api.guards import RELAYED
from hub.consent import decisions, deliveries, requests
from hub.consent.service import ConsentService

if TYPE_CHECKING:
    from hub.api.live import LiveMedia

log = logging.getLogger(__name__)


@dataclass
class Streamed:
    """An answer whose body is a delivery, sent chunk by chunk (the link applies flow control)."""

    head: wire.Envelope
    chunks: AsyncIterator[bytes]
    on_stop: Callable[[str], Awaitable[None]]
    on_done: Callable[[], Awaitable[None]]


Answer = wire.Envelope | Streamed


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")


_ROUTES = [(method, pattern, _pattern_regex(pattern)) for (method, pattern) in RELAYED]


def match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The relayed route (pattern) of a hub path, with its parameters; None for anything else."""
    for m, pattern, regex in _ROUTES:
        found = regex.match(path)
        if found and m == method:
            return pattern, found.groupdict()
    return None


class Calls:
    """Serves relayed calls for one hub (built by the link with what it needs, no globals)."""

    def __init__(
        self,
        consent: ConsentService,
        public_url: str,
        hub_doc: Callable[[], dict[str, Any]],
        live: Callable[[], LiveMedia | None],
        area: str | None,
        turn: tuple[str, str, str] | None = None,
    ) -> None:
        self.consent = consent
        parts = urlsplit(public_url)
        self.scheme, self.authority = parts.scheme, parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.hub_doc = hub_doc
        self.live = live
        self.area = area
        self.turn = turn  # (url, username, password) of the relay's TURN server, for live media

    @property
    def hub_prefix(self) -> str:
        """The path prefix of this hub on the relay (what agencies sign, §7.1)."""
        return f"{self.base_path}/hubs/{self.consent.hub_id}"

    @property
    def hub_url(self) -> str:
        """This hub on the relay: where polls answered through it point deliveries and live."""
        return f"{self.public_url}/hubs/{self.consent.hub_id}"

    def message(self, env: wire.Envelope, route: str) -> requests.SignedMessage:
        return requests.SignedMessage(
            env.method, self.authority, env.path, env.query, env.fields, env.body, self.scheme, "relay",
            f"relay {route}",
        )  # fmt: skip

    # --- live calls (§7.3) -------------------------------------------------------------------------

    async def handle(self, env: wire.Envelope) -> Answer:
        try:
            return await self._handle(env)
        except ConsentError as exc:
            return wire.error_answer(exc)

    async def _handle(self, env: wire.Envelope) -> Answer:
        if len(env.body) > wire.MAX_BODY_BYTES:
            raise ConsentError("body_too_large", f"body over {wire.MAX_BODY_BYTES} bytes", 413)
        if not env.path.startswith(self.hub_prefix + "/"):
            raise ConsentError("not_found", "no such route through the relay", 404)
        found = match(env.method, env.path[len(self.hub_prefix) :])
        if found is None:
            raise ConsentError("not_found", "no such route through the relay", 404)
        pattern, params = found
        route = f"{env.method} {pattern}"
        consent = self.consent
        if pattern == "/api/v1/hub":
            return wire.json_answer(200, self.hub_doc())
        if pattern == "/api/v1/decisions":
            content_type = env.header("content-type")
            if sealed_bodies.is_sealed(content_type):
                compact = consent.open_sealed(env.body)  # §7.6: the relay could not read it
            elif (content_type or "").split(";")[0].strip().lower() == "application/jose":
                compact = env.body
            else:
                raise ConsentError(
                    "unsupported_media_type", "Content-Type must be application/age or application/jose", 415
                )
            result = await decisions.submit(consent, compact.strip(), route=f"relay {route}")
            return wire.json_answer(201, result)
        if pattern == "/api/agency/v1/requests":
            # §7.2: requests come through the queue, never as a live call.
            raise ConsentError("not_found", "requests go through the relay's queue", 404)
        msg = self.message(env, route)
        verified = await requests.authenticate(consent, msg)
        if pattern == "/api/agency/v1/requests/{id}":
            body = await requests.poll(
                consent,
                msg,
                verified.keyid,
                params["id"],
                self.hub_url,
            )
            return wire.json_answer(200, body)
        if pattern == "/api/agency/v1/deliveries/{id}":
            return await self._delivery(msg, verified.keyid, params["id"])
        media = self.live()
        if media is None:
            raise ConsentError("camera_unavailable", "live view is not running", 503)
        from hub.api import live

        if env.method == "POST":
            if self.turn is None:
                # Media would have to reach the hub's own address, which nothing outside may (§7.3).
                raise ConsentError(
                    "no_turn", "this hub has no TURN server for live view through the relay", 503
                )
            from hub.egress.ice import turn_configuration

            query = dict(p.split("=", 1) for p in (env.query or "").split("&") if "=" in p)
            answer, location = await live.open_agency_live(
                consent, media, msg, verified.keyid, params["grant_id"], query.get("camera"),
                env.header("content-type") or "", self.hub_prefix + live.AGENCY_PREFIX,
                turn_configuration(*self.turn),
            )  # fmt: skip
            return wire.Envelope(
                fields=[
                    ("Content-Type", live.SDP),
                    ("Location", location),
                    ("Cache-Control", "no-store"),
                    (whep.HEADER, live.answer_signature(consent, env.body, answer)),
                ],
                body=answer.encode(),
                status=201,
            )
        await live.close_agency_live(
            consent, media, msg, verified.keyid, params["grant_id"], params.get("session_id")
        )
        return wire.Envelope(status=200)

    async def _delivery(self, msg: requests.SignedMessage, keyid: str, delivery_id: str) -> Streamed:
        consent = self.consent
        try:
            record, path = await deliveries.open_for_fetch(consent, keyid, delivery_id)
        except ConsentError as exc:
            await requests.reject(consent, msg, exc, keyid)
            raise
        head = wire.Envelope(
            fields=[
                ("Content-Type", DELIVERY_CONTENT_TYPE),
                ("Cache-Control", "no-store"),
                ("Content-Length", str(record.bytes)),
            ],
            status=200,
        )

        async def on_stop(code: str) -> None:
            log.warning("delivery %s through the relay stopped mid-transfer: %s", record.id, code)
            await consent.record(
                "egress.delivery.stopped", f"agency:{keyid}", {"delivery_id": record.id, "code": code}
            )

        async def on_done() -> None:
            await consent.audit.checkpoint()  # PROTOCOL §5: a checkpoint after every egress

        return Streamed(head, deliveries.stream(consent, keyid, record, path), on_stop, on_done)

    # --- area polls (§7.4) -------------------------------------------------------------------------

    async def handle_area_poll(self, env: wire.Envelope) -> wire.Envelope | None:
        """Answer only when this hub holds the request fulfilled for the polling agency; None (say
        nothing) otherwise, so the relay cannot tell the agency which hubs hold it."""
        if self.area is None:
            return None
        prefix = f"{self.base_path}/areas/{self.area}/requests/"
        rest = env.path[len(prefix) :] if env.path.startswith(prefix) else ""
        if env.method != "GET" or not wire.REQUEST_ID_RE.fullmatch(rest):
            return None
        msg = self.message(env, "GET /areas/{cell}/requests/{id}")
        try:
            verified = await requests.authenticate(self.consent, msg)
            body = await requests.poll(
                self.consent,
                msg,
                verified.keyid,
                rest,
                self.hub_url,
            )
        except ConsentError:
            return None
        if body.get("status") != "fulfilled":
            return None
        return wire.json_answer(200, body)

    # --- queued requests (§7.2, §7.4) ----------------------------------------------------------------

    async def take_queued(self, env: wire.Envelope, respond_by_s: float, area: bool = False) -> None:
        """Judge one request from the relay's queue. Raises `Retry` when it should be tried again
        later (the clock is not known to be right, the database is busy); returns when it is done
        with (stored, refused or dropped as a replay)."""
        consent = self.consent
        route = "POST /areas/{cell}/requests" if area else "POST /api/agency/v1/requests"
        expected = (
            f"{self.base_path}/areas/{self.area}/requests"
            if area
            else f"{self.hub_prefix}/api/agency/v1/requests"
        )
        msg = self.message(env, route)
        if env.method != "POST" or env.path != expected:
            await requests.reject(consent, msg, ConsentError("not_found", "not a request path", 404))
            return
        try:
            claims = wire.claims(env.fields)
        except ConsentError as exc:
            await requests.reject(consent, msg, exc)
            return
        rid = wire.request_id(claims.keyid, claims.nonce)
        if await consent.store.run(_known, rid):
            return  # taken before (a redelivery after a crash, or a replay): nothing to do
        window = int(respond_by_s)
        try:
            verified = await requests.authenticate(consent, msg, queued_max_age_s=window)
        except ConsentError as exc:
            if exc.status in (503,):
                raise Retry(exc.code) from exc
            return  # audited (counted) by authenticate
        respond_by = verified.created + respond_by_s
        cameras = tuple(c.id for c in consent.config.cameras)
        try:
            await requests.submit(
                consent, msg, verified, request_id=rid, respond_by=respond_by,
                area=(self.area, cameras) if area and self.area else None,
            )  # fmt: skip
        except ConsentError as exc:
            if exc.status == 503:
                raise Retry(exc.code) from exc
            from hub.store import consent as q

            await consent.store.run(
                q.insert_relay_refusal,
                q.RelayRefusal(rid, verified.keyid, exc.code, exc.detail, respond_by),
                consent.now(),
            )


def _known(conn: Any, request_id: str) -> bool:
    from hub.store import consent as q

    return q.relay_request_known(conn, request_id)


class Retry(Exception):
    """A queued request to try again later (the message goes back to the queue)."""


def hub_document(consent: ConsentService, name: str) -> dict[str, Any]:
    """The §1 identity document (what `GET /api/v1/hub` answers), with the §7.6 recipient."""
    return consent.identity_document(name)


def dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()
