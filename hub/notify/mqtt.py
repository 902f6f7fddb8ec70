"""Home Assistant over MQTT (PROTOCOL §8.4) with aiomqtt: discovery, birth/last will, state, events.

One connection loop owns the client: connect (the broker's last will is `<base>/status` = `offline`,
retained), publish `online`, every discovery config (retained) and the current state (retained), then
listen to Home Assistant's own birth topic (`<discovery_prefix>/status` = `online`, sent when Home
Assistant restarts and has forgotten what is not retained) to announce again. A lost connection is
retried after 1 s, doubling to `[mqtt] reconnect_max_s`.

The queue worker (channel.py) waits for a connection before it publishes, so what happens while the
broker is down waits in the bounded queue and goes out on reconnect, or is dropped and counted.

Never media: payloads are event types, `ON`/`OFF`, `online`/`offline` and a count (module doc of
hub/notify/__init__.py). Home Assistant's `camera` and `image` entities are deliberately not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from hub.config import MqttConfig
from hub.notify.channel import Channel, RetryLater

log = logging.getLogger(__name__)

CONSENT_EVENT_TYPES = (
    "request_received", "delivery_fetched", "live_started", "live_ended",
    "key_enrolled", "key_revoked", "clock_unsynced",
)  # fmt: skip
# A stalled broker must not hold the worker (or a clean stop) for long.
PUBLISH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class MqttMessage:
    topic: str
    payload: bytes
    retain: bool = False
    # Retained state only: the connection it was queued on. After a reconnect the announce has
    # published the current state, so an older queued value would overwrite it with a stale one.
    epoch: int = -1


@dataclass
class HubState:
    """What retained topics say now; republished after every (re)connect."""

    cameras: dict[str, str]  # camera id -> display name
    online: dict[str, bool]
    motion: dict[str, bool]
    pending: int = 0


class MqttChannel(Channel[MqttMessage]):
    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        hub_id: str,
        hub_name: str,
        state: Callable[[], HubState],
        *,
        queue_size: int,
        max_attempts: int,
    ) -> None:
        super().__init__(queue_size, max_attempts, backoff_s=1.0, backoff_max_s=config.reconnect_max_s)
        self.config = config
        self.hub_id = hub_id
        self.hub_name = hub_name
        self.base = f"{config.topic_prefix}/{hub_id}"
        self._state = state
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        # Retained offers are taken from just before a connection's announce snapshots the state
        # (and sent once `connected` is set, after it): see `connection_loop`.
        self._accepting = False

    # --- topics -----------------------------------------------------------------------------------

    @property
    def status_topic(self) -> str:
        return f"{self.base}/status"

    def camera_topic(self, camera: str, what: str) -> str:
        return f"{self.base}/camera/{camera}/{what}"

    def discovery(self, cameras: dict[str, str]) -> list[MqttMessage]:
        """Every retained discovery config: one device per hub, two entities per camera, two for the hub."""
        prefix = self.config.discovery_prefix
        device = {
            "identifiers": [f"camhub_{self.hub_id}"],
            "name": self.hub_name,
            "manufacturer": "camhub",
            "model": "camhub hub",
        }
        hub_avail = {"topic": self.status_topic}
        out: list[tuple[str, dict[str, Any]]] = []
        for cam, name in sorted(cameras.items()):
            avail = {
                "availability": [hub_avail, {"topic": self.camera_topic(cam, "availability")}],
                "availability_mode": "all",
                "device": device,
            }
            out.append((
                f"{prefix}/event/{self.hub_id}_{cam}_doorbell/config",
                {
                    "name": f"{name} doorbell",
                    "unique_id": f"{self.hub_id}_{cam}_doorbell",
                    "device_class": "doorbell",
                    "event_types": ["press"],
                    "state_topic": self.camera_topic(cam, "doorbell"),
                    **avail,
                },
            ))  # fmt: skip
            out.append((
                f"{prefix}/binary_sensor/{self.hub_id}_{cam}_motion/config",
                {
                    "name": f"{name} motion",
                    "unique_id": f"{self.hub_id}_{cam}_motion",
                    "device_class": "motion",
                    "state_topic": self.camera_topic(cam, "motion"),
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    **avail,
                },
            ))  # fmt: skip
        out.append((
            f"{prefix}/sensor/{self.hub_id}_pending_requests/config",
            {
                "name": "Pending requests",
                "unique_id": f"{self.hub_id}_pending_requests",
                "state_topic": f"{self.base}/requests/pending",
                "state_class": "measurement",
                "availability": [hub_avail],
                "device": device,
            },
        ))  # fmt: skip
        out.append((
            f"{prefix}/event/{self.hub_id}_consent/config",
            {
                "name": "Consent activity",
                "unique_id": f"{self.hub_id}_consent",
                "event_types": list(CONSENT_EVENT_TYPES),
                "state_topic": f"{self.base}/consent",
                "availability": [hub_avail],
                "device": device,
            },
        ))  # fmt: skip
        return [MqttMessage(t, json.dumps(c, separators=(",", ":")).encode(), retain=True) for t, c in out]

    def state_messages(self, state: HubState) -> list[MqttMessage]:
        out = [MqttMessage(f"{self.base}/requests/pending", str(state.pending).encode(), retain=True)]
        for cam in sorted(state.cameras):
            out.append(self.availability(cam, state.online.get(cam, False)))
            out.append(self.motion(cam, state.motion.get(cam, False)))
        return out

    def availability(self, camera: str, online: bool) -> MqttMessage:
        return MqttMessage(
            self.camera_topic(camera, "availability"), b"online" if online else b"offline", retain=True
        )

    def motion(self, camera: str, on: bool) -> MqttMessage:
        return MqttMessage(self.camera_topic(camera, "motion"), b"ON" if on else b"OFF", retain=True)

    def pending(self, count: int) -> MqttMessage:
        return MqttMessage(f"{self.base}/requests/pending", str(count).encode(), retain=True)

    def event(self, topic: str, event_type: str, camera: str | None = None) -> MqttMessage:
        body: dict[str, Any] = {"event_type": event_type}
        if camera is not None:
            body["camera"] = camera
        return MqttMessage(topic, json.dumps(body, separators=(",", ":")).encode())

    def consent_event(self, event_type: str) -> MqttMessage:
        return self.event(f"{self.base}/consent", event_type)

    # --- connection ---------------------------------------------------------------------------------

    async def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ca = str(self.config.tls_ca_file) if self.config.tls_ca_file else None
        return await asyncio.to_thread(ssl.create_default_context, cafile=ca)

    async def connection_loop(self) -> None:
        """Stay connected: (re)connect with backoff, announce, answer Home Assistant's birth."""
        delay = 1.0
        tls = await self._tls_context()
        while True:
            client = aiomqtt.Client(
                self.config.host,
                self.config.port,
                username=self.config.username,
                password=self.config.password,
                identifier=f"camhub-{self.hub_id[:16]}",
                will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
                tls_context=tls,
                timeout=PUBLISH_TIMEOUT_S,
                keepalive=30,
            )
            try:
                async with client:
                    await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    # A change from here on is queued with this connection's epoch and sent after
                    # the announce; before, it was dropped until `connected`, and a camera that came
                    # online while the announce ran was never told (its watch offers on a change
                    # only): found when camhub's reader made cameras come online ~1 s sooner.
                    self.connects += 1
                    self._accepting = True
                    await self._announce(client)
                    await client.subscribe(f"{self.config.discovery_prefix}/status")
                    self._client = client
                    self.connected.set()
                    delay = 1.0
                    log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
                    async for message in client.messages:
                        if message.payload in (b"online", "online"):
                            await self._announce(client)  # Home Assistant restarted
            except aiomqtt.MqttError as exc:
                log.warning(
                    "mqtt: %s:%d: %s (retry in %.0f s)", self.config.host, self.config.port, exc, delay
                )
            finally:
                self._client = None
                self._accepting = False
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _announce(self, client: aiomqtt.Client) -> None:
        state = self._state()
        await self._publish_all(client, [*self.discovery(state.cameras), *self.state_messages(state)])

    async def announce(self) -> None:
        """Publish discovery and state again (a camera was added or removed); no-op while disconnected."""
        client = self._client
        if client is None:
            return
        try:
            await self._announce(client)
        except aiomqtt.MqttError as exc:
            log.info("mqtt: announce failed: %s", exc)

    async def _publish_all(self, client: aiomqtt.Client, messages: Iterable[MqttMessage]) -> None:
        for m in messages:
            await client.publish(m.topic, m.payload, qos=1, retain=m.retain, timeout=PUBLISH_TIMEOUT_S)

    def offer(self, item: MqttMessage) -> bool:
        if item.retain:
            if not self._accepting:
                return True  # superseded: the current state is published on (re)connect
            item = dataclasses.replace(item, epoch=self.connects)
        return super().offer(item)

    async def send(self, item: MqttMessage) -> None:
        await self.connected.wait()  # the bounded queue holds what happens while the broker is away
        if item.retain and item.epoch != self.connects:
            return  # queued before a reconnect whose announce already said the current state
        client = self._client
        if client is None:
            raise RetryLater("not connected")
        try:
            await client.publish(
                item.topic, item.payload, qos=1, retain=item.retain, timeout=PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as exc:
            raise RetryLater(str(exc)) from exc

    async def goodbye(self) -> None:
        """On a clean stop: say `offline` ourselves (a clean disconnect does not fire the last will)."""
        client = self._client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
            await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=1.0)

    def status(self) -> dict[str, Any]:
        return {"configured": True, "connected": self.connected.is_set(), **self.stats.as_json()}
