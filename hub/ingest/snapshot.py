"""Still pictures of a camera's live stream: the owner's fallback when WebRTC is unavailable.

A browser without WebRTC (a policy, an old phone) or a network where ICE fails still gets a live
picture: `GET …/snapshot.jpg` refreshed by the page, or `GET …/mjpeg` (multipart/x-mixed-replace).

The hub does not transcode video, so this is kept cheap enough for a Raspberry Pi:

- **Keyframes only.** A `SnapshotSource` subscribes to the camera's `PacketRelay` and looks only at
  keyframes (IDR access units decode on their own, ITU-T H.264 §8.2.1), skipping everything else.
  A camera with a 1-4 s GOP so gives a new still every 1-4 s, which is what a fallback needs.
- **One decode per interval, however many viewers.** The last JPEG is cached for `min_interval_s`
  (1 s); keyframes arriving sooner are skipped, so ten viewers cost what one costs.
- **Off the event loop.** Decoding (PyAV) and JPEG encoding (OpenCV) run in a worker thread, one at
  a time per camera.
- **Only while someone watches.** The subscription starts with the first request and ends after
  `idle_s` without one, so an unwatched camera costs nothing.

Snapshots serve only the owner on the LAN (`hub/api/snapshot.py`, behind an owner session): they
are never egress, which goes through `hub/consent/gate.py` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import av
import cv2

from hub.ingest.relay import PacketRelay, RelayClosed, RelayHub, RelaySubscription
from hub.ingest.source import MediaPacket
from hub.supervisor import stop_task

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0
IDLE_S = 10.0
# The fallback is a preview, not evidence: a smaller picture costs less to encode and send.
MAX_WIDTH = 1280
JPEG_QUALITY = 75


class SnapshotError(Exception):
    """No picture could be produced (no keyframe in time, or it did not decode)."""


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    taken_at: float  # monotonic time of the decode
    seq: int  # increases with every new picture of this camera


def decode_keyframe(packet: MediaPacket) -> bytes:
    """One keyframe (Annex B) → JPEG bytes. Blocking: call it in a worker thread."""
    params = packet.params
    if params is None:
        raise SnapshotError("packet has no codec parameters")
    data = packet.data
    # Parameter sets may be only out of band (source.py's packet contract): a lone decoder needs them.
    if params.extradata and params.extradata not in data[: len(params.extradata) + 8]:
        data = params.extradata + data
    ctx = av.CodecContext.create(params.codec, "r")
    ctx.thread_count = 1  # one still: frame threads would only add delay and memory on a Pi
    frames = []
    try:
        frames += ctx.decode(av.Packet(data))
        frames += ctx.decode(None)  # drain: the decoder may hold the frame back
    except av.FFmpegError as exc:
        raise SnapshotError(f"keyframe did not decode: {exc}") from exc
    if not frames:
        raise SnapshotError("keyframe gave no picture")
    frame = frames[-1]
    if frame.width > MAX_WIDTH:
        frame = frame.reformat(
            width=MAX_WIDTH, height=max(2, frame.height * MAX_WIDTH // frame.width // 2 * 2)
        )
    image = frame.to_ndarray(format="bgr24")
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SnapshotError("JPEG encoding failed")
    return buf.tobytes()


class SnapshotSource:
    """One camera's latest still, decoded from its relay's keyframes while someone asks for it."""

    def __init__(self, relay: PacketRelay, *, min_interval_s: float = MIN_INTERVAL_S, idle_s: float = IDLE_S):
        self.relay = relay
        self.min_interval_s = min_interval_s
        self.idle_s = idle_s
        self.latest: Snapshot | None = None
        self.decodes = 0  # pictures decoded (tests and the bench read it)
        self._wanted_at = 0.0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _want(self) -> None:
        self._wanted_at = time.monotonic()
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"snapshot:{self.relay.camera_id}"
            )

    async def get(self, *, newer_than: int = -1, timeout: float = 5.0) -> Snapshot:
        """A picture at most `min_interval_s` old and newer than seq `newer_than`; waits up to
        `timeout` for the next keyframe. Raises SnapshotError when none comes (camera offline)."""
        self._want()
        deadline = time.monotonic() + timeout
        while True:
            snap = self.latest
            if (
                snap is not None
                and snap.seq > newer_than
                and time.monotonic() - snap.taken_at <= self.min_interval_s
            ):
                return snap
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.relay.closed:
                raise SnapshotError("no picture from the camera")
            self._changed.clear()
            if not self.running:
                raise SnapshotError("no picture from the camera")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            self._want()  # a long wait still counts as watching

    async def _run(self) -> None:
        """Subscribe, decode a keyframe when the cached picture is stale, stop when unwatched."""
        try:
            sub = self.relay.subscribe(queue_packets=8)
        except RelayClosed:
            return
        try:
            while time.monotonic() - self._wanted_at < self.idle_s:
                packet = await self._next_keyframe(sub)
                if packet is None:
                    continue
                latest = self.latest
                if latest is not None and time.monotonic() - latest.taken_at < self.min_interval_s * 0.8:
                    continue  # still fresh: nobody needs another decode yet
                try:
                    jpeg = await asyncio.to_thread(decode_keyframe, packet)
                except SnapshotError as exc:
                    log.info("camera %s: snapshot failed: %s", self.relay.camera_id, exc)
                    continue
                self.decodes += 1
                seq = 0 if latest is None else latest.seq + 1
                self.latest = Snapshot(jpeg, time.monotonic(), seq)
                self._changed.set()
        except RelayClosed:
            pass
        except Exception:
            log.exception("camera %s: snapshot loop failed", self.relay.camera_id)
        finally:
            sub.close()
            self._changed.set()  # waiters see that the loop ended

    async def _next_keyframe(self, sub: RelaySubscription) -> MediaPacket | None:
        """The next keyframe, or None after a second without one (to re-check whether anyone watches)."""
        deadline = time.monotonic() + 1.0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                packet = await asyncio.wait_for(sub.get(), remaining)
            except TimeoutError:
                return None
            if packet.is_keyframe:
                return packet
        return None

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)


class Snapshots:
    """Every camera's `SnapshotSource`, made on first request from the camera's relay."""

    def __init__(self, relays: RelayHub, **kwargs: float) -> None:
        self._relays = relays
        self._kwargs = kwargs
        self._sources: dict[str, SnapshotSource] = {}

    def source(self, camera_id: str) -> SnapshotSource | None:
        relay = self._relays.get(camera_id)
        if relay is None:
            self._sources.pop(camera_id, None)
            return None
        src = self._sources.get(camera_id)
        if src is None or src.relay is not relay:  # the camera was removed and added again
            src = self._sources[camera_id] = SnapshotSource(relay, **self._kwargs)
        return src

    async def close(self) -> None:
        sources = list(self._sources.values())
        self._sources.clear()
        await asyncio.gather(*(s.stop() for s in sources), return_exceptions=True)
