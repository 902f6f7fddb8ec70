"""WHIP ingest (RFC 9725): cameras that push WebRTC, recorded without re-encoding.

    POST   /api/v1/cameras/<id>/whip              Authorization: Bearer <whip_token>, application/sdp
           → 201 application/sdp answer, Location: /api/v1/cameras/<id>/whip/<session>   (§4.2)
    DELETE /api/v1/cameras/<id>/whip/<session>    same bearer token → 200, the session ends  (§4.3)

A camera is WHIP when its config says `url = "whip"`; its token is `whip_token` (compared in constant
time). Unknown camera, or one that pulls over RTSP: 404. Missing or wrong token: 401 with
`WWW-Authenticate: Bearer` (RFC 6750 §3). A new POST for a camera that is already publishing replaces
the old session (a rebooted camera never sent its DELETE). No trickle ICE: PATCH gets 405 from the
router, which RFC 9725 §4.3.1 allows; the answer carries every candidate.

**Receiving without decoding.** aiortc has no public API for encoded frames; `hub.egress.passthrough`
routes the frames of the WHIP session's video receiver — and only that receiver — around aiortc's
decoder, so the session gets the camera's access units byte for byte (pinned aiortc range, tested).
If that hook is unavailable the endpoint answers 503 rather than silently re-encoding.

The received stream is exposed as a `WhipSource` (`hub.ingest.source.PacketSource`), yielding the
same `MediaPacket`s as the RTSP source, so the recorder and the live relay cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator

import av
import av.error
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hub.config import CameraConfig, Config
from hub.egress import dtls, ice, offers, passthrough
from hub.egress.ice import rtc_configuration
from hub.egress.passthrough import RTP_CLOCK
from hub.ingest.source import (
    CodecParams,
    MediaPacket,
    PacketSource,
    SourceEnded,
    SourceError,
    SourceOpenError,
    SourceStalled,
    TimestampFixer,
    nal_units,
)
from hub.services import SERVICES

log = logging.getLogger(__name__)

QUEUE_PACKETS = 256
NAL_SPS, NAL_PPS = 7, 8  # ITU-T H.264 Table 7-1


class WhipUnavailable(RuntimeError):
    """This aiortc cannot hand out encoded frames; WHIP ingest is refused rather than re-encoding."""


# --- one publishing camera ----------------------------------------------------------------------


class WhipSession:
    """One RFC 9725 session: a receive-only peer connection and its packets, normalised."""

    def __init__(self, camera_id: str, queue_packets: int = QUEUE_PACKETS) -> None:
        self.id = secrets.token_urlsafe(16)
        self.camera_id = camera_id
        self.pc = RTCPeerConnection(rtc_configuration())
        self.started_at = time.time()
        self.close_reason: str | None = None
        self.packets_received = 0
        self.packets_dropped = 0  # no consumer kept up: dropped to the next keyframe
        self._queue: asyncio.Queue[MediaPacket | None] = asyncio.Queue(queue_packets)
        self._fixer = TimestampFixer(RTP_CLOCK)
        self._params: CodecParams | None = None
        self._param_sets: tuple[bytes, ...] = ()
        self._need_keyframe = True
        self._next_discontinuity = False
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._closing = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def accept(self, offer_sdp: str) -> str:
        """Answer the camera's offer: receive H.264 video only; returns the SDP answer."""
        try:
            passthrough.install()
        except passthrough.PassthroughUnavailable as exc:
            await self.close("no pass-through")
            raise WhipUnavailable(str(exc)) from exc
        if offers.video_codecs(offer_sdp) and not offers.has_h264(offer_sdp):
            await self.close("unsupported offer")
            raise WhipOfferError(offers.unsupported(offer_sdp, "receives"), code="unsupported_offer")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            video = None
            h264 = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/h264", "video/rtx")
            ]
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video" and video is None:
                    video = transceiver
                    transceiver.direction = "recvonly"
                    transceiver.setCodecPreferences(h264)
                    # Registered before any frame can arrive (receive() runs after DTLS connects).
                    passthrough.receive_encoded(transceiver.receiver)
                else:
                    # Audio or a second video: not recorded, and never decoded into an unread queue.
                    transceiver.direction = "inactive"
            if video is None:
                raise ValueError("the offer has no video m-line")
            dtls.answer_as_server(self.pc)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            if video.currentDirection != "recvonly":
                raise ValueError("the offer does not send video")
        except OperationError as exc:
            # aiortc found no codec it shares with the offer (e.g. H.264 High only).
            await self.close("unsupported offer")
            raise WhipOfferError(offers.unsupported(offer_sdp, "receives"), code="unsupported_offer") from exc
        except (ValueError, RuntimeError, AttributeError) as exc:
            await self.close("bad offer")
            raise WhipOfferError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            await self.close("setup failed")
            raise
        return self.pc.localDescription.sdp

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(track), name=f"whip-{self.camera_id}-{self.id[:6]}"
            )

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close(f"peer {self.pc.connectionState}")

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                item = await track.recv()
                if not passthrough.is_encoded(item):
                    raise SourceError(f"{self.camera_id}: WHIP receiver decoded instead of passing through")
                packet = await self._normalise(bytes(item), item.pts)
                if packet is not None:
                    self._offer(packet)
        except MediaStreamError:
            pass
        except Exception:
            log.exception("%s: WHIP reader failed", self.camera_id)
        finally:
            self._end_queue()

    async def _normalise(self, data: bytes, pts: int | None) -> MediaPacket | None:
        nals = nal_units(data)
        types = {nal[0] & 0x1F for nal in nals}
        keyframe = passthrough.NAL_IDR in types
        if self._need_keyframe and not keyframe:
            return None
        if keyframe:
            sets = tuple(n for n in nals if n[0] & 0x1F in (NAL_SPS, NAL_PPS))
            if sets and sets != self._param_sets:
                try:
                    width, height = await asyncio.to_thread(passthrough.probe_size, data)
                except (ValueError, av.error.FFmpegError) as exc:
                    log.warning("%s: undecodable keyframe from the publisher: %s", self.camera_id, exc)
                    return None
                extradata = b"".join(b"\x00\x00\x00\x01" + n for n in sets)
                if self._params is not None:
                    log.info("%s: WHIP stream parameters changed to %dx%d", self.camera_id, width, height)
                self._params = CodecParams("h264", width, height, RTP_CLOCK, extradata)
                self._param_sets = sets
            if self._params is None:
                return None  # no SPS/PPS yet: nothing before it can be recorded
            self._need_keyframe = False
        pts_, dts, discontinuity = self._fixer.fix(pts, pts, 0)
        discontinuity = discontinuity or self._next_discontinuity
        self._next_discontinuity = False
        self.packets_received += 1
        return MediaPacket(data, pts_, dts, RTP_CLOCK, keyframe, time.time(), 0, discontinuity, self._params)

    def _offer(self, packet: MediaPacket) -> None:
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            # The consumer (recorder) is behind by a whole queue: drop to the next keyframe and flag the
            # break, so the recorder records a gap instead of an undecodable GOP.
            while not self._queue.empty():
                self._queue.get_nowait()
                self.packets_dropped += 1
            self.packets_dropped += 1
            self._need_keyframe = True
            self._next_discontinuity = True

    def _end_queue(self) -> None:
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def get(self, timeout: float) -> MediaPacket | None:
        """The next packet, None at the end of the session; TimeoutError if none within `timeout`."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)  # later calls see the end too
        return item

    async def close(self, reason: str = "closed") -> None:
        """End the session; idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        try:
            await asyncio.wait_for(self.pc.close(), 2.0)
        except Exception:
            log.exception("%s: error closing WHIP peer connection", self.camera_id)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._end_queue()
        self._closed.set()
        log.info("%s: WHIP session %s ended: %s", self.camera_id, self.id, reason)


