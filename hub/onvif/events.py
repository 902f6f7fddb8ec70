"""Follow one camera's ONVIF events through a pull-point subscription (ONVIF Core §9.1, WS-BaseNotification).

    connect → CreatePullPointSubscription(PT{SUBSCRIPTION_S}S) → PullMessages(PT{PULL_S}S) … ─┐
                     ▲                 Renew when 80 % of the subscription has run ◄──────────┘
                     └── any failure (camera rebooted, subscription unknown, network): close,
                         back off (capped, jittered), connect and subscribe again

The loop is ours rather than the library's `PullPointManager`, so that a failed PullMessages (a
rebooted camera forgets its subscriptions: ResourceUnknownFault, or a refused connection) also
leads to a new subscription, not only a failed Renew. A subscription is Unsubscribed on stop.

Topics (what Home Assistant's ONVIF parsers map; the topic may end in "/", "//." and the prefix
may be another than `tns1`):

    RuleEngine/MyRuleDetector/Visitor    Data State=true          a doorbell press
    RuleEngine/CellMotionDetector/Motion Data IsMotion=true|false  camera motion starts/ends
    RuleEngine/MotionRegionDetector/Motion  Data State
    VideoSource/MotionAlarm              Data State

Anything else is logged once per topic at debug and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hub.onvif.device import CALL_ERRORS, CALL_TIMEOUT_S, OnvifError, connect, onvif_error
from hub.supervisor import stop_task

log = logging.getLogger(__name__)

SUBSCRIPTION_S = 600
PULL_S = 10
MESSAGE_LIMIT = 100
RENEW_FRACTION = 0.8
PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"

PRESS_TOPICS = frozenset({"RuleEngine/MyRuleDetector/Visitor"})
MOTION_TOPICS = {
    "RuleEngine/CellMotionDetector/Motion": "IsMotion",
    "RuleEngine/MotionRegionDetector/Motion": "State",
    "VideoSource/MotionAlarm": "State",
}


@dataclass(frozen=True)
class OnvifEvent:
    """One notification the hub understands: `kind` is "press" or "motion"; `active` is its state."""

    kind: str
    topic: str
    active: bool
    source: str | None


def normalize_topic(topic: str) -> str:
    """`tns1:RuleEngine/CellMotionDetector/Motion//.` → `RuleEngine/CellMotionDetector/Motion`."""
    topic = topic.strip().rstrip("/.")
    return topic.split(":", 1)[1] if ":" in topic.split("/", 1)[0] else topic


def _items(element: Any) -> dict[str, str]:
    """SimpleItem Name → Value of a tt:Source or tt:Data, parsed by zeep or left as an lxml element."""
    out: dict[str, str] = {}
    if element is None:
        return out
    items = getattr(element, "SimpleItem", None)
    if items is not None:
        for item in items if isinstance(items, list) else [items]:
            name, value = getattr(item, "Name", None), getattr(item, "Value", None)
            if name is not None and value is not None:
                out[str(name)] = str(value)
        return out
    if hasattr(element, "iter"):  # an lxml element zeep did not bind to a type
        for node in element.iter("{*}SimpleItem"):
            if node.get("Name") is not None and node.get("Value") is not None:
                out[node.get("Name")] = node.get("Value")
    return out


def _message_parts(message: Any) -> tuple[dict[str, str], dict[str, str]]:
    body = getattr(message, "_value_1", None)
    if body is None:
        return {}, {}
    if hasattr(body, "Data") or hasattr(body, "Source"):
        return _items(getattr(body, "Source", None)), _items(getattr(body, "Data", None))
    if hasattr(body, "find"):
        return _items(body.find("{*}Source")), _items(body.find("{*}Data"))
    return {}, {}


def classify(notification: Any) -> OnvifEvent | None:
    """A wsnt:NotificationMessage (as zeep returns it) → an `OnvifEvent`, or None if not ours."""
    topic_el = getattr(notification, "Topic", None)
    raw = getattr(topic_el, "_value_1", None)
    if not isinstance(raw, str):
        return None
    topic = normalize_topic(raw)
    source_items, data = _message_parts(getattr(notification, "Message", None))
    source = next(iter(source_items.values()), None)
    if topic in PRESS_TOPICS:
        state = data.get("State", "true").strip().lower()
        return OnvifEvent("press", topic, state in ("true", "1"), source)
    key = MOTION_TOPICS.get(topic)
    if key is not None and key in data:
        return OnvifEvent("motion", topic, data[key].strip().lower() in ("true", "1"), source)
    return None


EventCallback = Callable[[float, OnvifEvent], Awaitable[None]]


class OnvifEventListener:
    """Keep one camera's pull-point subscription alive; `await on_event(received_at, event)` for each."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        username: str | None,
        password: str | None,
        on_event: EventCallback,
        *,
        subscription_s: int = SUBSCRIPTION_S,
        pull_s: int = PULL_S,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self._credentials = (username, password)
        self._on_event = on_event
        self._subscription_s = subscription_s
        self._pull_s = pull_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        """Set while a subscription is live (tests wait on it instead of sleeping)."""
        self.subscriptions = 0
        self.renewals = 0
        self.last_error: str | None = None
        self._unknown_topics: set[str] = set()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("OnvifEventListener already started")
        self._task = asyncio.create_task(self._run(), name=f"camhub-onvif-{self.camera_id}")

    async def stop(self) -> None:
        """Cancel the loop (it unsubscribes on the way out) and wait for it. Idempotent."""
        task, self._task = self._task, None
        await stop_task(task)
        self.subscribed.clear()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except OnvifError as exc:
                self.last_error = exc.detail
                log.warning("onvif %s: %s", self.camera_id, exc.detail)
            except CALL_ERRORS as exc:
                self.last_error = onvif_error(exc, self.url).detail
                log.warning("onvif %s: %s; subscribing again", self.camera_id, self.last_error)
            except Exception:
                # Not a network error: say so loudly, but the camera's presses must keep coming.
                self.last_error = "unexpected error"
                log.exception("onvif %s: unexpected error", self.camera_id)
            # Backoff grows only while subscribing fails; a subscription that worked resets it.
            failures = 1 if self.subscribed.is_set() else failures + 1
            self.subscribed.clear()
            initial, cap = self._backoff
            await asyncio.sleep(min(cap, initial * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1.0))

    async def _session(self) -> None:
        """One connection: subscribe, pull and renew until something fails; unsubscribe if we can."""
        camera = await connect(self.url, *self._credentials)
        subscription = None
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                events = await camera.create_events_service()
                created = await events.CreatePullPointSubscription(
                    {"InitialTerminationTime": f"PT{self._subscription_s}S"}
                )
                camera.xaddrs[PULLPOINT_NS] = str(created.SubscriptionReference.Address._value_1)
                pullpoint = await camera.create_pullpoint_service()
                subscription = await camera.create_subscription_service("PullPointSubscription")
            self.subscriptions += 1
            self.subscribed.set()
            log.info("onvif %s: subscribed to events at %s", self.camera_id, self.url)
            renew_at = time.monotonic() + self._lifetime(created) * RENEW_FRACTION
            while True:
                async with asyncio.timeout(self._pull_s + CALL_TIMEOUT_S):
                    pulled = await pullpoint.PullMessages(
                        {"Timeout": dt.timedelta(seconds=self._pull_s), "MessageLimit": MESSAGE_LIMIT}
                    )
                received_at = time.time()
                for notification in getattr(pulled, "NotificationMessage", None) or []:
                    await self._dispatch(received_at, notification)
                if time.monotonic() >= renew_at:
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        renewed = await subscription.Renew({"TerminationTime": f"PT{self._subscription_s}S"})
                    self.renewals += 1
                    renew_at = time.monotonic() + self._lifetime(renewed) * RENEW_FRACTION
                    log.debug("onvif %s: subscription renewed", self.camera_id)
        finally:
            if subscription is not None:
                # A courtesy (the camera expires it anyway): bounded, and never in the way of stopping.
                with contextlib.suppress(*CALL_ERRORS, asyncio.CancelledError):
                    async with asyncio.timeout(2.0):
                        await subscription.Unsubscribe()
            await asyncio.shield(camera.close())

    def _lifetime(self, answer: Any) -> float:
        """Seconds the camera granted (TerminationTime − CurrentTime), or what was asked for."""
        try:
            granted = (answer.TerminationTime - answer.CurrentTime).total_seconds()
        except (AttributeError, TypeError):
            return float(self._subscription_s)
        # A camera that answers nonsense (0, negative, days) is renewed as if it had granted what we asked.
        return granted if 5 <= granted <= 86400 else float(self._subscription_s)

    async def _dispatch(self, received_at: float, notification: Any) -> None:
        try:
            event = classify(notification)
        except Exception:
            log.warning("onvif %s: unreadable notification ignored", self.camera_id)
            return
        if event is None:
            topic = getattr(getattr(notification, "Topic", None), "_value_1", None)
            if (
                isinstance(topic, str)
                and topic not in self._unknown_topics
                and len(self._unknown_topics) < 64
            ):
                self._unknown_topics.add(topic)
                log.debug("onvif %s: ignoring topic %s", self.camera_id, topic[:200])
            return
        try:
            await self._on_event(received_at, event)
        except Exception:
            # One bad event must not stop the listener.
            log.exception("onvif %s: event handler failed", self.camera_id)
