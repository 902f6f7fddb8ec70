"""The relay's HTTP side (PROTOCOL §7): a stateless aiohttp gateway in front of NATS JetStream.

    GET    /hubs/{hub_id}/api/v1/hub                               from the hub's registration (KV)
    POST   /hubs/{hub_id}/api/agency/v1/requests                   sealed (§7.6), queued in JetStream, 202 at once (§7.2)
    GET    /hubs/{hub_id}/api/agency/v1/requests/{id}              forwarded; from the index while the hub is away
    GET    /hubs/{hub_id}/api/agency/v1/deliveries/{id}            streamed from the hub, flow-controlled (§7.3)
    POST   /hubs/{hub_id}/api/v1/decisions                         sealed (§7.6), forwarded (owner JWS)
    POST   /hubs/{hub_id}/api/agency/v1/live/{grant_id}            forwarded (WHEP offer → answer)
    DELETE /hubs/{hub_id}/api/agency/v1/live/{grant_id}[/{sid}]    forwarded
    POST   /areas/{cell}/requests                                  queued for the cell (§7.4)
    GET    /areas/{cell}/requests/{id}                             asks the cell's hubs, waits 0.5 s

The relay verifies nothing (every message is authenticated end to end by its receiver) and keeps
nothing in memory that matters: the queue, the hub registrations and the request index are in
JetStream (`relay/engine.py`), a delivery is passed through chunk by chunk under flow control. What
it does hold are its limits (§7.5): the 64 KiB body cap, per-client and per-hub token buckets, and
the idle and write timeouts that cut slow clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from aiohttp import web
from nats.js.errors import APIError, KeyNotFoundError, NotFoundError

from camhub_protocol import relay_wire as wire
from camhub_protocol import rfc3339, sealed_bodies
from camhub_protocol.errors import ConsentError
from camhub_protocol.limits import TokenBuckets, client_key, retry_after_header
from relay.engine import Engine

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a hub's answer may set on the agency's response; everything else is dropped.
FORWARDED_FIELDS = ("content-type", "retry-after", "location", "cache-control", "camhub-answer-signature")
REGISTRATION_CACHE_S = 5.0
PERSIST_S = 8.0
_NATS_ERRORS = (TimeoutError, nats.errors.Error, nats.js.errors.Error)
HUB_OFFLINE_RETRY_S = 30


@dataclass(frozen=True)
class GatewayLimits:
    rate_per_s: float = 20.0
    burst: int = 200
    hub_rate_per_s: float = 20.0
    hub_burst: int = 100
    call_timeout_s: float = 15.0
    write_timeout_s: float = wire.STREAM_IDLE_S


def _queue_full(exc: APIError) -> bool:
    # JetStream's refusal under `discard_new_per_subject` (err_code 10077).
    return exc.err_code == 10077 or "maximum messages per subject" in (exc.description or "").lower()


class RelayError(ConsentError):
    """A refusal by the relay itself (never about a signature, which it does not check)."""


def _error(exc: ConsentError) -> web.Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = retry_after_header(exc.retry_after)
    return web.json_response(exc.to_json(), status=exc.status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConsentError as exc:
        return _error(exc)
    except web.HTTPRequestEntityTooLarge:
        return _error(RelayError("body_too_large", f"body over {wire.MAX_BODY_BYTES} bytes", 413))
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
        # NATS or JetStream cannot answer now (a node lost, a reconnect, a leader election): a clear
        # 503 with Retry-After. (Left alone, aiohttp turns a TimeoutError into a bare 504.)
        log.warning("%s %s: NATS unavailable: %r", request.method, request.path[:80], exc)
        return _error(
            RelayError("relay_unavailable", "the relay's queue is not reachable", 503, retry_after=5)
        )


class Gateway:
    """The aiohttp application of one gateway, over one JetStream `Engine`."""

    def __init__(self, engine: Engine, public_url: str, limits: GatewayLimits | None = None) -> None:
        self.engine = engine
        self.public_url = public_url.rstrip("/")
        self.limits = limits or GatewayLimits()
        self.clients = TokenBuckets(self.limits.rate_per_s, self.limits.burst)
        self.hubs = TokenBuckets(self.limits.hub_rate_per_s, self.limits.hub_burst)
        self._registrations: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.transfers = 0  # deliveries in flight (the bench reads it)

    # --- the app ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=wire.MAX_BODY_BYTES, middlewares=[errors_middleware, self._limit_middleware]
        )
        hub = "/hubs/{hub_id}"
        app.router.add_get(f"{hub}/api/v1/hub", self.get_hub, allow_head=False)
        app.router.add_post(f"{hub}/api/agency/v1/requests", self.post_request)
        app.router.add_get(f"{hub}/api/agency/v1/requests/{{id}}", self.get_request, allow_head=False)
        app.router.add_get(f"{hub}/api/agency/v1/deliveries/{{id}}", self.get_delivery, allow_head=False)
        app.router.add_post(f"{hub}/api/v1/decisions", self.post_decision)
        app.router.add_post(f"{hub}/api/agency/v1/live/{{grant_id}}", self.forward)
        app.router.add_delete(f"{hub}/api/agency/v1/live/{{grant_id}}", self.forward)
        app.router.add_delete(f"{hub}/api/agency/v1/live/{{grant_id}}/{{session_id}}", self.forward)
        app.router.add_post("/areas/{cell}/requests", self.post_area_request)
        app.router.add_get("/areas/{cell}/requests/{id}", self.get_area_request, allow_head=False)
        return app

    @web.middleware
    async def _limit_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now = time.monotonic()
        wait = self.clients.take(client_key(request.remote), now)
        scope = request.match_info.get("hub_id") or request.match_info.get("cell")
        if wait <= 0 and scope is not None:
            wait = self.hubs.take(scope, now)
        if wait > 0:
            raise RelayError("rate_limited", "too many calls; slow down", 429, retry_after=wait)
        if request.content_length is not None and request.content_length > wire.MAX_BODY_BYTES:
            raise RelayError("body_too_large", f"body over {wire.MAX_BODY_BYTES} bytes", 413)
        return await handler(request)

    # --- hub registrations (KV camhub_hubs) -------------------------------------------------------

    async def registration(self, hub_id: str) -> dict[str, Any]:
        """What `hub_id` registered when it last connected; 404 `unknown_hub` if it never did."""
        if not wire.HUB_ID_RE.fullmatch(hub_id):
            raise RelayError("unknown_hub", "no such hub on this relay", 404)
        cached = self._registrations.get(hub_id)
        now = time.monotonic()
        if cached is None or now - cached[0] > REGISTRATION_CACHE_S:
            try:
                entry = await self.engine.hubs.get(hub_id)
                doc = json.loads(entry.value or b"null")
            except KeyNotFoundError:
                doc = None
            except ValueError:
                doc = None
            if len(self._registrations) > 10_000:
                self._registrations.clear()
            cached = (now, doc if isinstance(doc, dict) else None)
            self._registrations[hub_id] = cached
        if cached[1] is None:
            raise RelayError("unknown_hub", "no such hub on this relay", 404)
        return cached[1]

    async def get_hub(self, request: web.Request) -> web.StreamResponse:
        registration = await self.registration(request.match_info["hub_id"])
        return web.json_response(registration.get("hub", {}))

    # --- envelopes --------------------------------------------------------------------------------

    @staticmethod
    async def envelope(request: web.Request) -> wire.Envelope:
        path, _, query = request.raw_path.partition("?")
        body = await request.read()
        fields = [(k, v) for k, v in request.headers.items()]
        return wire.Envelope(
            request.method,
            path,
            query if "?" in request.raw_path else None,
            fields,
            body,
            0,
            request.remote or "",
        )

    def _respond(self, answer: wire.Envelope) -> web.Response:
        headers = {k: v for k, v in answer.fields if k.lower() in FORWARDED_FIELDS}
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    async def _call(self, hub_id: str, env: wire.Envelope) -> wire.Envelope | None:
        """Forward one call to the connected hub; None when no hub is connected (NATS: no responders)."""
        try:
            msg = await self.engine.nc.request(
                wire.call_subject(hub_id), env.body, timeout=self.limits.call_timeout_s,
                headers=env.request_headers(),
            )  # fmt: skip
        except nats.errors.NoRespondersError:
            return None
        except TimeoutError as exc:
            raise RelayError("hub_timeout", "the hub did not answer in time", 504) from exc
        return wire.Envelope.from_answer(msg.headers, msg.data)

    @staticmethod
    def _offline() -> RelayError:
        return RelayError(
            "hub_unavailable", "the hub is not connected to the relay", 503, retry_after=HUB_OFFLINE_RETRY_S
        )

    # --- §7.2: queued requests --------------------------------------------------------------------

    async def _queue(self, subject: str, scope: str, env: wire.Envelope, respond_by_s: float) -> web.Response:
        try:
            claims = wire.claims(env.fields)
        except ConsentError as exc:
            raise RelayError(exc.code, exc.detail, 401) from exc
        rid = wire.request_id(claims.keyid, claims.nonce)
        respond_by = claims.created + respond_by_s
        headers = {**env.request_headers(), "Nats-Msg-Id": rid}
        # The index first: a request is never in the queue without the entry that answers its polls.
        entry = {"keyid": claims.keyid, "respond_by": respond_by, "stream": "", "seq": 0}
        index_key = wire.index_key(scope, rid)
        await self._persist(lambda: self.engine.index.put(index_key, json.dumps(entry).encode()))
        try:
            # Retried with the same Nats-Msg-Id: a publish whose ack was lost (a node dying, a leader
            # election) is stored once, and the retry reads `duplicate` instead of a second copy.
            ack = await self._persist(
                lambda: self.engine.js.publish(subject, env.body, headers=headers, timeout=2)
            )
        except APIError as exc:
            if _queue_full(exc):
                raise RelayError(
                    "queue_full", "too many requests are waiting; try later", 429, retry_after=60
                ) from exc
            log.warning("queueing a request failed: %s", exc)
            raise RelayError(
                "relay_unavailable", "the queue refused the request", 503, retry_after=5
            ) from exc
        entry.update(stream=ack.stream, seq=ack.seq)
        with contextlib.suppress(*_NATS_ERRORS):
            # Only an optimisation (the relay checks by sequence whether it is still queued).
            await self.engine.index.put(index_key, json.dumps(entry).encode())
        return web.json_response(
            {"id": rid, "status": "pending", "respond_by": rfc3339.format(respond_by)}, status=202
        )

    @staticmethod
    def _require_sealed(request: web.Request) -> None:
        """§7.6: the relay does not carry a request or a decision it could read — a client that sends
        one in clear is told to seal it to the hub (whose recipient `GET …/api/v1/hub` states)."""
        if request.content_type != sealed_bodies.CONTENT_TYPE:
            raise RelayError(
                "seal_to_hub",
                "through a relay, send the body sealed to the hub (Content-Type: application/age)",
                415,
            )

    async def post_request(self, request: web.Request) -> web.StreamResponse:
        hub_id = request.match_info["hub_id"]
        self._require_sealed(request)
        registration = await self.registration(hub_id)
        respond_by_s = float(registration.get("respond_by_s") or wire.DEFAULT_RESPOND_BY_S)
        env = await self.envelope(request)
        return await self._queue(wire.queue_subject(hub_id), hub_id, env, respond_by_s)

    async def _indexed(self, scope: str, request_id: str, env: wire.Envelope) -> dict[str, Any] | None:
        """The index entry of `request_id` if the poll claims the keyid that asked, else None."""
        if not wire.REQUEST_ID_RE.fullmatch(request_id):
            return None
        try:
            entry = await self.engine.index.get(wire.index_key(scope, request_id))
            doc = json.loads(entry.value or b"null")
        except (KeyNotFoundError, ValueError):
            return None
        try:
            claimed = wire.claims(env.fields).keyid
        except ConsentError:
            return None
        return doc if isinstance(doc, dict) and doc.get("keyid") == claimed else None

    async def _persist(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run one JetStream write, retrying for up to PERSIST_S while the cluster cannot take it
        (a node lost, a leader being elected); then 503 with Retry-After."""
        deadline = time.monotonic() + PERSIST_S
        while True:
            try:
                return await op()
            except APIError as exc:
                if _queue_full(exc) or (exc.code is not None and exc.code < 500):
                    raise
                failure: Exception = exc
            except _NATS_ERRORS as exc:
                failure = exc
            if time.monotonic() >= deadline:
                log.warning("JetStream write failed: %r", failure)
                raise RelayError(
                    "relay_unavailable", "the relay's queue is not reachable", 503, retry_after=5
                )
            await asyncio.sleep(0.2)

    @staticmethod
    def _status_of(request_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        respond_by = float(entry["respond_by"])
        status = "pending" if time.time() < respond_by else "closed"
        return {"id": request_id, "status": status, "respond_by": rfc3339.format(respond_by)}

    @staticmethod
    def _not_found() -> RelayError:
        # The hub's §2.2 answer for an unknown id, word for word.
        return RelayError("not_found", "no such request", 404)

    async def _still_queued(self, entry: dict[str, Any]) -> bool:
        try:
            await self.engine.js.get_msg(str(entry.get("stream")), int(entry.get("seq", 0)))
        except (NotFoundError, APIError, ValueError, TypeError):
            return False
        return True

    async def get_request(self, request: web.Request) -> web.StreamResponse:
        hub_id = request.match_info["hub_id"]
        await self.registration(hub_id)
        env = await self.envelope(request)
        answer = await self._call(hub_id, env)
        if answer is not None and answer.status != 404:
            return self._respond(answer)
        # Offline, or not taken from the queue yet: the relay answers from its index (§7.2).
        entry = await self._indexed(hub_id, request.match_info["id"], env)
        if entry is None or (answer is not None and not await self._still_queued(entry)):
            if answer is not None:
                return self._respond(answer)
            raise self._not_found()
        return web.json_response(self._status_of(request.match_info["id"], entry))

    # --- §7.3: forwarded calls --------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        hub_id = request.match_info["hub_id"]
        await self.registration(hub_id)
        answer = await self._call(hub_id, await self.envelope(request))
        if answer is None:
            raise self._offline()
        return self._respond(answer)

    async def post_decision(self, request: web.Request) -> web.StreamResponse:
        self._require_sealed(request)
        return await self.forward(request)

    async def get_delivery(self, request: web.Request) -> web.StreamResponse:
        """Pass a delivery through chunk by chunk; the hub sends a chunk only for a credit the relay
        gives back once the previous one went out to the agency (at most WINDOW in flight)."""
        hub_id = request.match_info["hub_id"]
        await self.registration(hub_id)
        env = await self.envelope(request)
        nc = self.engine.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, pending_bytes_limit=(wire.WINDOW + 4) * (wire.CHUNK + 4096))
        credit_to: str | None = None
        response: web.StreamResponse | None = None
        self.transfers += 1
        try:
            try:
                await nc.publish(
                    wire.call_subject(hub_id), env.body, reply=inbox, headers=env.request_headers()
                )
                head = await sub.next_msg(timeout=self.limits.call_timeout_s)
            except nats.errors.NoRespondersError:
                raise self._offline() from None
            except TimeoutError as exc:
                # Nobody answered: no hub subscribed (core publish has no "no responders" answer).
                raise self._offline() from exc
            headers = head.headers or {}
            answer = wire.Envelope.from_answer(headers, head.data)
            credit_to = headers.get(wire.H_CREDIT)
            if credit_to is None:
                return self._respond(answer)
            response = web.StreamResponse(status=answer.status)
            for k, v in answer.fields:
                if k.lower() in FORWARDED_FIELDS:
                    response.headers[k] = v
                elif k.lower() == "content-length":
                    response.content_length = int(v)
            await response.prepare(request)
            expected = 0
            while True:
                msg = await sub.next_msg(timeout=wire.STREAM_IDLE_S)
                mh = msg.headers or {}
                end = mh.get(wire.H_END)
                if end is not None:
                    if end == "ok":
                        await response.write_eof()
                    else:
                        # Stopped at the hub (a revoke between chunks, §2.3): the short body says so.
                        log.info("delivery through hub %s stopped by the hub: %s", hub_id[:8], end)
                        if request.transport is not None:
                            request.transport.close()
                    credit_to = None
                    return response
                if mh.get(wire.H_SEQ) != str(expected):
                    raise ConnectionError(f"chunk {mh.get(wire.H_SEQ)} out of order (expected {expected})")
                expected += 1
                await asyncio.wait_for(response.write(msg.data), self.limits.write_timeout_s)
                await nc.publish(credit_to, b"1")
        except (TimeoutError, ConnectionError, ConnectionResetError) as exc:
            # The agency stopped reading (or the hub went quiet): cut it and tell the hub to stop.
            log.info("delivery through hub %s cut: %r", hub_id[:8], exc)
            if request.transport is not None:
                request.transport.close()
            if response is None:
                raise RelayError("hub_timeout", "the hub did not answer in time", 504) from exc
            return response
        finally:
            self.transfers -= 1
            if credit_to is not None:
                with contextlib.suppress(Exception):
                    await nc.publish(credit_to, b"", headers={wire.H_END: "cancel"})
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # --- §7.4: area requests ----------------------------------------------------------------------

    @staticmethod
    def _cell(request: web.Request) -> str:
        cell = request.match_info["cell"]
        if not wire.CELL_RE.fullmatch(cell):
            raise RelayError("invalid_area", "an area is a 5-character geohash cell", 404)
        return cell

    async def post_area_request(self, request: web.Request) -> web.StreamResponse:
        cell = self._cell(request)
        env = await self.envelope(request)
        return await self._queue(wire.area_subject(cell), f"area.{cell}", env, wire.AREA_RESPOND_BY_S)

    async def get_area_request(self, request: web.Request) -> web.StreamResponse:
        cell = self._cell(request)
        request_id = request.match_info["id"]
        env = await self.envelope(request)
        nc = self.engine.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        deliveries: list[Any] = []
        try:
            await nc.publish(
                wire.area_call_subject(cell), env.body, reply=inbox, headers=env.request_headers()
            )
            # A fixed wait, whatever arrives: its length tells nothing about how many hubs there are.
            deadline = time.monotonic() + wire.AREA_POLL_WAIT_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except TimeoutError:
                    break
                try:
                    answer = wire.Envelope.from_answer(msg.headers, msg.data)
                    doc = json.loads(answer.body) if answer.status == 200 else None
                except (ConsentError, ValueError):
                    continue
                if isinstance(doc, dict) and doc.get("status") == "fulfilled":
                    items = doc.get("deliveries")
                    if isinstance(items, list):
                        deliveries.extend(items[:64])
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        entry = await self._indexed(f"area.{cell}", request_id, env)
        if entry is None:
            raise self._not_found()
        body = self._status_of(request_id, entry)
        if deliveries:
            body["status"] = "fulfilled"
            body["deliveries"] = deliveries
        return web.json_response(body)
