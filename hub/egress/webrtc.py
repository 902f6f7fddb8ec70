"""Live media out over WebRTC, relayed without re-encoding, and the sessions that can be cut.

Data flow: camera source → `PacketRelay` → `RelayTrack` (one relay subscription per viewer) →
aiortc `RTCRtpSender`, which only packetizes (RFC 6184 FU-A/STAP-A) when `recv()` returns an
`av.Packet` instead of a decoded frame (MEDIA_NOTES). No decoder or encoder runs on the hub —
except for a camera with privacy masks (PROTOCOL §4.1): then an agency's session (and the owner's,
with `owner_views`) sends through `privacy.RedactingTrack`, which decodes and paints, and aiortc
encodes.

H.265 cameras are the exception (issue 16): WebRTC in the browsers the hub serves carries H.264, so
an H.265 camera's packets are decoded here and handed to aiortc as frames, which its own H.264
encoder compresses (and then PLI is honoured). That costs real CPU, so it is bounded: one such
session at a time on the whole hub (`TRANSCODE_SLOTS`, 503 `transcode_busy` beyond it), one decoder
thread, frames scaled down to at most `TRANSCODE_MAX` (aiortc's encoder is set for level 3.1).

Because nothing re-encodes (H.264), aiortc ignores the viewer's PLI keyframe requests; a viewer instead starts
at the relay's cached keyframe. Nothing checks that the packets match the negotiated codec either, so
the session forces H.264 with `setCodecPreferences`, in the order that negotiates H.264 with Chromium:
`addTransceiver(track, "sendonly")` → `setCodecPreferences` → `setRemoteDescription(offer)`.

Sound (PROTOCOL §2.4): a session built with `audio=True` (the owner's view of a camera whose sound is
recorded; an agency's only under `scope.audio: true`, decided in `hub/api/live.py`) and whose offer
receives Opus gets a `RelayAudioTrack`: the relay's audio packets decoded here (PyAV, a worker thread)
and encoded as Opus by aiortc — the camera's AAC cannot go into WebRTC as it is. It asks the same
`may_send` as the video before every packet and is stopped with it. Any other session has no audio
track at all, and its offer's audio m-line is answered `a=inactive`, so aiortc starts no audio sender.

Who may watch is decided elsewhere (`hub/api/live.py`: owner session, or agency signature + the
consent gate). This module enforces *for how long*, for agency sessions (PROTOCOL §2.4, §4):

- the track itself stops sending at the grant's `not_after` (checked per packet, so the last frame
  sent is the last one before the deadline);
- each session's watchdog wakes at least every `recheck_interval_s` (≤ 0.5 s) and at `not_after`,
  and calls the consent gate again; any refusal or error closes the session (fail closed), so a
  revoke or an owner key's revocation cuts the stream within 1 s even if nobody calls `cut()`;
- `LiveSessions.cut(request_id)` closes every session of a request at once (the revoke path).

Closing a session first stops its track — media stops at that instant — then closes the peer
connection (DTLS, ICE) within a bounded time. `LiveSession.close()` is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hub.egress import dtls, offers, privacy
from hub.egress.ice import rtc_configuration
from hub.ingest.audio import AudioParams
from hub.ingest.relay import PacketRelay, RelayClosed, RelaySubscription
from hub.ingest.source import MediaPacket, has_parameter_sets

log = logging.getLogger(__name__)

RTP_CLOCK = Fraction(1, 90_000)  # RFC 6184 §5.1: the H.264 RTP clock is 90 kHz
RECHECK_INTERVAL_S = 0.5
PC_CLOSE_TIMEOUT_S = 2.0
MAX_JUMP = 5 * 90_000  # a timestamp step beyond ±5 s is a discontinuity, not a frame interval
DEFAULT_STEP = 90_000 // 15
TRANSCODE_SLOTS = 1  # H.265 live sessions converted at once, hub-wide (a doorbell hub has two cores)
TRANSCODE_MAX = (1280, 720)  # the largest picture the conversion sends (H.264 level 3.1)
_transcoding: set[RelayTrack] = set()


def transcode_busy() -> bool:
    """True when another H.265 live session already holds the conversion slot."""
    return len(_transcoding) >= TRANSCODE_SLOTS


# A gate re-check: returns normally while sending is allowed, raises (ConsentError, or anything
# else — both close the session) once it is not.
GateCheck = Callable[[], Awaitable[object]]


class SessionKind(enum.StrEnum):
    AGENCY = "agency"  # gated: grant, not_after, periodic re-check
    OWNER = "owner"  # the owner's LAN view: reachable only behind the owner session guard


class LiveError(Exception):
    """A live session could not be set up; `code` becomes the JSON `error` of the API."""

    def __init__(self, code: str, detail: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.status = status


class RelayTrack(MediaStreamTrack):
    """A video track whose `recv()` returns the relay's encoded packets as `av.Packet`s.

    Timestamps are rebased to a 90 kHz clock starting near 0 and kept monotonic across source
    discontinuities (a camera reboot restarts its timestamps; the viewer should just see the next frame).
    `may_send` is asked before every packet; once it says no, the track ends.
    """

    kind = "video"

    def __init__(self, subscription: RelaySubscription, may_send: Callable[[], bool] | None = None) -> None:
        super().__init__()
        self._sub = subscription
        self._may_send = may_send
        self._offset: int | None = None
        self._last: int | None = None
        self.packets_sent = 0
        self.bytes_sent = 0
        self.last_sent_at: float | None = None  # wall clock of the last packet handed to aiortc
        self._decoder: Any = None  # H.265 only: the camera's video decoded here, re-encoded by aiortc

    async def recv(self) -> av.Packet | av.VideoFrame:  # type: ignore[override]
        while True:
            packet = await self._next_packet()
            if self._decoder is None:
                return packet
            frame = await asyncio.to_thread(self._decode, self._decoder, packet)
            if frame is not None:
                return frame

    @staticmethod
    def _decode(decoder: Any, packet: av.Packet) -> av.VideoFrame | None:
        """The newest picture of one H.265 packet (none while the decoder fills), scaled to fit."""
        try:
            frames = decoder.decode(packet)
        except av.error.FFmpegError as exc:  # a damaged packet: skip it, the next keyframe repairs
            log.debug("H.265 live decode: %s", exc)
            return None
        if not frames:
            return None
        frame = frames[-1]
        w, h = frame.width, frame.height
        scale = min(1.0, TRANSCODE_MAX[0] / w, TRANSCODE_MAX[1] / h)
        if scale < 1.0 or frame.format.name != "yuv420p":
            w, h = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
            frame = frame.reformat(width=w, height=h, format="yuv420p")
        frame.pts, frame.time_base = packet.pts, RTP_CLOCK
        return frame

    def take_transcode_slot(self) -> None:
        """Claim the hub's H.265 conversion for this track (LiveSessions.open, at the offer) and
        make its decoder; LiveError 503 when another track holds it."""
        if self not in _transcoding and transcode_busy():
            raise LiveError("transcode_busy", "another H.265 live view is being converted", status=503)
        _transcoding.add(self)
        self._decoder = av.CodecContext.create("hevc", "r")
        self._decoder.thread_count = 1

    async def _next_packet(self) -> av.Packet:
        pkt = await _next_allowed(self, self._sub, self._may_send)
        data = pkt.data
        params = pkt.params
        if params is not None and params.codec == "hevc" and self._decoder is None:
            try:
                self.take_transcode_slot()
            except LiveError:
                log.warning("H.265 live view refused: another one is being converted")
                self.stop()
                raise MediaStreamError from None
        if pkt.is_keyframe and params is not None and params.extradata:
            if not has_parameter_sets(data, params.codec):
                # Out-of-band SPS/PPS (RTSP sprop-parameter-sets): a WebRTC decoder needs them in-band.
                data = params.extradata + data
        out = av.Packet(data)
        out.pts = out.dts = self._timestamp(pkt)
        out.time_base = RTP_CLOCK
        self.packets_sent += 1
        self.bytes_sent += len(data)
        self.last_sent_at = time.time()
        return out

    def _timestamp(self, pkt: MediaPacket) -> int:
        t90 = int(pkt.pts * pkt.time_base / RTP_CLOCK)
        if self._offset is None or self._last is None:
            self._offset = -t90
        else:
            ts = t90 + self._offset
            # A flagged break, a jump, or time going backwards (a new source run): continue one frame on.
            if pkt.discontinuity or not (self._last < ts < self._last + MAX_JUMP):
                self._offset = self._last + DEFAULT_STEP - t90
        ts = max(0, t90 + self._offset)
        self._last = ts
        return ts

    def stop(self) -> None:
        _transcoding.discard(self)
        self._decoder = None
        self._sub.close()
        super().stop()


async def _next_allowed(
    track: MediaStreamTrack, sub: RelaySubscription, may_send: Callable[[], bool] | None
) -> MediaPacket:
    """The next camera packet for `track`; MediaStreamError (and the track stopped) once the track,
    the relay or the gate (`may_send`, asked before every packet of picture and sound alike) ends it."""
    if track.readyState != "live":
        raise MediaStreamError
    try:
        pkt = await sub.get()
    except RelayClosed:
        track.stop()
        raise MediaStreamError from None
    if track.readyState != "live" or (may_send is not None and not may_send()):
        track.stop()
        raise MediaStreamError
    return pkt


class RelayAudioTrack(MediaStreamTrack):
    """The camera's sound for one session: the relay's audio packets (AAC or Opus, as recorded;
    G.711 arrives as AAC, hub/ingest/audio.py) decoded here into `av.AudioFrame`s (s16, mono, the
    camera's rate), which aiortc resamples to 48 kHz and encodes as Opus (RFC 7587). Decoding runs in
    a worker thread. Exists only on a session allowed to send sound (PROTOCOL §2.4): `may_send` is the
    video track's check, asked before every packet, so sound stops with the picture."""

    kind = "audio"

    def __init__(self, subscription: RelaySubscription, may_send: Callable[[], bool]) -> None:
        super().__init__()
        self._sub = subscription
        self._may_send = may_send
        self._decoder: Any = None
        self._resampler: Any = None
        self._source: tuple[str, int, bytes] | None = None  # (codec, rate, extradata) decoded now
        self._pts = 0  # samples sent, at the camera's rate
        self._rate = 0
        self.packets_sent = 0  # camera packets decoded and handed to aiortc
        self.peak = 0  # the loudest sample sent (s16): a test tells sound from silence by it

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        while True:
            pkt = await _next_allowed(self, self._sub, self._may_send)
            audio = pkt.params.audio if pkt.params is not None else None
            if audio is None:
                continue
            frames = await asyncio.to_thread(self._decode, pkt.data, audio)
            if frames is None:
                continue
            self.packets_sent += 1
            return frames

    def _decode(self, data: bytes, audio: AudioParams) -> av.AudioFrame | None:
        """One camera packet → one s16 mono frame (None while the decoder fills, or on damage)."""
        source = (audio.codec, audio.sample_rate, audio.extradata)
        if source != self._source:
            # First packet, or the camera reconnected with other audio: a decoder for what it sends.
            decoder = av.CodecContext.create(audio.codec, "r")
            decoder.sample_rate = audio.sample_rate
            decoder.layout = "stereo" if audio.channels == 2 else "mono"
            if audio.extradata:
                decoder.extradata = audio.extradata  # AAC AudioSpecificConfig / OpusHead
            self._decoder, self._source, self._rate = decoder, source, audio.sample_rate
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=audio.sample_rate)
        try:
            decoded = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError as exc:  # a damaged packet: skip it
            log.debug("live audio decode: %s", exc)
            return None
        chunks = [c for f in decoded for c in self._resampler.resample(f)]
        if not chunks:
            return None
        samples = b"".join(bytes(c.planes[0])[: c.samples * 2] for c in chunks)
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples) // 2)
        frame.planes[0].update(samples + bytes(frame.planes[0].buffer_size - len(samples)))
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self._rate)
        self._pts += frame.samples
        if samples:
            self.peak = max(self.peak, max(abs(v) for v in memoryview(samples).cast("h")))
        return frame

    def stop(self) -> None:
        self._sub.close()
        super().stop()


