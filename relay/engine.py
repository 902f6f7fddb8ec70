"""The JetStream side of the relay: one NATS connection, the streams and buckets of PROTOCOL §7.

Everything the relay keeps lives here, in JetStream (so any number of gateways run side by side and a
gateway restart loses nothing):

- `CAMHUB_QUEUE` (work queue, subjects `camhub.q.hub.*`): requests waiting for their hub. Per hub at
  most `queue_per_hub` messages (`max_msgs_per_subject` with `discard_new_per_subject`: the 101st is
  refused, never an older one dropped), each at most 64 KiB of body, each kept `queue_days`.
- `CAMHUB_AREAS` (limits, subjects `camhub.q.area.*`): area requests, read by every hub of the cell
  through its own durable consumer; `area_per_cell` per cell, kept 7 days.
- `camhub_hubs` (KV): what each hub registered (its §1 document, `respond_by_s`), forgotten after
  30 days without a connection.
- `camhub_index` (KV): the relay's index of queued requests (`keyid`, `respond_by`, stream sequence),
  which lets it answer polls while a hub is away (§7.2).

Streams are replicated on `replicas` nodes (3 in a production cluster): `add_stream` can fail for a
moment while a new cluster elects its meta leader, so setup retries for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError
from nats.js.kv import KeyValue

from camhub_protocol import relay_wire as wire

log = logging.getLogger(__name__)

DAY_S = 86400
HUB_REGISTRATION_DAYS = 30
# Room for the HTTP request's header fields (signature, digest) next to a 64 KiB body.
MAX_MSG_BYTES = wire.MAX_BODY_BYTES + 32 * 1024


@dataclass(frozen=True)
class Limits:
    replicas: int = 1
    queue_per_hub: int = 100
    queue_days: float = 7.0
    area_per_cell: int = 1000


@dataclass
class Engine:
    nc: Client
    js: JetStreamContext
    hubs: KeyValue
    index: KeyValue


async def connect(servers: list[str], name: str, nkey_seed_file: str | None = None) -> Client:
    """One connection that reconnects for ever (the client also learns the cluster's other nodes)."""
    options: dict[str, object] = {}
    if nkey_seed_file:
        options["nkeys_seed"] = nkey_seed_file
    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        inbox_prefix=wire.RELAY_INBOX_PREFIX,  # hubs may publish here and nowhere else (§7.7)
        **options,  # type: ignore[arg-type]
    )


async def _retry(what: str, coro_factory, attempts: int = 40):  # type: ignore[no-untyped-def]
    for attempt in range(attempts):
        try:
            return await coro_factory()
        # Any JetStream API refusal while the node is still starting (seen: add_stream refused, then
        # update_stream "stream not found" on a loaded machine) is retried, not fatal.
        except (TimeoutError, nats.errors.Error, APIError) as exc:
            if isinstance(exc, BadRequestError) and "already in use" in str(exc):
                raise
            if attempt == attempts - 1:
                raise
            log.info("%s not ready yet (%s); retrying", what, exc)
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def setup(nc: Client, limits: Limits) -> Engine:
    """Create (or update) the streams and buckets; idempotent, every gateway runs it at start."""
    js = nc.jetstream(timeout=5)
    queue = StreamConfig(
        name=wire.QUEUE_STREAM,
        subjects=["camhub.q.hub.*"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=limits.replicas,
        max_age=limits.queue_days * DAY_S,
        max_msgs_per_subject=limits.queue_per_hub,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msg_size=MAX_MSG_BYTES,
        duplicate_window=120,
    )
    areas = StreamConfig(
        name=wire.AREA_STREAM,
        subjects=["camhub.q.area.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=limits.replicas,
        max_age=wire.AREA_RESPOND_BY_S,
        max_msgs_per_subject=limits.area_per_cell,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msg_size=MAX_MSG_BYTES,
        duplicate_window=120,
    )
    for config in (queue, areas):

        async def ensure(config: StreamConfig = config) -> None:
            try:
                await js.add_stream(config)
            except BadRequestError:
                # It exists with other settings (an older gateway): bring it to ours.
                await js.update_stream(config)

        await _retry(f"stream {config.name}", ensure)
    hubs = await _retry(
        "bucket camhub_hubs",
        lambda: js.create_key_value(
            bucket=wire.HUBS_BUCKET, ttl=HUB_REGISTRATION_DAYS * DAY_S, replicas=limits.replicas
        ),
    )
    index = await _retry(
        "bucket camhub_index",
        lambda: js.create_key_value(
            bucket=wire.INDEX_BUCKET, ttl=limits.queue_days * DAY_S + DAY_S, replicas=limits.replicas
        ),
    )
    return Engine(nc, js, hubs, index)
