"""What happened, as the channels say it (PROTOCOL §8.1): audit entries and camera events in,
`Notification`s out. Only event kinds, camera ids and (with details on) an agency's display name or
a request's kind are ever put in a notification: never footage, thumbnails or request bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Notification:
    # PROTOCOL §8.1 event key: request, grant_used, doorbell, motion, camera_offline, owner_key, clock
    event: str
    # The MQTT consent/camera `event_type` (request_received, press, …).
    event_type: str
    title: str
    # Said only with details on (settings.details); empty when there is nothing more to say.
    detail: str = ""
    camera: str | None = None
    # The owner UI page the push notification opens.
    page: str = "/#/inbox"
    urgent: bool = False


# audit type -> (event key, consent event_type, title, page)
_AUDIT: dict[str, tuple[str, str, str, str]] = {
    "request.received": ("request", "request_received", "A request is waiting", "/#/inbox"),
    "egress.delivery": (
        "grant_used",
        "delivery_fetched",
        "An approval was used: footage was fetched",
        "/#/audit",
    ),
    "egress.live.start": (
        "grant_used",
        "live_started",
        "An approval was used: a livestream started",
        "/#/audit",
    ),
    "egress.live.end": ("grant_used", "live_ended", "A livestream ended", "/#/audit"),
    "key.enrolled": ("owner_key", "key_enrolled", "An owner device was added", "/#/devices"),
    "key.revoked": ("owner_key", "key_revoked", "An owner device was removed", "/#/devices"),
    "clock.unsynced": ("clock", "clock_unsynced", "The hub's clock is not synchronised", "/#/settings"),
}

#: Audit types after which the number of pending requests may have changed.
PENDING_CHANGES = ("request.", "decision.", "key.revoked", "agency.removed", "owner.reset")


def from_audit(type_: str, data: dict[str, Any]) -> Notification | None:
    """The notification for an audit entry, or None for entries nobody is told about."""
    known = _AUDIT.get(type_)
    if known is None:
        return None
    event, event_type, title, page = known
    camera = data.get("camera") if isinstance(data.get("camera"), str) else None
    detail = ""
    if type_ == "request.received":
        cams = data.get("cameras")
        cams_text = ", ".join(c for c in cams if isinstance(c, str))[:200] if isinstance(cams, list) else ""
        kind = data.get("kind") if data.get("kind") in ("clip", "live") else "request"
        detail = f"{kind} of {cams_text}" if cams_text else str(kind)
    elif type_ in ("key.enrolled",) and isinstance(data.get("name"), str):
        detail = str(data["name"])[:64]
    elif camera is not None:
        detail = f"camera {camera}"
    return Notification(
        event=event,
        event_type=event_type,
        title=title,
        detail=detail,
        camera=camera,
        page=page,
        urgent=event == "request",
    )


def camera_event(kind: str, camera: str) -> Notification:
    """A doorbell press, motion start or a camera gone offline."""
    if kind == "press":
        return Notification(
            "doorbell", "press", "Doorbell", f"camera {camera}", camera, "/#/live", urgent=True
        )
    if kind == "motion":
        return Notification("motion", "motion", "Motion", f"camera {camera}", camera, "/#/events")
    return Notification(
        "camera_offline", "offline", "A camera is offline", f"camera {camera}", camera, "/#/live"
    )


def push_text(n: Notification, details: bool) -> dict[str, Any]:
    """The Web Push plaintext (PROTOCOL §8.3): event, title, body and the page to open; nothing else."""
    body = n.detail if details else ""
    return {"v": 1, "event": n.event, "title": n.title, "body": body, "url": n.page}