@dataclass(frozen=True)
class Audience:
    """Who a session sends to: the owner, or one agency (its keyid) for one request."""

    kind: SessionKind
    recipient: str  # agency keyid, or the SHA-256 of the owner session id the view is bound to
    request_id: str | None = None
    grant_id: str | None = None  # the approval the agency session runs under


class LiveSession:
    """One viewer: an RTCPeerConnection sending one camera's relay, and its watchdog."""

    def __init__(
        self,
        *,
        camera_id: str,
        relay: PacketRelay,
        audience: Audience,
        not_after: float | None = None,
        recheck: GateCheck | None = None,
        recheck_interval_s: float = RECHECK_INTERVAL_S,
        on_close: Callable[[LiveSession], Awaitable[None]] | None = None,
        configuration: RTCConfiguration | None = None,
        masks: Callable[[], privacy.Masks] | None = None,
        audio: bool = False,
    ) -> None:
        if audience.kind is SessionKind.AGENCY and (not_after is None or recheck is None):
            # An agency stream without an end and a gate re-check would outlive a revoke.
            raise ValueError("agency sessions need not_after and a gate re-check")
        self.id = secrets.token_urlsafe(16)
        self.camera_id = camera_id
        self.audience = audience
        self.not_after = not_after
        # The same end on the monotonic clock: a wall clock set back must not extend a stream (§6).
        self._deadline_mono = None if not_after is None else time.monotonic() + (not_after - time.time())
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.close_reason: str | None = None
        self._recheck = recheck
        self._recheck_interval_s = min(recheck_interval_s, RECHECK_INTERVAL_S)
        self._on_close = on_close
        self._revoked = False
        self._closed = asyncio.Event()
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered = False  # on_close runs only for sessions that were set up (and so audited)
        self.track = RelayTrack(relay.subscribe(), may_send=self._may_send)  # RelayClosed if it is
        # The camera's sound (PROTOCOL §2.4): only when the caller says this audience may have it;
        # otherwise no audio track exists and the answer's audio m-line is inactive.
        self.audio_allowed = audio
        self.audio_track: RelayAudioTrack | None = None
        self._relay = relay
        # Privacy masks (PROTOCOL §4.1): a masked camera's picture is decoded, painted and re-encoded
        # by aiortc; otherwise the camera's packets are relayed as they are.
        self.masked = masks is not None and bool(masks())
        self.sender_track: MediaStreamTrack = (
            privacy.RedactingTrack(self.track, masks) if masks is not None and self.masked else self.track
        )
        # Through a relay (PROTOCOL §7.3) the configuration names the relay's TURN server and offers
        # only relayed candidates; otherwise no STUN/TURN at all (hub/egress/ice.py).
        self.pc = RTCPeerConnection(configuration or rtc_configuration())
        self.pc.on("connectionstatechange", self._on_state)
        # The relay closed (camera removed, hub stopping) or the deadline passed: end the session too.
        self.track.on("ended", lambda: self._schedule_close("camera stopped"))

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _remaining(self) -> float | None:
        """Seconds until `not_after` by whichever clock says less (None: no end)."""
        if self.not_after is None or self._deadline_mono is None:
            return None
        return min(self.not_after - time.time(), self._deadline_mono - time.monotonic())

    def _may_send(self) -> bool:
        if self._revoked:
            return False
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            self._revoked = True
            self._schedule_close("expired")
            return False
        return True

    def _schedule_close(self, reason: str) -> None:
        if not self._closing:
            task = asyncio.get_running_loop().create_task(self.close(reason), name=f"live-close-{self.id}")
            self._tasks.add(task)  # keep a reference until it is done (asyncio holds only weak ones)
            task.add_done_callback(self._tasks.discard)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close(f"peer {self.pc.connectionState}")

    async def accept(self, offer_sdp: str) -> str:
        """Answer a WHEP offer; returns the SDP answer (with every ICE candidate in it)."""
        if offers.video_codecs(offer_sdp) and not offers.has_h264(offer_sdp):
            await self.close("unsupported offer")
            raise LiveError("unsupported_offer", offers.unsupported(offer_sdp, "sends"))
        try:
            transceiver = self.pc.addTransceiver(self.sender_track, direction="sendonly")
            h264 = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/h264", "video/rtx")
            ]
            transceiver.setCodecPreferences(h264)
            if self.audio_allowed and offers.receives_opus(offer_sdp):
                self.audio_track = RelayAudioTrack(
                    self._relay.subscribe(audio=True, video=False), self._may_send
                )
                sound = self.pc.addTransceiver(self.audio_track, direction="sendonly")
                sound.setCodecPreferences(
                    [
                        c
                        for c in RTCRtpSender.getCapabilities("audio").codecs
                        if c.mimeType.lower() == "audio/opus"
                    ]
                )
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for other in self.pc.getTransceivers():
                if other.kind == "audio" and other.sender.track is None:
                    # No sound for this audience (or none recorded): the answer says a=inactive and
                    # aiortc starts no sender on it, so not one audio packet leaves.
                    other.direction = "inactive"
            dtls.answer_as_server(self.pc)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except OperationError as exc:
            # aiortc shares no codec with the offer (H.264 High only): say what the hub sends.
            await self.close("unsupported offer")
            raise LiveError("unsupported_offer", offers.unsupported(offer_sdp, "sends")) from exc
        except (ValueError, RuntimeError, AttributeError) as exc:
            # aiortc raises ValueError/InvalidStateError (a RuntimeError) on offers it cannot answer,
            # e.g. no video m-line or no H.264 in it.
            await self.close("bad offer")
            raise LiveError("bad_offer", str(exc) or type(exc).__name__) from exc
        except BaseException:
            await self.close("setup failed")
            raise
        if transceiver.mid is None or transceiver.currentDirection not in ("sendonly", "sendrecv"):
            await self.close("no video")
            raise LiveError("bad_offer", "the offer has no video m-line this hub can send to")
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name=f"live-watch-{self.id}")
        self._answered = True
        return self.pc.localDescription.sdp

    async def _watch(self) -> None:
        try:
            while not self._closed.is_set():
                timeout = self._recheck_interval_s
                remaining = self._remaining()
                if remaining is not None:
                    timeout = min(timeout, max(0.0, remaining))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), timeout)
                    return
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    self._revoked = True
                    await self.close("expired")
                    return
                if not await self.recheck():
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live session %s: watchdog failed; closing", self.id)
            self._revoked = True
            await self.close("watchdog error")

    async def recheck(self) -> bool:
        """Ask the gate again now; on any refusal or error close the session. True while allowed."""
        if self._closing:
            return False
        if self._recheck is None:
            return True
        try:
            await self._recheck()
        except Exception as exc:  # fail closed: a gate error is a refusal
            self._revoked = True
            code = getattr(exc, "code", type(exc).__name__)
            await self.close(f"refused: {code}")
            return False
        return True

    async def close(self, reason: str = "closed") -> None:
        """Stop media now, then tear the peer connection down; idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._revoked = True
        self.close_reason = reason
        self.ended_at = time.time()
        self.track.stop()  # media stops here: the sender's next recv() ends
        self.sender_track.stop()
        if self.audio_track is not None:
            self.audio_track.stop()
        try:
            await asyncio.wait_for(self.pc.close(), PC_CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("live session %s: peer connection close timed out", self.id)
        except Exception:
            log.exception("live session %s: error closing the peer connection", self.id)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        self._closed.set()
        log.info(
            "live session %s (%s %s, camera %s) closed: %s",
            self.id,
            self.audience.kind,
            self.audience.request_id or "-",
            self.camera_id,
            reason,
        )
        if self._on_close is not None and self._answered:
            try:
                await self._on_close(self)
            except Exception:
                log.exception("live session %s: on_close hook failed", self.id)


class LiveSessions:
    """The registry of open live sessions, so that any of them can be found and cut."""

    def __init__(self, *, max_sessions: int = 16, recheck_interval_s: float = RECHECK_INTERVAL_S) -> None:
        self.max_sessions = max_sessions
        self.recheck_interval_s = recheck_interval_s
        self._sessions: dict[str, LiveSession] = {}
        self._closing = False

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def sessions(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def for_request(self, request_id: str) -> list[LiveSession]:
        return [s for s in self._sessions.values() if s.audience.request_id == request_id]

    async def open(
        self,
        *,
        camera_id: str,
        relay: PacketRelay,
        offer_sdp: str,
        audience: Audience,
        not_after: float | None = None,
        recheck: GateCheck | None = None,
        on_close: Callable[[LiveSession], Awaitable[None]] | None = None,
        recheck_interval_s: float | None = None,
        configuration: RTCConfiguration | None = None,
        masks: Callable[[], privacy.Masks] | None = None,
        audio: bool = False,
    ) -> tuple[LiveSession, str]:
        """Create a session, answer the offer, register it. Returns (session, SDP answer).

        Agencies together may hold all slots but one: the owner can always open a view (issue 12:
        an agency with a live grant could otherwise take every slot and blind the owner)."""
        if self._closing:
            raise LiveError("shutting_down", "the hub is stopping", status=503)
        if not_after is not None and time.time() >= not_after:
            raise LiveError("expired", "the grant has ended", status=403)
        limit = self.max_sessions - (1 if audience.kind is SessionKind.AGENCY else 0)
        if len(self._sessions) >= limit:
            raise LiveError("too_many_sessions", f"at most {limit} live viewers of this kind", status=503)
        if relay.params is not None and relay.params.codec == "hevc" and transcode_busy():
            raise LiveError(
                "transcode_busy",
                "this camera sends H.265, which is converted for the browser one view at a time;"
                " another view is open",
                status=503,
            )

        async def unregister(session: LiveSession) -> None:
            self._sessions.pop(session.id, None)
            if on_close is not None:
                await on_close(session)

        try:
            session = LiveSession(
                camera_id=camera_id,
                relay=relay,
                audience=audience,
                not_after=not_after,
                recheck=recheck,
                recheck_interval_s=recheck_interval_s or self.recheck_interval_s,
                on_close=unregister,
                configuration=configuration,
                masks=masks,
                audio=audio,
            )
        except RelayClosed:
            raise LiveError("camera_unavailable", "the camera is not streaming", status=503) from None
        if relay.params is not None and relay.params.codec == "hevc":
            # Taken now, with no await since the check above: a second offer arriving before this
            # view's first picture must hear 503, not get a 201 and then no video.
            session.track.take_transcode_slot()
        self._sessions[session.id] = session
        try:
            answer = await session.accept(offer_sdp)
        except BaseException:
            self._sessions.pop(session.id, None)
            raise
        return session, answer

    async def cut(self, request_id: str, reason: str = "revoked") -> int:
        """Close every session of `request_id` now; returns how many were open."""
        sessions = self.for_request(request_id)
        for session in sessions:
            session._revoked = True  # stop media before the awaits below yield to the sender
        await asyncio.gather(*(s.close(reason) for s in sessions))
        return len(sessions)

    async def cut_recipient(self, recipient: str, reason: str = "revoked") -> int:
        """Close every agency session sent to `recipient` (an agency removed)."""
        sessions = [
            s
            for s in self._sessions.values()
            if s.audience.kind is SessionKind.AGENCY and s.audience.recipient == recipient
        ]
        for session in sessions:
            session._revoked = True
        await asyncio.gather(*(s.close(reason) for s in sessions))
        return len(sessions)

    async def recheck_all(self) -> int:
        """Re-run every gated session's check now (after a revoke); returns how many were closed."""
        sessions = [s for s in self._sessions.values() if s.audience.kind is SessionKind.AGENCY]
        results = await asyncio.gather(*(s.recheck() for s in sessions))
        return sum(not ok for ok in results)

    async def masks_changed(self, camera_id: str, masked: Callable[[LiveSession], bool]) -> int:
        """End the sessions of `camera_id` that send unmasked while `masked(session)` says they must
        not (masks added in Settings): their viewers reconnect and get the masked stream. Sessions
        that paint keep running; they read the masks per frame. Returns how many were ended."""
        sessions = [
            s for s in self._sessions.values() if s.camera_id == camera_id and not s.masked and masked(s)
        ]
        for session in sessions:
            session._revoked = True
        await asyncio.gather(*(s.close("privacy masks changed") for s in sessions))
        return len(sessions)

    async def close_all(self, reason: str = "hub stopping") -> None:
        """Close every session and refuse new ones (daemon shutdown)."""
        self._closing = True
        await asyncio.gather(*(s.close(reason) for s in list(self._sessions.values())))
