"""The owner's live-view fallback without WebRTC: JPEG stills of a camera's live stream.

    GET /api/v1/owner/cameras/{camera_id}/snapshot.jpg   owner session   the latest still (≤ 1 s old)
    GET /api/v1/owner/cameras/{camera_id}/mjpeg          owner session   multipart/x-mixed-replace stream
    GET /api/v1/owner/cameras/{camera_id}/privacy-preview.jpg   owner    the still as it would leave (§4.1)

Both are the owner's own live picture on the LAN (PROTOCOL §4 exempts it from the egress gate); a
household member with `live` on the camera may use them too (§1.2), so they are declared VIEWER_LIVE
+ media in `hub/api/guards.py`; the privacy preview stays OWNER_SESSION. Unknown camera → 404 `not_found`; a camera
that sends no picture → 503 `camera_offline`. Responses are `no-store`: a still must not outlive the
session in a shared device's cache. Decoding is in `hub/ingest/snapshot.py`.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from aiohttp import web

from hub.api.session import OWNER_SESSION, VIEW_RECHECK_S, require_owner, require_viewer, session_alive
from hub.api.views import SNAPSHOT_WINDOW_S, view_log
from hub.consent import gate
from hub.egress import privacy
from hub.errors import HubError, NotFound
from hub.ingest.relay import RelayHub
from hub.ingest.snapshot import SnapshotError, Snapshots, SnapshotSource
from hub.services import SERVICES

SNAPSHOTS = web.AppKey("snapshots", Snapshots)
BOUNDARY = "camhubframe"
# An MJPEG response ends after this long; a viewer that still watches reconnects. Bounds the work
# a forgotten tab can cause.
MJPEG_MAX_S = 30 * 60
# No new picture for this long: the camera is gone, end the stream (the page falls back or retries).
PICTURE_TIMEOUT_S = 5.0


class CameraOffline(HubError):
    code = "camera_offline"
    status = 503


def _source(request: web.Request) -> SnapshotSource:
    camera = request.match_info["camera_id"]
    cameras = request.app[SERVICES].cameras
    if cameras is None or camera not in cameras.runtimes:
        raise NotFound("no such camera")
    source = request.app[SNAPSHOTS].source(camera)
    if source is None:
        raise CameraOffline("the camera is not streaming")
    return source


async def _owner_jpeg(request: web.Request, jpeg: bytes) -> bytes:
    """The owner's still, masked only if the owner turned `owner_views` on (PROTOCOL §4.1)."""
    masks = gate.privacy_masks(
        request.app[SERVICES].config, request.match_info["camera_id"], audience="owner"
    )
    return await asyncio.to_thread(privacy.masked_still, jpeg, masks) if masks else jpeg


async def snapshot(request: web.Request) -> web.Response:
    source = _source(request)
    try:
        snap = await source.get()
    except SnapshotError as exc:
        raise CameraOffline(f"the camera sent no picture: {exc}") from exc
    camera = request.match_info["camera_id"]
    session = request[OWNER_SESSION].id_sha256
    await view_log(request).record(
        request, "view.snapshot", {"camera": camera}, fold=(session, f"snapshot:{camera}"),
        window_s=SNAPSHOT_WINDOW_S,
    )  # fmt: skip
    return web.Response(
        body=await _owner_jpeg(request, snap.jpeg),
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Snapshot-Seq": str(snap.seq)},
    )


async def privacy_preview(request: web.Request) -> web.Response:
    """The approval screen's preview (PROTOCOL §4.1): the latest still with the masks an agency's
    copy gets painted exactly as a delivery paints them (`hub.egress.privacy`)."""
    source = _source(request)
    camera = request.match_info["camera_id"]
    try:
        snap = await source.get()
    except SnapshotError as exc:
        raise CameraOffline(f"the camera sent no picture: {exc}") from exc
    masks = gate.privacy_masks(request.app[SERVICES].config, camera)
    jpeg = await asyncio.to_thread(privacy.masked_still, snap.jpeg, masks) if masks else snap.jpeg
    return web.Response(
        body=jpeg,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Privacy-Masks": str(len(masks))},
    )


async def mjpeg(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    session_hash = request[OWNER_SESSION].id_sha256
    source = _source(request)
    try:
        snap = await source.get()
    except SnapshotError as exc:
        raise CameraOffline(f"the camera sent no picture: {exc}") from exc
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    ends_at = time.monotonic() + MJPEG_MAX_S
    next_check = time.monotonic() + VIEW_RECHECK_S
    camera = request.match_info["camera_id"]
    view = {"session": secrets.token_urlsafe(12), "camera": camera, "via": "mjpeg"}
    started = time.monotonic()
    await view_log(request).record(request, "view.live.start", view)
    try:
        while time.monotonic() < ends_at:
            jpeg = await _owner_jpeg(request, snap.jpeg)
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            await response.write(head.encode("ascii") + jpeg + b"\r\n")
            give_up = time.monotonic() + PICTURE_TIMEOUT_S
            while True:
                # Wait for the next picture in slices, asking between them whether the owner session
                # still exists: logout or a password change ends the stream within 1 s (issue 12).
                if time.monotonic() >= next_check:
                    if not await session_alive(services, session_hash, camera):
                        return response
                    next_check = time.monotonic() + VIEW_RECHECK_S
                try:
                    snap = await source.get(newer_than=snap.seq, timeout=VIEW_RECHECK_S)
                    break
                except SnapshotError:
                    if source.relay.closed or not source.running or time.monotonic() >= give_up:
                        raise
    except (SnapshotError, ConnectionResetError):
        pass  # the camera went away or the viewer left: end the stream
    finally:
        seconds = int(time.monotonic() - started)
        await view_log(request).record(request, "view.live.end", {**view, "seconds": seconds})
    return response


def setup(app: web.Application, relays: RelayHub) -> None:
    app[SNAPSHOTS] = Snapshots(relays)
    # The owner, or a household member with `live` on the camera (PROTOCOL §1.2).
    app.router.add_get(
        "/api/v1/owner/cameras/{camera_id}/snapshot.jpg", require_viewer(snapshot, right="live")
    )
    app.router.add_get("/api/v1/owner/cameras/{camera_id}/mjpeg", require_viewer(mjpeg, right="live"))
    app.router.add_get(
        "/api/v1/owner/cameras/{camera_id}/privacy-preview.jpg", require_owner(privacy_preview)
    )

    async def close(app: web.Application) -> None:
        await app[SNAPSHOTS].close()

    app.on_shutdown.append(close)
