"""The owner's settings from the web UI, kept in SQLite as an overlay on the config file.

    effective config = camhub.toml  +  cameras the owner added in the browser
                                    +  [storage] keys the owner changed (max_age_days, quota_gb)
                                    +  privacy masks the owner drew (any camera, PROTOCOL §4.1)

Cameras in camhub.toml stay the file's: the UI shows them read-only (they can be reviewed, backed up
and diffed there), and an overlay row can never shadow one (the file wins, the row is skipped with a
warning). Cameras added in the UI are editable and removable there.

Every value goes through the file's own validators (`hub.config.parse_camera`, `parse_storage`),
so the overlay can hold nothing the file could not; the rows are validated again when read. A
problem becomes `SettingsError` (400) naming the field, e.g. `{"error": "bad_setting", "field":
"url", "detail": "must be rtsp:// or whip"}`.

Credentials (a camera's RTSP username and password) are stored like camhub.toml stores them, and are
never returned by any GET (`public_camera`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from hub.config import (
    CameraConfig,
    Config,
    ConfigError,
    PrivacyConfig,
    parse_camera,
    parse_privacy,
    parse_storage,
)
from hub.errors import HubError
from hub.store import Store
from hub.store import settings as q

log = logging.getLogger(__name__)

#: Keys of a `[[cameras]]` table the web UI may set. WHIP cameras need a token shared with the
#: camera and motion zones need care: those stay in camhub.toml. `onvif` and `sub_url` are here for
#: ONVIF cameras, whose stream URIs the hub reads from the camera when one is added (hub/api/settings.py).
CAMERA_KEYS = frozenset(
    {
        "id",
        "name",
        "url",
        "sub_url",
        "onvif",
        "username",
        "password",
        "record",
        "retention_days",
        "events_url",
        "motion",
        "audio",
        "rtsp_transport",
    }
)
#: Keys an edit may change; the rest identify the camera (remove it and add it again to change them).
#: `audio` is the owner's to turn on (off by default: recording conversations is regulated).
EDITABLE_KEYS = frozenset({"name", "record", "retention_days", "motion", "audio", "rtsp_transport"})
STORAGE_KEYS = frozenset({"max_age_days", "quota_gb"})
# `cameras.<id>.<key>…: message` or `cameras[0].<key>: message` (hub.config's problem lines)
_PROBLEM = re.compile(r"^(?:cameras(?:\[\d+\]|\.[a-z0-9_-]+)|storage)\.([a-z_]+)[^:]*: (.*)$")


class SettingsError(HubError):
    code = "bad_setting"
    status = 400

    def __init__(self, field_name: str, detail: str, *, code: str | None = None, status: int | None = None):
        super().__init__(f"{field_name}: {detail}", code=code, status=status)
        self.field = field_name


def _from_config_error(exc: ConfigError) -> SettingsError:
    m = _PROBLEM.match(exc.problems[0]) if exc.problems else None
    if m is None:
        return SettingsError("body", "; ".join(exc.problems))
    return SettingsError(m.group(1), m.group(2))


def validate_camera(table: dict[str, Any]) -> CameraConfig:
    """A camera table from the UI, checked by the config file's rules. Raises SettingsError."""
    for key in table:
        if key not in CAMERA_KEYS:
            raise SettingsError(key, "cannot be set from the web UI (set it in camhub.toml)")
    if table.get("url") == "whip":
        raise SettingsError(
            "url", "a camera that pushes over WHIP is set up in camhub.toml (it needs a token)"
        )
    if "url" not in table:
        raise SettingsError("url", "is required (an rtsp:// URL)")
    try:
        return parse_camera(table)
    except ConfigError as exc:
        raise _from_config_error(exc) from exc


def validate_storage(table: dict[str, Any]) -> dict[str, Any]:
    """Storage overrides from the UI (max_age_days, quota_gb), checked by the file's rules."""
    for key in table:
        if key not in STORAGE_KEYS:
            raise SettingsError(key, "cannot be set from the web UI (set it in camhub.toml)")
    try:
        parse_storage(table)
    except ConfigError as exc:
        raise _from_config_error(exc) from exc
    return dict(table)


def validate_privacy(table: dict[str, Any]) -> PrivacyConfig:
    """`{"masks": [...], "owner_views": bool}` from the UI, by the file's `[cameras.privacy]` rules."""
    try:
        return parse_privacy(table)
    except ConfigError as exc:
        first = exc.problems[0] if exc.problems else "privacy: invalid"
        key, _, detail = first.partition(": ")
        name = key.split(".")[1].split("[")[0] if "." in key else "body"
        raise SettingsError(name, detail or first) from exc


def public_camera(table: dict[str, Any]) -> dict[str, Any]:
    """What a GET may show of a UI camera: never the password, nor credentials inside the URL."""
    out = {k: v for k, v in table.items() if k not in ("username", "password")}
    out["url"] = redact_url(str(table.get("url", "")))
    out["has_credentials"] = bool(table.get("username") or table.get("password")) or out["url"] != table.get(
        "url"
    )
    return out


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def redact_url(url: str) -> str:
    return _USERINFO.sub(r"\1", url)


@dataclass
class OwnerSettings:
    """The overlay in memory (the rows are the truth) and the effective config it makes."""

    file_config: Config
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> camera table
    storage: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, dict[str, Any]] = field(default_factory=dict)  # camera id -> privacy table

    async def load(self, store: Store) -> None:
        """Read the overlay rows (once, at start). A row that is invalid, or whose id is now in
        camhub.toml, is logged and skipped: the hub still starts."""
        file_ids = {c.id for c in self.file_config.cameras}
        self.cameras.clear()
        for table in await store.run(q.cameras):
            cam_id = table.get("id")
            if cam_id in file_ids:
                log.warning("camera %s is in camhub.toml now; its web UI settings are ignored", cam_id)
                continue
            try:
                validate_camera(table)
            except SettingsError as exc:
                log.warning("camera %s from the web UI settings is invalid and skipped: %s", cam_id, exc)
                continue
            self.cameras[str(cam_id)] = table
        try:
            self.storage = validate_storage(await store.run(q.storage))
        except SettingsError as exc:
            log.warning("storage settings from the web UI are invalid and ignored: %s", exc)
        self.privacy.clear()
        for cam_id, table in (await store.run(q.privacy)).items():
            try:
                validate_privacy(table)
            except SettingsError as exc:
                # Fail loud: the file's masks (if any) stay in force, never none at all silently.
                log.error("privacy masks of %s from the web UI are invalid and skipped: %s", cam_id, exc)
                continue
            self.privacy[cam_id] = table

    def is_file_camera(self, camera_id: str) -> bool:
        return self.file_config.camera(camera_id) is not None

    def effective(self) -> Config:
        file = self.file_config
        storage = file.storage
        if self.storage:
            parsed = parse_storage(self.storage)
            if "max_age_days" in self.storage:
                storage = dataclasses.replace(storage, max_age_days=parsed.max_age_days)
            if "quota_gb" in self.storage:
                storage = dataclasses.replace(storage, quota_bytes=parsed.quota_bytes)
        cameras = file.cameras + tuple(parse_camera(t) for t in self.cameras.values())
        cameras = tuple(
            dataclasses.replace(c, privacy=parse_privacy(self.privacy[c.id])) if c.id in self.privacy else c
            for c in cameras
        )
        return dataclasses.replace(file, cameras=cameras, storage=storage)
