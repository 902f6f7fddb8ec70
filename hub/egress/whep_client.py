"""A WHEP viewer (draft-ietf-wish-whep) with aiortc: offer → 201 answer + Location → DELETE.

Used by the tests and `bench/live_bench.py` to watch a hub stream the way a browser or an agency
would: a receive-only peer connection, no STUN/TURN servers, non-trickle ICE (every candidate is in
the offer). Frames are decoded by aiortc (PyAV) in the viewer, never on the hub.

`sign` lets a caller add headers to each request (the agency's RFC 9421 signature; the owner's
cookie and CSRF token), so this class never needs to know how a route is guarded.

With `encoded=True` the viewer does not decode either: its receiver hands over the H.264 access units
as sent (`hub.egress.passthrough`), and `record_mp4()` stream-copies N seconds into an MP4 — what an
agency's "save the livestream" needs, with no re-encoding anywhere.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from camhub_protocol import whep
from camhub_protocol.errors import JWSError
from hub.egress import passthrough
from hub.egress.ice import rtc_configuration

# (method, url, body, content type) -> extra headers
Signer = Callable[[str, str, bytes, str | None], Mapping[str, str] | Awaitable[Mapping[str, str]]]


class WhepError(Exception):
    """The WHEP endpoint refused the offer; `status` and `body` are the server's answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"WHEP endpoint answered {status}: {body[:200]}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    frame: av.VideoFrame | av.Packet  # a Packet (Annex B access unit, 90 kHz pts) when encoded=True
    received_at: float  # wall clock when the frame reached the viewer