class WhipOfferError(ValueError):
    """The publisher's SDP offer cannot be answered: `code` is `bad_offer` (malformed, no video) or
    `unsupported_offer` (no H.264 the hub can take: the message names what it takes)."""

    def __init__(self, detail: str, code: str = "bad_offer") -> None:
        super().__init__(detail)
        self.code = code


class WhipCamera:
    """The current publisher of one WHIP camera, and a signal for whoever waits for one."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.session: WhipSession | None = None
        self.changed = asyncio.Event()

    def check_token(self, presented: str | None) -> bool:
        expected = self.config.whip_token
        if presented is None or not expected:
            return False
        return hmac.compare_digest(presented.encode(), expected.encode())


class WhipIngest:
    """Every WHIP camera's endpoint state; the HTTP handlers and the `WhipSource`s meet here."""

    def __init__(self, config: Config) -> None:
        self.cameras = {c.id: WhipCamera(c) for c in config.cameras if c.whip}
        self._closing = False

    def camera(self, camera_id: str) -> WhipCamera | None:
        return self.cameras.get(camera_id)

    def source(self, camera_id: str, **kwargs: float) -> WhipSource:
        """A `PacketSource` for a configured WHIP camera (KeyError if it is not one)."""
        return WhipSource(self.cameras[camera_id], **kwargs)

    async def publish(self, camera_id: str, offer_sdp: str) -> tuple[WhipSession, str]:
        cam = self.cameras[camera_id]
        if self._closing:
            raise WhipUnavailable("the hub is stopping")
        session = WhipSession(camera_id)
        answer = await session.accept(offer_sdp)
        previous, cam.session = cam.session, session
        cam.changed.set()
        cam.changed = asyncio.Event()
        if previous is not None:
            await previous.close("replaced by a new publish")
        return session, answer

    async def end(self, camera_id: str, session_id: str) -> bool:
        cam = self.cameras.get(camera_id)
        session = cam.session if cam is not None else None
        if cam is None or session is None or session.id != session_id or session.closed:
            return False
        cam.session = None
        await session.close("publisher sent DELETE")
        return True

    async def close(self) -> None:
        """End every session (daemon shutdown)."""
        self._closing = True
        for cam in self.cameras.values():
            if cam.session is not None:
                await cam.session.close("hub stopping")
            cam.changed.set()


