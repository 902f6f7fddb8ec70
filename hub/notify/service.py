"""The Notifier: turns what the hub records into notifications, per the owner's settings (§8).

Fed by two listener hooks, both synchronous on the event loop and never blocking:
`ConsentService.audit_listeners` (every audit entry, after it is appended) and
`Cameras.event_listeners` (every doorbell press and motion start/end, after its row is written). A
watch loop polls camera liveness for availability and the "offline for a minute" notification, and
a small loop keeps the pending-requests count for Home Assistant. Every task is a supervisor task
named `notify:*`; `stop()` cancels them all and closes the push session. Start after the consent
service and the cameras, stop before them (hub/daemon.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camhub_protocol import rfc3339
from hub.config import Config
from hub.notify import messages
from hub.notify.messages import Notification
from hub.notify.mqtt import HubState, MqttChannel
from hub.notify.push import PushChannel, load_or_create_vapid, origin
from hub.notify.settings import NotifySettings, apply
from hub.settings import SettingsError
from hub.store import Store
from hub.store import events as events_q
from hub.store import notify as q
from hub.supervisor import Supervisor, sleep_to_tick

log = logging.getLogger(__name__)

# The cameras' status loop's tick (hub/ingest/camera.py STATUS_INTERVAL_S): both wake in one turn of
# the event loop. A camera counts as offline 5 s after its last frame, so the 2 s tick delays
# availability by at most 2 s on top, and at 1 s it cost an extra wake-up every other second.
WATCH_INTERVAL_S = 2.0
MAX_SUBSCRIPTIONS = 20
_CONSENT_EVENTS = ("request", "grant_used", "owner_key", "clock")


@dataclass
class _CameraWatch:
    online: bool = False
    since: float = field(default_factory=time.monotonic)  # when `online` last changed
    told_offline: bool = False


class Notifier:
    """Owns the channels, the settings and the push subscriptions; see the module doc."""

    def __init__(
        self,
        config: Config,
        store: Store,
        supervisor: Supervisor,
        hub_id: str,
        cameras: Callable[[], dict[str, tuple[str, bool, float | None]]],
    ) -> None:
        self.config = config
        self._store = store
        self._supervisor = supervisor
        self._hub_id = hub_id
        # camera id -> (display name, online now, last frame): Cameras.status (media stays out of here).
        self._cameras = cameras
        self.settings = NotifySettings()
        self.subscriptions: list[q.PushSubscription] = []
        self.mqtt: MqttChannel | None = None
        self.push: PushChannel | None = None
        self._watch: dict[str, _CameraWatch] = {}
        self._motion: dict[str, bool] = {}
        self._pending = 0
        self._pending_dirty = asyncio.Event()
        self._tasks: list[str] = []
        self._stopped = False

    @classmethod
    async def start(
        cls,
        config: Config,
        store: Store,
        supervisor: Supervisor,
        hub_id: str,
        cameras: Callable[[], dict[str, tuple[str, bool, float | None]]],
    ) -> Notifier:
        n = cls(config, store, supervisor, hub_id, cameras)
        try:
            n.settings = apply(NotifySettings(), await store.run(q.settings))
        except SettingsError as exc:
            log.warning("notification settings are invalid and ignored (defaults used): %s", exc)
        n.subscriptions = await store.run(q.subscriptions)
        n._pending = await store.run(q.pending_requests, time.time())
        nc = config.notify
        if config.mqtt.enabled:
            n.mqtt = MqttChannel(
                config.mqtt, hub_id, config.hub.name, n._hub_state,
                queue_size=nc.queue_size, max_attempts=nc.max_attempts,
            )  # fmt: skip
            n._spawn("notify:mqtt-connection", n.mqtt.connection_loop)
            n._spawn("notify:mqtt-queue", n.mqtt.run)
        vapid = None
        if config.push.enabled:
            try:
                vapid = await asyncio.to_thread(load_or_create_vapid, config.keys_dir)
            except (OSError, ValueError) as exc:
                # Notifications are a convenience: a hub whose VAPID key is unreadable still records.
                log.error("web push disabled: cannot read or make %s: %s", config.keys_dir / "vapid.pem", exc)
        if vapid is not None:
            n.push = PushChannel(
                config.push,
                vapid,
                n._expired,
                lambda sub_id: any(s.id == sub_id for s in n.subscriptions),
                queue_size=nc.queue_size,
                max_attempts=nc.max_attempts,
            )
            n._spawn("notify:push-queue", n.push.run)
        n._spawn("notify:cameras", n._watch_loop)
        n._spawn("notify:pending", n._pending_loop)
        return n

    def _spawn(self, name: str, factory: Callable[[], Any]) -> None:
        self._supervisor.spawn(name, factory)
        self._tasks.append(name)

    async def stop(self) -> None:
        """Say `offline` to the broker, stop every task (newest first), close the push session."""
        if self._stopped:
            return
        self._stopped = True
        if self.mqtt is not None:
            await self.mqtt.goodbye()
        for name in reversed(self._tasks):
            await self._supervisor.cancel(name)
        if self.push is not None:
            await self.push.close()

    # --- inputs -------------------------------------------------------------------------------------

    def on_audit(self, type_: str, actor: str, data: dict[str, Any]) -> None:
        """ConsentService.audit_listeners: called after each entry is appended."""
        if type_.startswith(messages.PENDING_CHANGES):
            self._pending_dirty.set()
        n = messages.from_audit(type_, data)
        if n is not None:
            self.dispatch(n)

    def on_camera_event(self, event: events_q.Event) -> None:
        """Cameras.event_listeners: a doorbell press, or a motion event starting or ending."""
        cam = event.camera_id
        if event.kind == "press":
            self.dispatch(messages.camera_event("press", cam))
            return
        if event.kind != "motion" or cam not in self.settings.motion_cameras:
            return
        on = event.end_at is None
        self._motion[cam] = on
        if self.mqtt is not None and self.settings.wants("mqtt", "motion"):
            self.mqtt.offer(self.mqtt.motion(cam, on))
        if on:
            self._push(messages.camera_event("motion", cam))

    def clock_unsynced(self) -> None:
        """The hub started without a known-good clock (PROTOCOL §6): decisions are refused until the
        owner confirms the time, so say so now rather than when the first one is refused."""
        n = messages.from_audit("clock.unsynced", {})
        if n is not None:
            self.dispatch(n)

    def dispatch(self, n: Notification) -> None:
        """Offer one notification to every channel the owner wants it on. Never blocks."""
        s = self.settings
        if self.mqtt is not None and s.wants("mqtt", n.event):
            if n.event in _CONSENT_EVENTS:
                self.mqtt.offer(self.mqtt.consent_event(n.event_type))
            elif n.event == "doorbell" and n.camera is not None:
                camera = n.camera if s.details else None
                self.mqtt.offer(
                    self.mqtt.event(self.mqtt.camera_topic(n.camera, "doorbell"), "press", camera)
                )
        self._push(n)

    def _push(self, n: Notification) -> None:
        if self.push is not None and self.subscriptions and self.settings.wants("push", n.event):
            self.push.offer_to(self.subscriptions, messages.push_text(n, self.settings.details), n.urgent)

    # --- loops --------------------------------------------------------------------------------------

    def _hub_state(self) -> HubState:
        cams = self._cameras()
        return HubState(
            cameras={c: name for c, (name, _, _) in cams.items()},
            online={c: w.online for c, w in self._watch.items()},
            motion={c: self._motion.get(c, False) for c in cams},
            pending=self._pending,
        )

    async def _watch_loop(self) -> None:
        """Camera availability at once; the `camera_offline` notification after `offline_after_s`."""
        after = self.config.notify.offline_after_s
        while True:
            now = time.monotonic()
            cams = self._cameras()
            if set(cams) != set(self._watch):
                for gone in set(self._watch) - set(cams):
                    del self._watch[gone]
                for new in set(cams) - set(self._watch):
                    self._watch[new] = _CameraWatch(since=now)
                if self.mqtt is not None:
                    await self.mqtt.announce()
            for cam, (_, online, _) in cams.items():
                w = self._watch[cam]
                if online != w.online:
                    w.online, w.since = online, now
                    if online:
                        w.told_offline = False
                    if self.mqtt is not None and self.settings.channels.get("mqtt", False):
                        self.mqtt.offer(self.mqtt.availability(cam, online))
                if not w.online and not w.told_offline and now - w.since >= after:
                    w.told_offline = True
                    log.info("notify: camera %s offline for %.0f s", cam, now - w.since)
                    self._push(messages.camera_event("offline", cam))
            await sleep_to_tick(WATCH_INTERVAL_S)

    async def _pending_loop(self) -> None:
        while True:
            await self._pending_dirty.wait()
            self._pending_dirty.clear()
            count = await self._store.run(q.pending_requests, time.time())
            if count != self._pending:
                self._pending = count
                if self.mqtt is not None and self.settings.channels.get("mqtt", False):
                    self.mqtt.offer(self.mqtt.pending(count))

    # --- settings and subscriptions (hub/api/notify.py) -----------------------------------------------

    async def change_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH (PROTOCOL §8.2), store it; returns what changed, for the audit entry."""
        new = apply(self.settings, body)
        await self._store.run(q.put_settings, new.as_json(), time.time())
        old, self.settings = self.settings.as_json(), new
        current = new.as_json()
        return {k: current[k] for k in sorted(body) if old[k] != current[k]}

    async def subscribe(self, endpoint: str, p256dh: str, auth: str, name: str) -> tuple[str, bool]:
        sub = q.PushSubscription(uuid.uuid4().hex, endpoint, p256dh, auth, name, time.time())
        result = await self._store.run(q.put_subscription, sub, MAX_SUBSCRIPTIONS)
        if result is None:
            raise SettingsError(
                "endpoint", f"at most {MAX_SUBSCRIPTIONS} browsers", code="too_many_subscriptions", status=409
            )
        self.subscriptions = await self._store.run(q.subscriptions)
        return result

    async def unsubscribe(self, sub_id: str) -> bool:
        removed = await self._store.run(q.delete_subscription, sub_id)
        self.subscriptions = [s for s in self.subscriptions if s.id != sub_id]
        return removed

    async def _expired(self, sub: q.PushSubscription) -> None:
        with contextlib.suppress(Exception):
            await self.unsubscribe(sub.id)

    def status(self) -> dict[str, Any]:
        return {
            **self.settings.as_json(),
            "vapid_public_key": self.push.public_key if self.push is not None else None,
            "subscriptions": [
                {
                    "id": s.id,
                    "name": s.name,
                    "origin": origin(s.endpoint),
                    "created_at": rfc3339.format(s.created_at),
                }
                for s in self.subscriptions
            ],
            "status": {
                "mqtt": self.mqtt.status() if self.mqtt is not None else {"configured": False},
                "push": self.push.status() if self.push is not None else {"configured": False},
            },
        }
