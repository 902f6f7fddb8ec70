"""PROTOCOL.md §4: no route returns media unless it is behind an owner session or the egress gate.

The declared table (`hub/api/guards.py`) is checked against the live router: every route must be
declared, every media route must have a media guard, and the gate's docstring must name every media
route that reaches it. Then every route is called without credentials and must not answer with media.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from hub import config as config_mod
from hub.api import guards, make_app
from hub.consent import gate
from hub.daemon import running_hub

MEDIA_TYPES = re.compile(
    r"^(video/|image/|audio/|application/vnd\.camhub\.delivery\+age|application/octet-stream)"
)


def _config(data_dir: Path) -> config_mod.Config:
    return config_mod.parse(
        {
            "hub": {"data_dir": str(data_dir), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
        }
    )


async def test_every_route_is_declared_and_media_is_guarded(tmp_path: Path) -> None:
    async with running_hub(_config(tmp_path / "data")) as services, aiohttp.ClientSession() as http:
        app = make_app(services)
        routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]
        assert routes
        undeclared = [(m, p) for m, p in routes if guards.guard_for(m, p) is None]
        assert not undeclared, f"declare these routes in hub/api/guards.py: {undeclared}"
        for method, path in routes:
            declared = guards.guard_for(method, path)
            assert declared is not None
            if declared.media:
                assert declared.guard in guards.MEDIA_GUARDS, (method, path, declared)
                if declared.guard is guards.Guard.AGENCY_GATE:
                    assert path in (gate.__doc__ or ""), f"gate.py docstring must list {path}"

        # Called without any credentials, nothing answers with media.
        for method, path in routes:
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            if path == "/ui":
                concrete = "/ui/index.html"
            async with http.request(method, services.base_url + concrete, data=b"") as r:
                body = await r.read()
                media = MEDIA_TYPES.match(r.headers.get("Content-Type", ""))
                assert not (200 <= r.status < 300 and media), (method, path, r.status, r.headers, body[:100])


async def test_every_owner_session_route_refuses_a_caller_without_a_session(tmp_path: Path) -> None:
    """Declared OWNER_SESSION (e.g. the notification settings and push subscriptions, PROTOCOL §8):
    without a session cookie the handler never runs — 401, or 403 where CSRF is checked first."""
    async with running_hub(_config(tmp_path / "data")) as services, aiohttp.ClientSession() as http:
        app = make_app(services)
        routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]
        owner_routes = [
            (m, p)
            for m, p in routes
            if (g := guards.guard_for(m, p)) is not None and g.guard is guards.Guard.OWNER_SESSION
        ]
        assert ("POST", "/api/v1/owner/push/subscriptions") in owner_routes
        assert ("PATCH", "/api/v1/owner/notifications") in owner_routes
        for method, path in owner_routes:
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            body = b'{"endpoint": "https://push.example/x", "keys": {}}'
            async with http.request(
                method, services.base_url + concrete, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status in (401, 403), (method, path, r.status, await r.text())
