"""Settings changed over the owner API: cameras added/edited/removed at runtime and storage limits,
validated by the config file's rules, persisted across a restart, audited, credentials never shown."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import start_daemon
from tests.web.conftest import CAMERAS, PASSWORD


class Owner:
    """An HTTP client with a cookie jar; `csrf` once logged in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.csrf = ""

    def call(self, method: str, path: str, body: Any = None, csrf: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=20) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def login(self) -> None:
        status, body = self.call("POST", "/api/v1/session/login", {"password": PASSWORD})
        assert status == 200, body
        self.csrf = body["csrf"]


def _split_credentials(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    bare = parts._replace(netloc=f"{parts.hostname}:{parts.port}").geturl()
    return bare, parts.username or "", parts.password or ""


def _camera(owner: Owner, camera_id: str) -> dict[str, Any] | None:
    status, body = owner.call("GET", "/api/v1/owner/cameras")
    assert status == 200
    return next((c for c in body["cameras"] if c["id"] == camera_id), None)


def _wait_online(owner: Owner, camera_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cam = _camera(owner, camera_id)
        if cam and cam["status"] and cam["status"]["online"]:
            return cam
        time.sleep(0.3)
    raise AssertionError(f"{camera_id} never went online: {_camera(owner, camera_id)}")


def test_cameras_and_retention_change_at_runtime_and_survive_a_restart(
    make_hub: Any, sim_camera: dict[str, Any], tmp_path: Path
) -> None:
    hub = make_hub(password=True, extra=CAMERAS)
    url, user, password = _split_credentials(sim_camera["rtsp_main"])
    assert password, "the simulator's URL carries credentials"
    new = {"id": "porch", "name": "Porch", "url": url, "username": user, "password": password,
           "record": False, "retention_days": 3, "motion": {"enabled": False}}  # fmt: skip

    anonymous = Owner(hub.url)
    assert anonymous.call("POST", "/api/v1/owner/settings/cameras", new)[0] == 401
    owner = Owner(hub.url)
    owner.login()
    status, body = owner.call("POST", "/api/v1/owner/settings/cameras", new, csrf=False)
    assert (status, body["error"]) == (403, "csrf")

    # Every rule of the config file applies, and the error names the field.
    bad = [
        ({**new, "id": "Porch!"}, "id"),
        ({**new, "url": "http://127.0.0.1/x"}, "url"),
        ({**new, "url": "whip"}, "url"),
        ({**new, "retention_days": -1}, "retention_days"),
        ({**new, "record": "yes"}, "record"),
        ({**new, "audio": "yes"}, "audio"),
        ({**new, "rtsp_transport": "quic"}, "rtsp_transport"),
        ({**new, "whip_token": "x" * 20}, "whip_token"),
        ({k: v for k, v in new.items() if k != "url"}, "url"),
    ]
    for body_, field in bad:
        status, body = owner.call("POST", "/api/v1/owner/settings/cameras", body_)
        assert (status, body["error"], body["field"]) == (400, "bad_setting", field), body
    status, body = owner.call("POST", "/api/v1/owner/settings/cameras", {**new, "id": "front-door"})
    assert (status, body["error"], body["field"]) == (409, "camera_exists", "id")

    status, body = owner.call("POST", "/api/v1/owner/settings/cameras", new)
    assert status == 201, body
    cam = _wait_online(owner, "porch")
    assert cam["configured_in"] == "settings" and cam["has_credentials"] is True
    assert cam["retention_days"] == 3 and cam["url"] == url
    # Sound is off unless the owner turns it on (recording conversations is regulated).
    assert cam["audio"] is False and cam["rtsp_transport"] == "auto"
    assert _camera(owner, "front-door")["configured_in"] == "file"  # type: ignore[index]
    # No GET ever returns the camera's password.
    for path in ("/api/v1/owner/cameras", "/api/v1/owner/settings"):
        assert password not in json.dumps(owner.call("GET", path)[1])

    # camhub.toml cameras are read-only here.
    for method in ("PATCH", "DELETE"):
        status, body = owner.call(method, "/api/v1/owner/settings/cameras/front-door", {"retention_days": 1})
        assert (status, body["error"]) == (409, "read_only"), body
    assert owner.call("PATCH", "/api/v1/owner/settings/cameras/nope", {"retention_days": 1})[0] == 404
    status, body = owner.call(
        "PATCH", "/api/v1/owner/settings/cameras/porch", {"url": "rtsp://127.0.0.1:1/x"}
    )
    assert (status, body["field"]) == (400, "url")
    status, body = owner.call("PATCH", "/api/v1/owner/settings/cameras/porch", {"retention_days": 0})
    assert (status, body["field"]) == (400, "retention_days")
    status, body = owner.call("PATCH", "/api/v1/owner/settings/cameras/porch", {"retention_days": 1.5})
    assert status == 200, body
    assert _camera(owner, "porch")["retention_days"] == 1.5  # type: ignore[index]
    status, body = owner.call("PATCH", "/api/v1/owner/settings/cameras/porch", {"audio": 1})
    assert (status, body["field"]) == (400, "audio")
    status, body = owner.call("PATCH", "/api/v1/owner/settings/cameras/porch", {"audio": True})
    assert status == 200, body
    assert _wait_online(owner, "porch")["audio"] is True  # restarted with sound on

    # The hub-wide limits: validated like [storage], null goes back to the file's value.
    status, body = owner.call("PATCH", "/api/v1/owner/settings/storage", {"quota_gb": -1})
    assert (status, body["field"]) == (400, "quota_gb")
    status, body = owner.call("PATCH", "/api/v1/owner/settings/storage", {"quota_gb": 2, "max_age_days": 9})
    assert status == 200, body
    settings = owner.call("GET", "/api/v1/owner/settings")[1]["storage"]
    assert (settings["quota_bytes"], settings["max_age_days"]) == (2 * 1024**3, 9)
    assert settings["overrides"] == ["max_age_days", "quota_gb"] and settings["file"]["quota_bytes"] is None

    # A restart keeps the overlay: the camera comes back, with its retention.
    hub.daemon.stop()
    restarted = start_daemon(hub.config, tmp_path / "restarted.log")
    try:
        restarted.wait_ready()
        owner = Owner(restarted.url)
        owner.login()
        cam = _wait_online(owner, "porch")
        assert cam["retention_days"] == 1.5 and cam["audio"] is True
        assert owner.call("GET", "/api/v1/owner/settings")[1]["storage"]["quota_bytes"] == 2 * 1024**3
        status, body = owner.call("DELETE", "/api/v1/owner/settings/cameras/porch")
        assert status == 200, body
        assert _camera(owner, "porch") is None
        status, body = owner.call("GET", "/api/v1/owner/cameras/porch/snapshot.jpg")
        assert status == 404
    finally:
        restarted.stop()
    # Adding, restarting and removing cameras at runtime left no crashed or orphaned task behind.
    for log in (hub.daemon.log(), restarted.log()):
        for bad in ("Traceback", "Task was destroyed", "was never awaited", "crashed"):
            assert bad not in log, log

    entries = [e for e in hub.audit() if e["type"] == "settings.changed"]
    assert [e["data"]["change"] for e in entries] == [
        "camera.added",
        "camera.edited",
        "camera.edited",
        "storage",
        "camera.removed",
    ]
    assert entries[0]["data"]["credentials"] is True and entries[0]["actor"] == "owner"
    assert entries[1]["data"]["set"] == {"retention_days": "1.5"}
    assert entries[2]["data"]["set"] == {"audio": True}
    assert password not in json.dumps(entries)
