"""The hub's one outbound connection to a camhub-relay (PROTOCOL §7): nothing on the hub listens for it.

`RelayLink.run` is one supervised task (`hub/daemon.py` spawns it as `relay-link`). It dials the
relay's NATS (`[relay] url`, optional nkey), and while connected:

- registers the hub (its §1 document and `respond_by_s`) in the relay's `camhub_hubs` bucket, again
  after every reconnect;
- answers live calls on `camhub.call.hub.<hub_id>` (`hub/uplink/calls.py`), each in its own task,
  at most `MAX_CALLS` at once and `[relay] calls_per_s` a second (beyond: 503 / 429 to the relay), so a
  flood at the relay costs the hub a bounded amount of work and never its recording;
- streams deliveries under flow control: a chunk goes out only against a credit the relay gives back
  once the previous one reached the agency, at most `WINDOW` ahead; a transfer without credit for
  `STREAM_IDLE_S` is abandoned;
- takes queued requests from its durable consumer on the work-queue stream (and, with `[relay]
  area`, area requests from its own consumer on the area stream), acking each once judged; one that
  cannot be judged now (clock not synced, database busy) goes back with a delay.

When the relay is unreachable, the link retries with capped exponential backoff (1 s doubling to
`reconnect_max_s`, with jitter); the NATS client itself reconnects a connection that drops. The
status (`connected`, `retrying`, with the last error) is shown on the owner's Settings page. Nothing
else in the hub depends on the link: recording, the LAN API and the owner UI work the same without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from camhub_protocol import relay_wire as wire
from camhub_protocol.errors import ConsentError
from camhub_protocol.limits import TokenBuckets
from hub.config import Config
from hub.consent.service import ConsentService
from hub.uplink.calls import Calls, Retry, Streamed, hub_document

if TYPE_CHECKING:
    from hub.api.live import LiveMedia

log = logging.getLogger(__name__)

MAX_CALLS = 32
# One message per pull: nats-py's fetch of a batch, once a first message arrived, waits out its whole
# timeout for the rest of the batch, which left a lone request up to 5 s in the queue. Requests are
# few (an agency files 30 an hour), so a pull each costs nothing that matters.
FETCH_BATCH = 1
QUEUE_RETRY_S = 30.0


@dataclass
class LinkStatus:
    state: str = "off"  # off | connecting | connected | retrying
    detail: str = ""
    since: float = field(default_factory=time.time)
    server: str = ""

    def set(self, state: str, detail: str = "", server: str = "") -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.detail, self.server = state, detail, server


class _Abandoned(Exception):
    """The relay stopped taking a delivery (the agency went away, or no credit came back)."""


class RelayLink:
    def __init__(self, config: Config, consent: ConsentService, live: Callable[[], LiveMedia | None]) -> None:
        self.config = config
        self.relay = config.relay
        self.consent = consent
        self.status = LinkStatus()
        self.calls = Calls(
            consent,
            self.relay.public_url,
            lambda: hub_document(consent, config.hub.name),
            live,
            self.relay.area,
            (self.relay.turn_url, self.relay.turn_username, self.relay.turn_password)
            if self.relay.turn_url
            else None,
        )
        self.rate = TokenBuckets(self.relay.calls_per_s, self.relay.calls_burst)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy = asyncio.Semaphore(MAX_CALLS)
        self.served = 0  # calls answered (tests and the bench read it)
        self.taken = 0  # queued requests judged

    @property
    def hub_url(self) -> str:
        return f"{self.relay.public_url}/hubs/{self.consent.hub_id}"

    def describe(self) -> dict[str, Any]:
        """What the owner's Settings page shows."""
        return {
            "state": self.status.state,
            "detail": self.status.detail,
            "since": self.status.since,
            "url": self.hub_url,
            "area": self.relay.area,
        }

    # --- the supervised loop --------------------------------------------------------------------

    async def run(self) -> None:
        backoff = 1.0
        while True:
            self.status.set(
                "connecting" if self.status.state in ("off", "connecting") else "retrying", self.status.detail
            )
            nc: Client | None = None
            try:
                nc = await self._connect()
                backoff = 1.0
                await self._serve(nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay away or misbehaving must never take the hub down
                detail = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("relay link: %s; retrying in %.0f s", detail, backoff)
                self.status.set("retrying", detail)
            finally:
                if nc is not None:
                    await self._close(nc)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(self.relay.reconnect_max_s, backoff * 2)

    async def _connect(self) -> Client:
        async def disconnected() -> None:
            self.status.set("retrying", "connection to the relay lost")

        async def reconnected() -> None:
            self.status.set("connected", "", str(nc.connected_url.netloc if nc.connected_url else ""))
            task = asyncio.get_running_loop().create_task(self._register(nc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        async def error(exc: Exception) -> None:
            # The client retries by itself (a refused nkey included, for ever): without this the owner
            # would see "connecting" and no reason. Logged once per distinct error, not per retry.
            detail = f"{type(exc).__name__}: {exc}"[:300]
            if detail != self.status.detail:
                log.warning("relay link: %s", detail)
            self.status.set(self.status.state, detail, self.status.server)

        options: dict[str, Any] = {}
        if self.relay.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.relay.nkey_seed_file)
        nc = await nats.connect(
            servers=list(self.relay.urls),
            name=f"camhub-hub {self.consent.hub_id[:8]}",
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            allow_reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            # Its own inbox, so the operator can confine this hub's NATS user to it (§7.7).
            inbox_prefix=wire.hub_inbox_prefix(self.consent.hub_id),
            **options,
        )
        return nc

    async def _close(self, nc: Client) -> None:
        for task in list(self._tasks):
            task.cancel()
        # Bounded so that the daemon still stops within its 3 s (hub/daemon.py STOP_TIMEOUT_SECONDS).
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)

    async def _register(self, nc: Client) -> None:
        doc = {
            "hub": hub_document(self.consent, self.config.hub.name),
            "respond_by_s": int(self.config.consent.respond_by_days * 86400),
        }
        kv = await nc.jetstream(timeout=5).key_value(wire.HUBS_BUCKET)
        await kv.put(self.consent.hub_id, json.dumps(doc).encode())

    async def _serve(self, nc: Client) -> None:
        hub_id = self.consent.hub_id
        await self._register(nc)
        await nc.subscribe(wire.call_subject(hub_id), cb=self._on_call)
        if self.relay.area is not None:
            await nc.subscribe(wire.area_call_subject(self.relay.area), cb=self._on_area_call)
        js = nc.jetstream(timeout=10)
        consumers = [
            await js.pull_subscribe(
                wire.queue_subject(hub_id),
                durable=wire.consumer_name(hub_id),
                stream=wire.QUEUE_STREAM,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60, max_ack_pending=16),
            )
        ]
        if self.relay.area is not None:
            consumers.append(
                await js.pull_subscribe(
                    wire.area_subject(self.relay.area),
                    durable=wire.consumer_name(hub_id),
                    stream=wire.AREA_STREAM,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=60,
                        deliver_policy=DeliverPolicy.ALL,
                        max_ack_pending=16,
                    ),
                )
            )
        self.status.set("connected", "", str(nc.connected_url.netloc if nc.connected_url else ""))
        log.info("relay link connected: %s", self.hub_url)
        await asyncio.gather(*(self._consume(nc, sub, area=i == 1) for i, sub in enumerate(consumers)))

    # --- queued requests --------------------------------------------------------------------------

    async def _consume(self, nc: Client, sub: Any, *, area: bool) -> None:
        respond_by_s = wire.AREA_RESPOND_BY_S if area else self.config.consent.respond_by_days * 86400
        while not nc.is_closed:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=5)
            except TimeoutError:
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                await asyncio.sleep(1.0)  # the client reconnects on its own; the consumer is durable
                continue
            for msg in msgs:
                await self._take(msg, respond_by_s, area)

    async def _take(self, msg: Msg, respond_by_s: float, area: bool) -> None:
        try:
            env = wire.Envelope.from_request(msg.headers, msg.data)
        except ConsentError:
            await msg.term()  # not a request at all: never redeliver it
            return
        try:
            await self.calls.take_queued(env, respond_by_s, area=area)
        except Retry as exc:
            log.info("a queued request waits: %s", exc)
            await msg.nak(delay=QUEUE_RETRY_S)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a queued request could not be judged; it goes back to the queue")
            await msg.nak(delay=QUEUE_RETRY_S)
            return
        self.taken += 1
        await msg.ack()

    # --- live calls -----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_call(self, msg: Msg) -> None:
        # The client runs a subscription's callbacks one after another: each call gets a task.
        if not msg.reply:
            return
        self._spawn(self._serve_call(msg))

    async def _on_area_call(self, msg: Msg) -> None:
        if msg.reply:
            self._spawn(self._serve_area_call(msg))

    def _refusal(self) -> wire.Envelope | None:
        if self._busy.locked():
            return wire.error_answer(ConsentError("busy", "the hub is busy; try again", 503, retry_after=5))
        wait = self.rate.take("relay", time.monotonic())
        if wait > 0:
            return wire.error_answer(
                ConsentError("rate_limited", "too many calls through the relay", 429, retry_after=wait)
            )
        return None

    async def _serve_call(self, msg: Msg) -> None:
        nc: Client = msg._client
        refusal = self._refusal()
        if refusal is not None:
            if refusal.status == 429:
                await self.consent.record_unauthenticated(
                    "http.rate_limited", "relay *", "rate_limited", {"status": 429}
                )
            await nc.publish(msg.reply, refusal.body, headers=refusal.answer_headers())
            return
        async with self._busy:
            try:
                env = wire.Envelope.from_request(msg.headers, msg.data)
                answer = await self.calls.handle(env)
            except ConsentError as exc:
                answer = wire.error_answer(exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a relayed call failed")
                answer = wire.error_answer(ConsentError("internal_error", "the hub failed", 500))
            self.served += 1
            if isinstance(answer, Streamed):
                await self._stream(nc, msg.reply, answer)
            else:
                await nc.publish(msg.reply, answer.body, headers=answer.answer_headers())

    async def _serve_area_call(self, msg: Msg) -> None:
        nc: Client = msg._client
        if self._refusal() is not None:
            return
        async with self._busy:
            try:
                env = wire.Envelope.from_request(msg.headers, msg.data)
                answer = await self.calls.handle_area_poll(env)
            except ConsentError:
                return
            if answer is not None:
                await nc.publish(msg.reply, answer.body, headers=answer.answer_headers())

    async def _stream(self, nc: Client, reply: str, streamed: Streamed) -> None:
        credit_to = nc.new_inbox()
        credit = asyncio.Event()
        state = {"window": wire.WINDOW, "cancelled": False}

        async def on_credit(m: Msg) -> None:
            if (m.headers or {}).get(wire.H_END):
                state["cancelled"] = True
            else:
                state["window"] += 1
            credit.set()

        sub = await nc.subscribe(credit_to, cb=on_credit)
        chunks = streamed.chunks
        try:
            await nc.publish(reply, b"", headers={**streamed.head.answer_headers(), wire.H_CREDIT: credit_to})
            seq = 0
            async for chunk in chunks:  # the gate runs between these 1 MiB chunks (deliveries.stream)
                for offset in range(0, len(chunk), wire.CHUNK):
                    while state["window"] <= 0 and not state["cancelled"]:
                        credit.clear()
                        try:
                            await asyncio.wait_for(credit.wait(), wire.STREAM_IDLE_S)
                        except TimeoutError as exc:
                            raise _Abandoned("no credit from the relay") from exc
                    if state["cancelled"]:
                        raise _Abandoned("the relay cancelled the transfer")
                    await nc.publish(
                        reply, chunk[offset : offset + wire.CHUNK], headers={wire.H_SEQ: str(seq)}
                    )
                    seq += 1
                    state["window"] -= 1
            await nc.publish(reply, b"", headers={wire.H_END: "ok"})
        except ConsentError as exc:
            # The gate refused between chunks (a revoke): stop, like the LAN route (§2.3, §7.3).
            await streamed.on_stop(exc.code)
            with contextlib.suppress(Exception):
                await nc.publish(reply, b"", headers={wire.H_END: f"abort {exc.code}"})
        except _Abandoned as exc:
            log.info("a delivery through the relay was abandoned: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await streamed.on_done()