class WhepViewer:
    """One receive-only WebRTC session; decoded frames land in `frames` (bounded, oldest dropped)."""

    def __init__(
        self,
        max_frames: int = 64,
        *,
        encoded: bool = False,
        configuration: RTCConfiguration | None = None,
        audio: bool = False,
    ) -> None:
        self.pc = RTCPeerConnection(configuration or rtc_configuration())
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        # With `audio`, the offer also asks for sound (Opus); what arrives is decoded by aiortc into
        # `audio_frames` (bounded, oldest dropped) and counted in `audio_frame_count`.
        self.audio_transceiver = self.pc.addTransceiver("audio", direction="recvonly") if audio else None
        self.audio_frames: collections.deque[av.AudioFrame] = collections.deque(maxlen=max_frames * 4)
        self.audio_frame_count = 0
        self.last_audio_at: float | None = None  # wall clock of the newest decoded audio frame
        self._audio_reader: asyncio.Task[None] | None = None
        self.encoded = encoded
        if encoded:
            passthrough.receive_encoded(transceiver.receiver)
        self.frames: asyncio.Queue[ReceivedFrame] = asyncio.Queue(max_frames)
        self.frame_count = 0
        self.dropped = 0  # oldest frames dropped because nobody consumed `frames` in time
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.ended = asyncio.Event()  # the remote track ended (hub closed the session or we stopped)
        self._progress = asyncio.Event()  # set on every frame and at the end
        self.resource_url: str | None = None
        self.on_frame: Callable[[ReceivedFrame], None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopped = False
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read(track), name="whep-viewer")
        elif track.kind == "audio" and self._audio_reader is None:
            self._audio_reader = asyncio.get_running_loop().create_task(
                self._read_audio(track), name="whep-viewer-audio"
            )

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.audio_frame_count += 1
                self.last_audio_at = time.time()
                self.audio_frames.append(frame)  # type: ignore[arg-type]

    async def audio_packets_received(self) -> int:
        """RTP packets that reached this viewer's audio receiver (0 without an audio m-line)."""
        if self.audio_transceiver is None:
            return 0
        stats = await self.audio_transceiver.receiver.getStats()
        return sum(getattr(s, "packetsReceived", 0) for s in stats.values() if s.type == "inbound-rtp")

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.time()
                self.frame_count += 1
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.last_frame_at = now
                item = ReceivedFrame(frame, now)  # type: ignore[arg-type]
                if self.on_frame is not None:
                    self.on_frame(item)
                if self.frames.full():
                    self.frames.get_nowait()
                    self.dropped += 1
                self.frames.put_nowait(item)
                self._progress.set()
        except MediaStreamError:
            pass
        finally:
            self.ended.set()
            self._progress.set()

    async def offer(self) -> str:
        """The SDP offer, with every ICE candidate (aiortc gathers before returning)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def connect(
        self,
        url: str,
        http: aiohttp.ClientSession,
        sign: Signer | None = None,
        hub_jwk: dict[str, Any] | None = None,
    ) -> None:
        """POST the offer to a WHEP endpoint, apply the answer; raises WhepError on a non-201.
        With `hub_jwk`, the answer must carry the hub's signature over this offer and answer
        (camhub_protocol/whep.py), else WhepError 403 and the answer is never applied."""
        body = (await self.offer()).encode()
        headers = {"Content-Type": "application/sdp"}
        headers.update(await _headers(sign, "POST", url, body, "application/sdp"))
        async with http.post(url, data=body, headers=headers) as resp:
            text = await resp.text()
            if resp.status != 201:
                raise WhepError(resp.status, text)
            location = resp.headers.get("Location")
            if not location:
                raise WhepError(resp.status, "201 without a Location header")
            self.resource_url = urljoin(str(resp.url), location)
            if hub_jwk is not None:
                try:
                    whep.verify_answer(resp.headers.get(whep.HEADER), hub_jwk, body, await resp.read())
                except JWSError as exc:
                    raise WhepError(403, f"the answer is not the hub's: {exc.code}") from exc
        await self.accept(text)

    async def wait_frames(self, count: int, timeout: float) -> None:
        """Return once `count` frames were decoded in total; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while self.frame_count < count:
                if self.ended.is_set():
                    raise MediaStreamError(f"stream ended after {self.frame_count} frames")
                self._progress.clear()
                await self._progress.wait()

    async def record_mp4(self, path: Path, seconds: float, timeout: float) -> int:
        """Stream-copy `seconds` of media, from the next keyframe, into an MP4 at `path` (needs
        `encoded=True`). Ends early, keeping what it has, if the stream ends. Returns the frame count.

        Consumes `frames`; the muxer runs in a worker thread (file I/O never blocks the loop).
        """
        if not self.encoded:
            raise RuntimeError("record_mp4 needs WhepViewer(encoded=True)")
        writer: _Mp4Writer | None = None
        first_pts = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    item = await self._next_frame()
                    if item is None:
                        break
                    assert isinstance(item.frame, av.Packet)
                    data, pts = bytes(item.frame), item.frame.pts or 0
                    keyframe = passthrough.is_idr(data)
                    if writer is None:
                        if not keyframe:
                            continue
                        width, height = await asyncio.to_thread(passthrough.probe_size, data)
                        writer = await asyncio.to_thread(_Mp4Writer, path, width, height)
                        first_pts = pts
                    if (pts - first_pts) * passthrough.RTP_CLOCK >= seconds:
                        break
                    await asyncio.to_thread(writer.write, data, pts - first_pts, keyframe)
        finally:
            if writer is not None:
                await asyncio.to_thread(writer.close)
        return 0 if writer is None else writer.count

    async def _next_frame(self) -> ReceivedFrame | None:
        """The next queued frame, or None once the stream ended and the queue is empty."""
        while self.frames.empty():
            if self.ended.is_set():
                return None
            self._progress.clear()
            await self._progress.wait()
        return self.frames.get_nowait()

    async def delete(self, http: aiohttp.ClientSession, sign: Signer | None = None) -> int:
        """DELETE the session resource; returns the HTTP status."""
        if self.resource_url is None:
            raise RuntimeError("not connected")
        headers = dict(await _headers(sign, "DELETE", self.resource_url, b"", None))
        async with http.delete(self.resource_url, headers=headers) as resp:
            return resp.status

    async def close(self) -> None:
        """Close the peer connection; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.pc.close()
        for reader in (self._reader, self._audio_reader):
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        self.ended.set()
        self._progress.set()


async def save_livestream(
    url: str,
    out: Path,
    seconds: float,
    *,
    sign: Signer | None = None,
    timeout: float | None = None,
    configuration: RTCConfiguration | None = None,
    hub_jwk: dict[str, Any] | None = None,
) -> int:
    """Watch a WHEP URL and stream-copy `seconds` of it into the MP4 `out`; returns the frame count.

    The whole of an agency's "save the livestream" (`camhub-agency live`): POST the offer (signed by
    `sign`), receive without decoding, write, then DELETE the session. Raises WhepError if refused.
    A stream the hub ends early (grant expired or revoked) leaves a shorter, still playable file.
    """
    viewer = WhepViewer(max_frames=1024, encoded=True, configuration=configuration)
    async with aiohttp.ClientSession() as http:
        try:
            await viewer.connect(url, http, sign, hub_jwk)
            count = await viewer.record_mp4(out, seconds, timeout if timeout is not None else seconds + 30)
            if not viewer.ended.is_set():
                with contextlib.suppress(aiohttp.ClientError):
                    await viewer.delete(http, sign)
            return count
        finally:
            await viewer.close()


class _Mp4Writer:
    """Stream copy of Annex B H.264 access units into an MP4 (no encoder: `add_mux_stream`).

    Each sample is written when the next arrives, so it gets its real duration: a last sample without
    one would fall outside the MP4 edit list and be discarded by players.
    """

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_mux_stream("h264", width=width, height=height)
        self.stream.time_base = passthrough.RTP_CLOCK
        self._held: tuple[bytes, int, bool] | None = None
        self._step = 0
        self.count = 0

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        if self._held is not None:
            held_data, held_pts, held_key = self._held
            self._step = max(1, pts - held_pts)
            self._mux(held_data, held_pts, held_key, self._step)
        self._held = (data, pts, keyframe)

    def _mux(self, data: bytes, pts: int, keyframe: bool, duration: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.time_base = passthrough.RTP_CLOCK
        packet.is_keyframe = keyframe
        packet.stream = self.stream
        self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        if self._held is not None:
            self._mux(*self._held, self._step or 6000)
            self._held = None
        self.container.close()


async def _headers(
    sign: Signer | None, method: str, url: str, body: bytes, ctype: str | None
) -> Mapping[str, str]:
    if sign is None:
        return {}
    result = sign(method, url, body, ctype)
    if isinstance(result, Awaitable):
        return await result
    return result
