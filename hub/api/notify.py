"""The owner's notification settings and Web Push subscriptions (PROTOCOL §8.2, §8.3).

    GET    /api/v1/owner/notifications                  owner          settings, subscriptions, channel status
    PATCH  /api/v1/owner/notifications                  owner + CSRF   channels, events, motion_cameras, details
    POST   /api/v1/owner/push/subscriptions             owner + CSRF   a browser's PushSubscription.toJSON()
    DELETE /api/v1/owner/push/subscriptions/{sub_id}    owner + CSRF   forget a browser

Every change is audited as `settings.changed` (like hub/api/settings.py). No response and no audit
entry holds a subscription's endpoint (a capability URL) or keys: only its push service's origin.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from hub.api.session import json_object, require_owner
from hub.api.settings import _audit, _field_errors
from hub.errors import HubError, NotFound
from hub.notify.push import origin
from hub.notify.service import Notifier
from hub.services import SERVICES

MAX_ENDPOINT = 2048


class BadSubscription(HubError):
    code = "bad_subscription"
    status = 400


def _notifier(request: web.Request) -> Notifier:
    notifier = request.app[SERVICES].notifier
    if notifier is None:
        raise HubError("notifications are not running", code="unavailable", status=503)
    return notifier


async def get_notifications(request: web.Request) -> web.Response:
    return web.json_response(_notifier(request).status())


async def patch_notifications(request: web.Request) -> web.Response:
    notifier = _notifier(request)
    body = await json_object(request)
    changed = await notifier.change_settings(body)
    await _audit(request.app[SERVICES], request, {"change": "notifications", "set": changed})
    return web.json_response(notifier.status())


def _b64url(value: Any, name: str, length: int) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise BadSubscription(f"keys.{name} must be a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadSubscription(f"keys.{name} is not base64url") from exc
    if len(raw) != length or (name == "p256dh" and raw[0] != 4):
        raise BadSubscription(
            f"keys.{name} must be {length} bytes"
            + (" (an uncompressed P-256 point)" if name == "p256dh" else "")
        )
    return value.rstrip("=")


def _endpoint(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ENDPOINT:
        raise BadSubscription(f"endpoint must be a URL of at most {MAX_ENDPOINT} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise BadSubscription("endpoint is not a URL") from exc
    if parts.username is not None or parts.password is not None or not parts.hostname:
        raise BadSubscription("endpoint must be https://host/… without user info")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http":
        # Plain HTTP only to this box itself (a local push service never leaves it).
        host = parts.hostname
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return value
        except ValueError:
            pass
    raise BadSubscription("endpoint must be https:// (http:// only to a loopback address)")


async def add_subscription(request: web.Request) -> web.Response:
    notifier = _notifier(request)
    if notifier.push is None:
        raise HubError(
            "web push is off on this hub ([push] enabled = false)", code="push_disabled", status=409
        )
    body = await json_object(request)
    endpoint = _endpoint(body.get("endpoint"))
    keys = body.get("keys")
    if not isinstance(keys, dict):
        raise BadSubscription("keys must be an object {p256dh, auth}")
    p256dh = _b64url(keys.get("p256dh"), "p256dh", 65)
    auth = _b64url(keys.get("auth"), "auth", 16)
    name = body.get("name", "browser")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise BadSubscription("name must be 1-64 characters")
    sub_id, created = await notifier.subscribe(endpoint, p256dh, auth, name)
    await _audit(
        request.app[SERVICES],
        request,
        {"change": "push.subscribed", "id": sub_id, "name": name, "origin": origin(endpoint)},
    )
    return web.json_response({"id": sub_id}, status=201 if created else 200)


async def remove_subscription(request: web.Request) -> web.Response:
    notifier = _notifier(request)
    sub_id = request.match_info["sub_id"][:64]
    if not await notifier.unsubscribe(sub_id):
        raise NotFound("no such subscription")
    await _audit(request.app[SERVICES], request, {"change": "push.unsubscribed", "id": sub_id})
    return web.json_response({"removed": sub_id})


def setup(app: web.Application) -> None:
    owner = require_owner
    app.router.add_get("/api/v1/owner/notifications", owner(get_notifications))
    app.router.add_patch("/api/v1/owner/notifications", owner(_field_errors(patch_notifications)))
    app.router.add_post("/api/v1/owner/push/subscriptions", owner(_field_errors(add_subscription)))
    app.router.add_delete("/api/v1/owner/push/subscriptions/{sub_id}", owner(remove_subscription))