class WhipSource(PacketSource):
    """A WHIP camera as a packet source: waits for the camera to publish, yields its packets.

    `open()` waits up to `open_timeout_s` for a publishing session and its first keyframe. The source
    follows one session: when that session ends (DELETE, peer gone, replaced) `packets()` raises
    SourceEnded, and the camera's supervisor opens a new source, which picks up the next publish.
    """

    def __init__(
        self, camera: WhipCamera, *, open_timeout_s: float = 30.0, read_timeout_s: float = 5.0
    ) -> None:
        self.camera_id = camera.config.id
        self._camera = camera
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._session: WhipSession | None = None
        self._first: MediaPacket | None = None
        self._params: CodecParams | None = None
        self._closed = asyncio.Event()

    @property
    def params(self) -> CodecParams:
        if self._params is None:
            raise SourceError(f"{self.camera_id}: source not open")
        return self._params

    @property
    def session(self) -> WhipSession | None:
        return self._session

    async def open(self) -> CodecParams:
        deadline = time.monotonic() + self._open_timeout_s
        try:
            while True:
                session = self._camera.session
                if session is not None and not session.closed:
                    break
                changed = self._camera.changed
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    raise SourceOpenError(
                        f"{self.camera_id}: no WHIP publisher within {self._open_timeout_s} s"
                    )
                waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._closed.wait())]
                try:
                    await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
            self._session = session
            first = await session.get(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise SourceOpenError(f"{self.camera_id}: WHIP publisher sent no keyframe in time") from None
        if first is None:
            raise SourceOpenError(f"{self.camera_id}: WHIP session ended before its first keyframe")
        assert first.params is not None
        self._first = first
        self._params = first.params
        return first.params

    async def packets(self) -> AsyncIterator[MediaPacket]:
        session = self._session
        if session is None:
            raise SourceError(f"{self.camera_id}: source not open")
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while not self._closed.is_set():
            try:
                packet = await session.get(self._read_timeout_s)
            except TimeoutError:
                if self._closed.is_set():
                    return
                raise SourceStalled(f"{self.camera_id}: no WHIP media for {self._read_timeout_s} s") from None
            if packet is None:
                if self._closed.is_set():
                    return
                raise SourceEnded(f"{self.camera_id}: WHIP session ended ({session.close_reason})")
            if packet.params is not None:
                self._params = packet.params
            yield packet

    async def close(self) -> None:
        # The publisher keeps its session (only DELETE or the peer ends it); we just stop reading.
        self._closed.set()


# --- HTTP (RFC 9725) ------------------------------------------------------------------------------

WHIP_INGEST = web.AppKey("whip_ingest", WhipIngest)


def _error(status: int, code: str, detail: str = "", headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def _authorized(request: web.Request) -> tuple[WhipCamera | None, web.Response | None]:
    ingest = request.app[WHIP_INGEST]
    cam = ingest.camera(request.match_info["camera_id"])
    if cam is None:
        return None, _error(404, "not_found", "no such WHIP camera")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not cam.check_token(token.strip() or None):
        # RFC 6750 §3: a 401 names the scheme.
        return None, _error(401, "unauthorized", "bearer token required", {"WWW-Authenticate": "Bearer"})
    return cam, None


async def post_whip(request: web.Request) -> web.StreamResponse:
    """RFC 9725 §4.2: SDP offer in, 201 + answer + Location out."""
    cam, refusal = _authorized(request)
    if refusal is not None:
        return refusal
    assert cam is not None
    if request.content_type != "application/sdp":
        return _error(415, "unsupported_media_type", "Content-Type must be application/sdp")
    offer = await request.text()
    try:
        session, answer = await request.app[WHIP_INGEST].publish(cam.config.id, offer)
    except WhipOfferError as exc:
        log.info("%s: WHIP offer refused: %s", cam.config.id, exc)
        return _error(400, exc.code, str(exc))
    except WhipUnavailable as exc:
        log.error("%s: WHIP refused: %s", cam.config.id, exc)
        return _error(503, "whip_unavailable", str(exc))
    except Exception:
        # A publisher's offer must never make a 500 (issue 16); the bug is logged with its traceback.
        log.exception("%s: WHIP offer could not be answered", cam.config.id)
        return _error(400, "bad_offer", "the hub could not answer this offer")
    location = f"{request.path.rstrip('/')}/{session.id}"
    log.info("%s: WHIP publish started, session %s", cam.config.id, session.id)
    return web.Response(
        status=201, body=answer.encode(), content_type="application/sdp", headers={"Location": location}
    )


async def delete_whip(request: web.Request) -> web.StreamResponse:
    """RFC 9725 §4.3: DELETE the session resource ends the session."""
    cam, refusal = _authorized(request)
    if refusal is not None:
        return refusal
    assert cam is not None
    if not await request.app[WHIP_INGEST].end(cam.config.id, request.match_info["session_id"]):
        return _error(404, "not_found", "no such WHIP session")
    return web.Response(status=200)


def setup(app: web.Application, ingest: WhipIngest) -> None:
    """Mount the WHIP endpoints. Auth is the per-camera bearer token (not an owner session).

    In a hub app (services present) ICE host candidates are pinned on startup, as `hub.api.live` does.
    """
    app[WHIP_INGEST] = ingest

    async def pin_ice(app: web.Application) -> None:
        services = app.get(SERVICES)
        if services is not None:
            ice.use_host_addresses(ice.addresses_for(services.config.hub))

    app.on_startup.append(pin_ice)
    app.router.add_post("/api/v1/cameras/{camera_id}/whip", post_whip)
    app.router.add_delete("/api/v1/cameras/{camera_id}/whip/{session_id}", delete_whip)
