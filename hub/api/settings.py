"""Settings the owner changes in the web UI: cameras (add, edit, remove) and storage limits.

    POST   /api/v1/owner/settings/cameras               owner + CSRF   add a camera (e.g. one found by mDNS
                                                                   or WS-Discovery)
    PATCH  /api/v1/owner/settings/cameras/{camera_id}   owner + CSRF   name, record, retention_days, motion
    DELETE /api/v1/owner/settings/cameras/{camera_id}   owner + CSRF   remove a camera added here
    PATCH  /api/v1/owner/settings/storage               owner + CSRF   max_age_days, quota_gb (null: the file's)
    GET    /api/v1/owner/settings/privacy               owner          every camera's privacy masks (§4.1)
    PUT    /api/v1/owner/settings/privacy/{camera_id}   owner + CSRF   masks, owner_views (masks null: the file's)

The overlay and its rules are in `hub/settings.py` (validated by the config file's own validators;
cameras from camhub.toml are read-only here: 409 `read_only`). Each change is stored first, then
applied to the running hub (`Cameras.add/remove/reconfigure`), then audited as `settings.changed`
(PROTOCOL §5 lists its entry types "at least"; this is one more). No response, and no audit entry,
ever holds a camera's credentials.

Adding an ONVIF camera: a body with `onvif` (`http://host:port`), `username`, `password` and no
`url` makes the hub read the camera's profiles with those credentials (GetProfiles, GetStreamUri,
hub/onvif/device.py) and store the main stream as `url` and the smaller one as `sub_url`, beside
`onvif` (events). Refusals name the field: wrong credentials 400 `onvif_unauthorized` (field
`password`), no answer 502 `onvif_unreachable` and an answer the hub cannot use 502
`onvif_bad_answer` (field `onvif`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from aiohttp import web

from hub.api.session import Handler, json_object, require_owner
from hub.config import onvif_url_problem
from hub.egress.webrtc import LiveSessions
from hub.errors import HubError, NotFound
from hub.onvif.device import OnvifError, read_streams
from hub.services import SERVICES, Services
from hub.settings import (
    EDITABLE_KEYS,
    OwnerSettings,
    SettingsError,
    public_camera,
    redact_url,
    validate_camera,
    validate_privacy,
)
from hub.settings import validate_storage as check_storage
from hub.store import settings as q

log = logging.getLogger(__name__)

OWNER_SETTINGS = web.AppKey("owner_settings", OwnerSettings)
SETTINGS_LOCK = web.AppKey("owner_settings_lock", asyncio.Lock)


def _field_errors(handler: Handler) -> Handler:
    """SettingsError → 400 JSON that names the field, so the form can point at it."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SettingsError as exc:
            return web.json_response(
                {"error": exc.code, "detail": exc.detail, "field": exc.field}, status=exc.status
            )

    return wrapped


def _audit_value(value: Any) -> Any:
    """A settings value as audit data: floats (motion zones, min_area) as text, like `_days`."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return {str(k): _audit_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_audit_value(v) for v in value]
    return value


def _days(value: Any) -> str | None:
    # Audit entries hold no floats (RFC 8785 number forms differ between languages): days as text.
    return None if value is None else f"{value:g}"


async def _audit(services: Services, request: web.Request, data: dict[str, Any]) -> None:
    data = {**data, "remote": request.remote or "unknown"}
    if services.consent is None:
        log.info("settings.changed %s", data)
        return
    await services.consent.record("settings.changed", "owner", data)


async def _apply(request: web.Request) -> None:
    """Make the running hub use the overlay: the effective config for routes and retention."""
    services = request.app[SERVICES]
    effective = request.app[OWNER_SETTINGS].effective()
    services.config = effective
    if services.consent is not None:
        # Deliveries and agency streams read the masks from here at the moment of sending (§4.1).
        services.consent.config = effective
    if services.cameras is not None:
        services.cameras.reconfigure(effective)


def _camera_json(table: dict[str, Any]) -> dict[str, Any]:
    return {**public_camera(table), "configured_in": "settings"}


async def add_camera(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    body = await json_object(request)
    table = {k: v for k, v in body.items() if v is not None and v != ""}
    if "onvif" in table and "url" not in table:
        table.update(await _onvif_streams(table))
    async with request.app[SETTINGS_LOCK]:
        cam = validate_camera(table)
        if settings.is_file_camera(cam.id) or cam.id in settings.cameras:
            raise SettingsError(
                "id", f"a camera with id {cam.id!r} exists already", code="camera_exists", status=409
            )
        await services.store.run(q.put_camera, cam.id, table, time.time())
        settings.cameras[cam.id] = table
        await _apply(request)
        if services.cameras is not None:
            await services.cameras.add(cam)
    await _audit(
        services,
        request,
        {
            "change": "camera.added",
            "camera": cam.id,
            "name": cam.name,
            "url": redact_url(cam.url or ""),
            "onvif": cam.onvif,
            "credentials": cam.username is not None or cam.password is not None,
            "record": cam.record,
            "retention_days": _days(cam.retention_days),
        },
    )
    return web.json_response({"camera": _camera_json(table)}, status=201)


async def _onvif_streams(table: dict[str, Any]) -> dict[str, Any]:
    """The stream URIs of the ONVIF camera at `table["onvif"]`, read with the table's credentials."""
    url, username, password = table["onvif"], table.get("username"), table.get("password")
    problem = "must be a string" if not isinstance(url, str) else onvif_url_problem(url)
    if problem:
        raise SettingsError("onvif", problem)
    if not isinstance(username, str | None) or not isinstance(password, str | None):
        raise SettingsError("username", "must be a string")
    try:
        streams = await read_streams(url, username, password)
    except OnvifError as exc:
        field = "password" if exc.code == "onvif_unauthorized" else "onvif"
        raise SettingsError(
            field, exc.detail, code=exc.code, status=400 if field == "password" else 502
        ) from None
    found: dict[str, Any] = {"url": streams.main_url}
    if streams.sub_url is not None:
        found["sub_url"] = streams.sub_url
    if "name" not in table and streams.model:
        found["name"] = streams.model
    return found


