"""Web Push to the owner's browsers (PROTOCOL §8.3): RFC 8030 delivery, RFC 8291 `aes128gcm`
encryption to each subscription's keys, RFC 8292 VAPID (ES256 JWT) — all by `pywebpush`/`py-vapid`.

The VAPID key is made once and kept in the hub's keys directory (`vapid.pem`, 0600, never in the
repository): browsers bind a subscription to it, so a new key would silently orphan every phone.
Each queued item is one notification for one subscription, so a dead endpoint's retries cost only
its own attempts. A push service answering 404/410 ended the subscription (RFC 8030 §7.3): it is
removed. The text is `messages.push_text`: a title, and only with details on a camera id or the kind
of request — never footage.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from hub.config import PushConfig
from hub.notify.channel import Channel, GiveUp, RetryLater, Superseded
from hub.store.notify import PushSubscription

log = logging.getLogger(__name__)

VAPID_KEY_FILE = "vapid.pem"
# How long a push service keeps a message for a phone that is off (RFC 8030 §5.2).
TTL_S = 86400


def load_or_create_vapid(keys_dir: Path) -> Vapid:
    """The hub's VAPID key (blocking: call in a thread)."""
    path = keys_dir / VAPID_KEY_FILE
    if path.exists():
        return Vapid.from_pem(path.read_bytes())
    vapid = Vapid()
    vapid.generate_keys()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(vapid.private_pem())
    return vapid


def public_key_b64(vapid: Vapid) -> str:
    """The applicationServerKey a browser subscribes with: the uncompressed P-256 point, base64url."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PushItem:
    subscription: PushSubscription
    payload: bytes
    urgent: bool


class PushChannel(Channel[PushItem]):
    name = "push"

    def __init__(
        self,
        config: PushConfig,
        vapid: Vapid,
        on_expired: Callable[[PushSubscription], Awaitable[None]],
        is_current: Callable[[str], bool],
        *,
        queue_size: int,
        max_attempts: int,
    ) -> None:
        super().__init__(queue_size, max_attempts, backoff_s=1.0, backoff_max_s=60.0)
        self.config = config
        self.vapid = vapid
        self.public_key = public_key_b64(vapid)
        self._on_expired = on_expired
        self._is_current = is_current
        self._session: aiohttp.ClientSession | None = None
        self.expired = 0

    def offer_to(self, subscriptions: list[PushSubscription], text: dict[str, Any], urgent: bool) -> None:
        payload = json.dumps(text, separators=(",", ":")).encode()
        for sub in subscriptions:
            self.offer(PushItem(sub, payload, urgent))

    async def send(self, item: PushItem) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        sub = item.subscription
        if not self._is_current(sub.id):
            # Ended (410) or removed by the owner after this was queued: never send to it again.
            raise Superseded(sub.id)
        try:
            await webpush_async(
                {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}},
                data=item.payload.decode(),
                vapid_private_key=self.vapid,
                # A fresh dict each time: pywebpush fills in `aud` (the endpoint's origin) and `exp`.
                vapid_claims={"sub": self.config.contact},
                content_encoding="aes128gcm",
                ttl=TTL_S,
                headers={"Urgency": "high" if item.urgent else "normal"},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),  # type: ignore[arg-type]
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.response.status if exc.response is not None else None  # type: ignore[union-attr]
            if status in (404, 410):
                self.expired += 1
                log.info("push: subscription %s ended by its push service (%s)", sub.id, status)
                await self._on_expired(sub)
                raise GiveUp(f"subscription {sub.id} expired ({status})") from exc
            if status == 429 or (status is not None and status >= 500):
                raise RetryLater(f"{origin(sub.endpoint)} answered {status}") from exc
            raise GiveUp(f"{origin(sub.endpoint)} answered {status}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"{origin(sub.endpoint)}: {type(exc).__name__} {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> dict[str, Any]:
        return {"configured": True, **self.stats.as_json(), "expired": self.expired}
