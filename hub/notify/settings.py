"""What the owner chose to be told about, and on which channel (PROTOCOL §8.2).

The settings are one JSON row (hub/store/notify.py) validated here on every read and every change,
so a row can hold nothing a PATCH could not. A problem is a `SettingsError` naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hub.config import CAMERA_ID_RE
from hub.settings import SettingsError

CHANNELS = ("mqtt", "push")
EVENTS = ("request", "grant_used", "doorbell", "motion", "camera_offline", "owner_key", "clock")
FIELDS = frozenset({"channels", "events", "motion_cameras", "details"})
MAX_MOTION_CAMERAS = 64


@dataclass(frozen=True)
class NotifySettings:
    channels: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(CHANNELS, True))
    events: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(EVENTS, True))
    # Motion is opt-in per camera: a busy street would otherwise ring the owner's phone all day.
    motion_cameras: tuple[str, ...] = ()
    # Off: push texts say only what kind of thing happened ("a request is waiting").
    details: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "channels": dict(self.channels),
            "events": dict(self.events),
            "motion_cameras": list(self.motion_cameras),
            "details": self.details,
        }

    def wants(self, channel: str, event: str) -> bool:
        return self.channels.get(channel, False) and self.events.get(event, False)


def _switches(name: str, value: Any, keys: tuple[str, ...], current: dict[str, bool]) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise SettingsError(name, "must be an object of booleans")
    out = dict(current)
    for key, on in value.items():
        if key not in keys:
            raise SettingsError(name, f"unknown key {str(key)[:64]!r} (expected one of: {', '.join(keys)})")
        if not isinstance(on, bool):
            raise SettingsError(name, f"{key} must be true or false")
        out[key] = on
    return out


def apply(current: NotifySettings, body: dict[str, Any]) -> NotifySettings:
    """`current` changed by a PATCH body (or a stored row over the defaults). Raises SettingsError."""
    for key in body:
        if key not in FIELDS:
            raise SettingsError(
                str(key)[:64], f"unknown field (expected one of: {', '.join(sorted(FIELDS))})"
            )
    new = current
    if "channels" in body:
        new = dataclasses.replace(
            new, channels=_switches("channels", body["channels"], CHANNELS, new.channels)
        )
    if "events" in body:
        new = dataclasses.replace(new, events=_switches("events", body["events"], EVENTS, new.events))
    if "motion_cameras" in body:
        cams = body["motion_cameras"]
        if not isinstance(cams, list) or len(cams) > MAX_MOTION_CAMERAS:
            raise SettingsError(
                "motion_cameras", f"must be an array of at most {MAX_MOTION_CAMERAS} camera ids"
            )
        for cam in cams:
            if not isinstance(cam, str) or not CAMERA_ID_RE.match(cam):
                raise SettingsError("motion_cameras", "each entry must be a camera id")
        new = dataclasses.replace(new, motion_cameras=tuple(dict.fromkeys(cams)))
    if "details" in body:
        if not isinstance(body["details"], bool):
            raise SettingsError("details", "must be true or false")
        new = dataclasses.replace(new, details=body["details"])
    return new