def _ui_camera(request: web.Request) -> tuple[str, dict[str, Any]]:
    settings = request.app[OWNER_SETTINGS]
    camera_id = request.match_info["camera_id"]
    if settings.is_file_camera(camera_id):
        raise HubError("this camera is set in camhub.toml; change it there", code="read_only", status=409)
    table = settings.cameras.get(camera_id)
    if table is None:
        raise NotFound("no such camera")
    return camera_id, table


async def edit_camera(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    body = await json_object(request)
    for key in body:
        if key not in EDITABLE_KEYS:
            raise SettingsError(key, "cannot be changed; remove the camera and add it again")
    async with request.app[SETTINGS_LOCK]:
        camera_id, old = _ui_camera(request)
        table = {**old, **body}
        for key, value in body.items():
            if value is None:  # null: back to the default (e.g. the hub-wide retention)
                table.pop(key)
        cam = validate_camera(table)
        before = validate_camera(old)
        await services.store.run(q.put_camera, camera_id, table, time.time())
        settings.cameras[camera_id] = table
        await _apply(request)
        # Retention and the name need no restart; recording, motion, audio or transport do.
        restart = (cam.record, cam.motion, cam.audio, cam.rtsp_transport) != (
            before.record,
            before.motion,
            before.audio,
            before.rtsp_transport,
        )
        if restart and services.cameras is not None:
            await services.cameras.remove(camera_id)
            await services.cameras.add(cam)
    # Floats (retention_days, motion zones and min_area) would be refused by the audit log after the
    # change was already applied, leaving an unaudited change and a 400 to the owner.
    changed = {k: _audit_value(body[k]) for k in sorted(body) if old.get(k) != table.get(k)}
    await _audit(services, request, {"change": "camera.edited", "camera": camera_id, "set": changed})
    return web.json_response({"camera": _camera_json(table)})


async def remove_camera(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    async with request.app[SETTINGS_LOCK]:
        camera_id, _ = _ui_camera(request)
        await services.store.run(q.delete_camera, camera_id)
        del settings.cameras[camera_id]
        if services.cameras is not None:
            await services.cameras.remove(camera_id)
        await _apply(request)
    await _audit(services, request, {"change": "camera.removed", "camera": camera_id})
    return web.json_response({"removed": camera_id})


async def edit_storage(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    body = await json_object(request)
    async with request.app[SETTINGS_LOCK]:
        merged = {**settings.storage, **body}
        merged = {k: v for k, v in merged.items() if v is not None}  # null: back to the file's value
        merged = check_storage(merged)
        await services.store.run(q.put_storage, merged, time.time())
        settings.storage = merged
        await _apply(request)
    storage = services.config.storage
    await _audit(
        services,
        request,
        {
            "change": "storage",
            "max_age_days": _days(storage.max_age_days),
            "quota_bytes": storage.quota_bytes,
            "from_settings": sorted(merged),
        },
    )
    return web.json_response(
        {"max_age_days": storage.max_age_days, "quota_bytes": storage.quota_bytes, "overrides": merged}
    )


def _privacy_json(services: Services, settings: OwnerSettings, camera_id: str) -> dict[str, Any]:
    cam = services.config.camera(camera_id)
    assert cam is not None
    return {
        "camera": camera_id,
        "masks": [[list(pt) for pt in poly] for poly in cam.privacy.masks],
        "owner_views": cam.privacy.owner_views,
        "configured_in": "settings" if camera_id in settings.privacy else "file",
    }


async def get_privacy(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    return web.json_response(
        {"cameras": [_privacy_json(services, settings, c.id) for c in services.config.cameras]}
    )


async def put_privacy(request: web.Request) -> web.Response:
    """Set one camera's masks (any camera, camhub.toml's too: PROTOCOL §4.1)."""
    services = request.app[SERVICES]
    settings = request.app[OWNER_SETTINGS]
    camera_id = request.match_info["camera_id"]
    body = await json_object(request)
    for key in body:
        if key not in ("masks", "owner_views"):
            raise SettingsError(key, "unknown field (expected masks, owner_views)")
    async with request.app[SETTINGS_LOCK]:
        if services.config.camera(camera_id) is None:
            raise NotFound("no such camera")
        table: dict[str, Any] | None
        if "masks" in body and body["masks"] is None:
            table = None  # back to camhub.toml's masks
        else:
            current = _privacy_json(services, settings, camera_id)
            table = {
                "masks": body.get("masks", current["masks"]),
                "owner_views": body.get("owner_views", current["owner_views"]),
            }
            validate_privacy(table)
        await services.store.run(q.put_privacy, camera_id, table, time.time())
        if table is None:
            settings.privacy.pop(camera_id, None)
        else:
            settings.privacy[camera_id] = table
        await _apply(request)
        cam = services.config.camera(camera_id)
        assert cam is not None
        # A stream that was relayed unmasked cannot start painting mid-stream: end it; the viewer
        # reconnects and gets the masked stream. Painting streams read the new masks per frame.
        live = _live_sessions(request)
        if live is not None:
            await live.masks_changed(
                camera_id,
                lambda s: (
                    bool(cam.privacy.masks) and (s.audience.kind.value == "agency" or cam.privacy.owner_views)
                ),
            )
    entry = _privacy_json(services, settings, camera_id)
    await _audit(
        services,
        request,
        {
            "change": "privacy",
            "camera": camera_id,
            "masks": len(cam.privacy.masks),
            "points": _audit_value(entry["masks"]),
            "owner_views": cam.privacy.owner_views,
            "configured_in": entry["configured_in"],
        },
    )
    return web.json_response(entry)


def _live_sessions(request: web.Request) -> LiveSessions | None:
    from hub.api.live import LIVE_MEDIA

    media = request.app.get(LIVE_MEDIA)
    return None if media is None else media.sessions


def setup(app: web.Application) -> None:
    # make_app runs before startup, so services.config is still the file's here.
    app[OWNER_SETTINGS] = OwnerSettings(app[SERVICES].config)
    app[SETTINGS_LOCK] = asyncio.Lock()
    owner = require_owner
    prefix = "/api/v1/owner/settings"
    app.router.add_post(f"{prefix}/cameras", owner(_field_errors(add_camera)))
    app.router.add_patch(f"{prefix}/cameras/{{camera_id}}", owner(_field_errors(edit_camera)))
    app.router.add_delete(f"{prefix}/cameras/{{camera_id}}", owner(_field_errors(remove_camera)))
    app.router.add_patch(f"{prefix}/storage", owner(_field_errors(edit_storage)))
    app.router.add_get(f"{prefix}/privacy", owner(get_privacy))
    app.router.add_put(f"{prefix}/privacy/{{camera_id}}", owner(_field_errors(put_privacy)))

    async def load(app: web.Application) -> None:
        # Before the hub reports ready: the owner's cameras run alongside the file's from the start.
        services = app[SERVICES]
        settings = app[OWNER_SETTINGS]
        await settings.load(services.store)
        effective = settings.effective()
        services.config = effective
        if services.cameras is not None:
            services.cameras.reconfigure(effective)
            for cam_id in settings.cameras:
                cam = effective.camera(cam_id)
                if cam is not None and cam_id not in services.cameras.runtimes:
                    await services.cameras.add(cam)

    app.on_startup.append(load)
