"""The sim's HTTP control API and event stream (aiohttp).

Routes (``<id>`` is the camera name, e.g. ``sim-1``):

- ``GET  /cameras`` — every camera's URLs (RTSP main/sub, control, events) as JSON.
- ``POST /cameras/<id>/visitor`` — a visitor walks up; JSON body ``{"ring": true}`` optional.
- ``POST /cameras/<id>/press`` — the doorbell is pressed.
- ``POST /cameras/<id>/fault`` — JSON ``{"kind": ..., "params": {...}}`` (or the params
  inline next to ``kind``); see :meth:`firmware_sim.camera.SimCamera.fault`.
- ``POST /cameras/<id>/whip`` — JSON ``{"url": ..., "token": ..., "stream": "main"}``:
  publish to a WHIP endpoint; ``DELETE /cameras/<id>/whip`` stops every publisher.
- ``GET  /cameras/<id>/events`` — Server-Sent Events (text/event-stream): one event per
  doorbell/motion event, ``event:`` = type, ``data:`` = JSON ``{type, camera, time, ts[, state]}``.

Errors are JSON ``{"error": code, "detail": text}`` with 400/404/502.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from firmware_sim.camera import FaultError

if TYPE_CHECKING:
    from firmware_sim.camera import SimCamera

CAMERAS: web.AppKey[dict[str, SimCamera]] = web.AppKey("cameras", dict)
KEEPALIVE_S = 15.0


def _error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def _camera(request: web.Request) -> SimCamera:
    camera = request.app[CAMERAS].get(request.match_info["id"])
    if camera is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "unknown_camera", "detail": request.match_info["id"]}),
            content_type="application/json",
        )
    return camera


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_json", "detail": str(exc)}), content_type="application/json"
        ) from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_json", "detail": "expected an object"}),
            content_type="application/json",
        )
    return data


async def list_cameras(request: web.Request) -> web.Response:
    return web.json_response([c.describe() for c in request.app[CAMERAS].values()])


async def visitor(request: web.Request) -> web.Response:
    camera = _camera(request)
    body = await _body(request)
    await camera.visitor(ring=bool(body.get("ring", False)))
    return web.json_response({"ok": True}, status=202)


async def press(request: web.Request) -> web.Response:
    await _camera(request).press()
    return web.json_response({"ok": True}, status=202)


async def fault(request: web.Request) -> web.Response:
    camera = _camera(request)
    body = await _body(request)
    kind = body.pop("kind", None)
    if not isinstance(kind, str):
        return _error(400, "bad_fault", "missing 'kind'")
    params = body.pop("params", None)
    if params is None:
        params = body
    if not isinstance(params, dict):
        return _error(400, "bad_fault", "'params' must be an object")
    try:
        await camera.fault(kind, **params)
    except FaultError as exc:
        return _error(400, exc.code, str(exc))
    return web.json_response({"ok": True, "kind": kind}, status=202)


async def whip_start(request: web.Request) -> web.Response:
    from firmware_sim.whip import WhipError

    camera = _camera(request)
    body = await _body(request)
    url, token, stream = body.get("url"), body.get("token"), body.get("stream", "main")
    if not isinstance(url, str) or stream not in camera.feeds:
        return _error(400, "bad_whip", "need 'url' and stream main|sub")
    try:
        pub = await camera.publish_whip(url, token=token, stream=stream)
    except WhipError as exc:
        return _error(502, "whip_failed", str(exc))
    return web.json_response({"ok": True, "resource": pub.resource_url}, status=201)


async def whip_stop(request: web.Request) -> web.Response:
    await _camera(request).stop_publishing()
    return web.json_response({"ok": True})


async def events(request: web.Request) -> web.StreamResponse:
    camera = _camera(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    with camera.listen() as listener, contextlib.suppress(ConnectionError):
        await response.write(b": camhub-sim events\nretry: 1000\n\n")
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    event = await listener.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            data = json.dumps(event.to_json())
            await response.write(f"event: {event.type}\ndata: {data}\n\n".encode())
        await response.write_eof()
    return response


def make_app(cameras: dict[str, SimCamera]) -> web.Application:
    app = web.Application()
    app[CAMERAS] = cameras
    app.router.add_get("/cameras", list_cameras)
    app.router.add_post("/cameras/{id}/visitor", visitor)
    app.router.add_post("/cameras/{id}/press", press)
    app.router.add_post("/cameras/{id}/fault", fault)
    app.router.add_post("/cameras/{id}/whip", whip_start)
    app.router.add_delete("/cameras/{id}/whip", whip_stop)
    app.router.add_get("/cameras/{id}/events", events)
    return app


class ControlServer:
    """The control API on ``host:port`` for a set of cameras."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.cameras: dict[str, SimCamera] = {}
        self._runner: web.AppRunner | None = None

    def add_camera(self, camera: SimCamera) -> None:
        self.cameras[camera.name] = camera
        camera.control = self

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(make_app(self.cameras), shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            # End open event streams first so cleanup does not wait on them.
            for camera in self.cameras.values():
                camera.close_event_streams()
            await self._runner.cleanup()
            self._runner = None
