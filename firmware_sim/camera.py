"""A simulated doorbell camera: frame clock, scripted events and faults.

:class:`SimCamera` is usable alone (``async with SimCamera(...)`` starts its own RTSP server
and control API) or as one camera of a :class:`firmware_sim.fleet.SimFleet`, which shares one
RTSP server and one control server between cameras.

What is replayed: each stream cycles through pre-encoded clips (:mod:`firmware_sim.encoder`)
— an idle loop of ``loop_s`` seconds, and a visitor clip of ``visitor_s`` seconds switched in
at the next GOP boundary after :meth:`SimCamera.visitor`. The pixels (including the pixel
stamp and the clock overlay) repeat with each replay; every sent frame gets a fresh SEI stamp
(:mod:`firmware_sim.h264`) with a per-camera frame counter that never repeats and the real
capture time. Main and sub streams share the frame clock: the same counter value is the same
instant in both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from firmware_sim import h264, picture
from firmware_sim.encoder import Clip, ClipSpec, cache_for
from firmware_sim.feed import AccessUnit, Feed

if TYPE_CHECKING:
    from firmware_sim.control import ControlServer
    from firmware_sim.mdns import MdnsAdvertiser
    from firmware_sim.onvif import OnvifServer, WsDiscoveryResponder
    from firmware_sim.rtsp import RtspServer
    from firmware_sim.whip import WhipPublisher

log = logging.getLogger(__name__)

FAULT_KINDS = ("drop", "stall", "mute", "corrupt", "reboot", "resolution", "clock_jump")
STREAMS = ("main", "sub")


class FaultError(ValueError):
    """A fault request with an unknown kind or bad parameters."""

    code = "bad_fault"


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """A doorbell/motion event, as sent on the SSE stream."""

    type: str  # "motion" | "doorbell"
    camera: str
    time: float  # s since the epoch, camera clock (clock-jump faults shift it)
    state: str | None = None  # motion: "start" | "end"

    def to_json(self) -> dict[str, Any]:
        when = (
            datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        data: dict[str, Any] = {"type": self.type, "camera": self.camera, "time": when, "ts": self.time}
        if self.state is not None:
            data["state"] = self.state
        return data


class SimCamera:
    """One simulated doorbell camera."""

    def __init__(
        self,
        name: str = "sim-1",
        *,
        width: int = 1920,
        height: int = 1080,
        fps: int = 15,
        gop: int = 30,
        sub_width: int = 640,
        sub_height: int = 360,
        host: str = "127.0.0.1",
        rtsp_port: int = 0,
        control_port: int | None = 0,
        user: str = "admin",
        password: str = "camhub",
        mdns: bool = False,
        loop_s: float = 4.0,
        visitor_s: float = 6.0,
        session_timeout_s: float = 60.0,
        model: str = "camhub-sim doorbell",
        bitrate_kbit: int = 0,
        cache_dir: Path | None = None,
        onvif: bool = False,
        onvif_port: int = 0,
        wsd_port: int | None = None,
    ) -> None:
        if fps <= 0 or gop <= 0 or width <= 0 or height <= 0:
            raise ValueError("fps, gop and sizes must be positive")
        self.name = name
        self.width, self.height = width, height
        self.sub_width, self.sub_height = sub_width, sub_height
        self.fps, self.gop = fps, gop
        self.host = host
        self.model = model
        self.bitrate_kbit = bitrate_kbit
        self._standalone = {
            "rtsp_port": rtsp_port,
            "control_port": control_port,
            "user": user,
            "password": password,
            "mdns": mdns,
            "session_timeout_s": session_timeout_s,
            "onvif": onvif,
            "onvif_port": onvif_port,
            "wsd_port": wsd_port,
        }
        self.loop_frames = max(1, round(loop_s * fps / gop)) * gop
        self.visitor_frames = max(1, round(visitor_s * fps / gop)) * gop
        self.cache = cache_for(cache_dir)
        self.feeds = {s: Feed(name, s) for s in STREAMS}
        self._clips: dict[str, dict[int, Clip]] = {}
        self._pending_clips: dict[str, dict[int, Clip]] = {}
        self.rtsp: RtspServer | None = None
        self.control: ControlServer | None = None
        self.mdns: MdnsAdvertiser | None = None
        # ONVIF device/media/events services (firmware_sim/onvif.py); set by OnvifServer.start().
        self.onvif: OnvifServer | None = None
        self.wsd: WsDiscoveryResponder | None = None
        self._owned: list[Any] = []  # servers this camera started itself (standalone use)
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._kind = picture.CLIP_IDLE
        self._pos = 0
        self._visitor_pending = False
        self._ring_pending = False
        self._ring_at = -1
        self._clock_offset_s = 0.0
        self._corrupt_left = 0
        self._stalled_until = 0.0  # loop time
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._muted_until = 0.0  # loop time
        self._listeners: set[asyncio.Queue[CameraEvent | None]] = set()
        self._publishers: set[WhipPublisher] = set()
        self._rng = random.Random(name)
        self.running = asyncio.Event()

    # --- URLs -------------------------------------------------------------------------------
    def rtsp_url(self, stream: str = "main", with_credentials: bool = True) -> str:
        if self.rtsp is None:
            raise RuntimeError("camera is not started")
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        cred = f"{self.rtsp.user}:{self.rtsp.password}@" if with_credentials else ""
        return f"rtsp://{cred}{_host(self.host)}:{self.rtsp.port}/{self.name}/{stream}"

    @property
    def control_url(self) -> str:
        if self.control is None:
            raise RuntimeError("no control server")
        return f"{self.control.base_url}/cameras/{self.name}"

    @property
    def events_url(self) -> str:
        return f"{self.control_url}/events"

    def describe(self) -> dict[str, Any]:
        """Everything a client needs to reach this camera."""
        info: dict[str, Any] = {
            "camera": self.name,
            "rtsp_main": self.rtsp_url("main"),
            "rtsp_sub": self.rtsp_url("sub"),
            "width": self.feeds["main"].width,
            "height": self.feeds["main"].height,
            "sub_width": self.sub_width,
            "sub_height": self.sub_height,
            "fps": self.fps,
            "gop": self.gop,
        }
        if self.control is not None:
            info["control"] = self.control_url
            info["events"] = self.events_url
        if self.onvif is not None:
            info["onvif"] = self.onvif.base_url
        return info

    # --- lifecycle --------------------------------------------------------------------------
    def _specs(self, width: int, height: int) -> dict[int, ClipSpec]:
        # The sub stream gets a bit rate in proportion to its pixel count.
        rate = (
            round(self.bitrate_kbit * width * height / (self.width * self.height)) if self.bitrate_kbit else 0
        )
        return {
            picture.CLIP_IDLE: ClipSpec(
                width, height, self.fps, self.gop, picture.CLIP_IDLE, self.loop_frames, rate
            ),
            picture.CLIP_VISITOR: ClipSpec(
                width, height, self.fps, self.gop, picture.CLIP_VISITOR, self.visitor_frames, rate
            ),
        }

    async def _load_clips(self, width: int, height: int) -> dict[int, Clip]:
        specs = self._specs(width, height)
        clips = await asyncio.gather(*(self.cache.get(s) for s in specs.values()))
        return dict(zip(specs, clips, strict=True))

    async def prepare(self) -> None:
        """Encode (or fetch from the cache) every clip this camera needs."""
        main, sub = await asyncio.gather(
            self._load_clips(self.width, self.height), self._load_clips(self.sub_width, self.sub_height)
        )
        self._clips = {"main": main, "sub": sub}
        for s in STREAMS:
            self._set_feed_clips(s, self._clips[s])

    def _set_feed_clips(self, stream: str, clips: dict[int, Clip]) -> None:
        feed = self.feeds[stream]
        idle = clips[picture.CLIP_IDLE]
        feed.sps, feed.pps = idle.sps, idle.pps
        feed.width, feed.height = idle.spec.width, idle.spec.height

    async def start_clock(self) -> None:
        """Start producing frames (servers are attached by the caller)."""
        if not self._clips:
            await self.prepare()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sim-clock-{self.name}")
            self.running.set()

    async def stop_publishing(self) -> None:
        """Stop every WHIP publisher of this camera."""
        for pub in list(self._publishers):
            await pub.stop()

    async def stop_clock(self) -> None:
        await self.stop_publishing()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._unstalled.set()
        for feed in self.feeds.values():
            feed.drop_all()
        self.close_event_streams()
        self.running.clear()

    def close_event_streams(self) -> None:
        """End every event listener (SSE streams close; Python listeners get None)."""
        for q in list(self._listeners):
            while q.full():
                q.get_nowait()
            q.put_nowait(None)

    async def __aenter__(self) -> Self:
        from firmware_sim.control import ControlServer
        from firmware_sim.mdns import MdnsAdvertiser
        from firmware_sim.rtsp import RtspServer

        opts = self._standalone
        try:
            await self.prepare()
            self.rtsp = RtspServer(
                self.host,
                int(opts["rtsp_port"]),
                user=str(opts["user"]),
                password=str(opts["password"]),
                session_timeout_s=float(opts["session_timeout_s"]),
            )
            self.rtsp.add_camera(self)
            await self.rtsp.start()
            self._owned.append(self.rtsp)
            if opts["control_port"] is not None:
                self.control = ControlServer(self.host, int(opts["control_port"]))
                self.control.add_camera(self)
                await self.control.start()
                self._owned.append(self.control)
            if opts["onvif"]:
                from firmware_sim.onvif import OnvifServer, WsDiscoveryResponder

                server = OnvifServer(
                    self,
                    host=self.host,
                    port=int(opts["onvif_port"]),
                    user=str(opts["user"]),
                    password=str(opts["password"]),
                )
                await server.start()
                self._owned.append(server)
                if opts["wsd_port"] is not None:
                    self.wsd = WsDiscoveryResponder([self], host=self.host, port=int(opts["wsd_port"]))
                    await self.wsd.start()
                    self._owned.append(self.wsd)
            await self.start_clock()
            if opts["mdns"]:
                self.mdns = MdnsAdvertiser(self.host)
                await self.mdns.start()
                self._owned.append(self.mdns)
                await self.mdns.advertise(self)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_clock()
        while self._owned:
            await self._owned.pop().stop()

    # --- frame clock ------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """Frame counter of the next frame to be produced."""
        return self._seq

    def camera_time(self) -> float:
        return time.time() + self._clock_offset_s

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1 / self.fps
        next_t = loop.time()
        try:
            while True:
                try:
                    self._tick(loop.time(), next_t)
                except Exception:
                    # A bug in one frame must not stop the camera; log it and carry on.
                    log.exception("camera %s: frame %d failed", self.name, self._seq)
                next_t += period
                delay = next_t - loop.time()
                if delay < -1.0:
                    # The event loop was blocked for a second or more: do not burst to catch up.
                    next_t = loop.time()
                    delay = 0
                await asyncio.sleep(max(0.0, delay))
        finally:
            log.debug("camera %s clock stopped at frame %d", self.name, self._seq)

    def _tick(self, now: float, scheduled: float | None = None) -> None:
        """Produce one frame. `scheduled`: the loop time this frame was due. A camera's sensor captures
        on its frame clock (which the RTP timestamps, `seq / fps`, follow) and encoding and sending add
        latency after it, so the capture time stamped is when the frame was due, not when this event
        loop got round to it: a tick 60 ms late on a busy machine used to stamp a capture time 60 ms
        off the frame's own timestamp, a camera no hub could record to the 100 ms issue 17 asks."""
        frames = self.visitor_frames if self._kind == picture.CLIP_VISITOR else self.loop_frames
        if self._pos >= frames:
            if self._kind == picture.CLIP_VISITOR:
                self._emit("motion", state="end")
            self._kind, self._pos = picture.CLIP_IDLE, 0
        if self._pos % self.gop == 0:
            # GOP boundary (the next frame is an IDR in every clip): switch clips here.
            for stream, clips in list(self._pending_clips.items()):
                self._clips[stream] = clips
                self._set_feed_clips(stream, clips)
            self._pending_clips.clear()
            if self._visitor_pending and self._kind == picture.CLIP_IDLE:
                self._visitor_pending = False
                self._kind, self._pos = picture.CLIP_VISITOR, 0
                self._ring_at = self.visitor_frames // 2 if self._ring_pending else -1
                self._ring_pending = False
                self._emit("motion", state="start")
        if self._kind == picture.CLIP_VISITOR and self._pos == self._ring_at:
            self._emit("doorbell")
        capture_s = self.camera_time() - (max(0.0, now - scheduled) if scheduled is not None else 0.0)
        deliver = now >= self._stalled_until and now >= self._muted_until
        corrupt = self._corrupt_left > 0
        if corrupt:
            self._corrupt_left -= 1
        for stream in STREAMS:
            clip = self._clips[stream][self._kind]
            frame = clip.frames[self._pos]
            sei = h264.build_sei(
                h264.SeiStamp(
                    seq=self._seq,
                    capture_us=int(capture_s * 1e6),
                    clip=self._kind,
                    clip_frame=frame.index,
                    camera=self.name,
                )
            )
            nals = []
            for nal in frame.nals:
                if h264.nal_type(nal) in (h264.NAL_SLICE, h264.NAL_IDR):
                    if sei:
                        nals.append(sei)  # SEI precedes the first VCL NAL unit (H.264 §7.4.1.2.3)
                        sei = b""
                    if corrupt:
                        nal = self._corrupt(nal)
                nals.append(nal)
            au = AccessUnit(
                seq=self._seq,
                pts90=round(self._seq * 90_000 / self.fps),
                capture_s=capture_s,
                idr=frame.idr,
                width=clip.spec.width,
                height=clip.spec.height,
                nals=tuple(nals),
            )
            self.feeds[stream].publish(au, deliver=deliver)
        self._pos += 1
        self._seq += 1

    def _corrupt(self, nal: bytes) -> bytes:
        # Keep the NAL header and the first bytes of the slice header so the unit still parses
        # as a slice; garble a tenth of the macroblock data.
        data = bytearray(nal)
        for _ in range(max(1, len(data) // 10)):
            i = self._rng.randrange(min(4, len(data) - 1), len(data))
            data[i] = self._rng.randrange(256)
        return bytes(data)

    # --- events -----------------------------------------------------------------------------
    def _emit(self, type_: str, state: str | None = None) -> None:
        event = CameraEvent(type=type_, camera=self.name, time=self.camera_time(), state=state)
        for q in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    def listen(self, maxsize: int = 256) -> EventListener:
        """``with camera.listen() as events: await events.get()`` — this camera's events."""
        return EventListener(self, maxsize)

    async def visitor(self, ring: bool = False) -> None:
        """A visitor walks up (motion start), optionally rings halfway, and leaves (motion end)."""
        self._visitor_pending = True
        self._ring_pending = self._ring_pending or ring

    async def press(self) -> None:
        """The doorbell button is pressed now."""
        self._emit("doorbell")

    # --- faults -----------------------------------------------------------------------------
    async def fault(self, kind: str, **params: Any) -> None:
        """Inject a fault. Kinds and parameters:

        - ``drop``: close every RTSP connection to this camera (clients see EOF).
        - ``stall``, ``seconds`` (default 5): connections stay open, nothing is sent (no RTP,
          no RTSP replies); afterwards viewers resume at the next IDR.
        - ``mute``, ``seconds`` (default 5): the encoder hangs but the RTSP server does not:
          connections stay open, requests are answered and RTCP sender reports keep coming, but
          no RTP; afterwards viewers resume at the next IDR.
        - ``corrupt``, ``frames`` (default 30): garble the slice data of the next N frames.
        - ``reboot``, ``seconds`` (default 5): connections close and the camera is unreachable
          for N s (listening socket closed if it is alone on its RTSP server, else its paths
          answer 503), then it comes back.
        - ``resolution``, ``width``, ``height``: the main stream changes size at the next GOP
          boundary (new SPS/PPS in band and in later DESCRIBE answers).
        - ``clock_jump``, ``seconds`` (default 3600, may be negative): capture times (SEI stamp,
          RTCP sender reports, event times) jump by N s.
        """
        try:
            if kind == "drop":
                _no_params(params)
                if self.rtsp is not None:
                    self.rtsp.drop_camera(self.name)
            elif kind == "stall":
                seconds = _seconds(params, 5.0)
                loop = asyncio.get_running_loop()
                self._stalled_until = loop.time() + seconds
                self._unstalled.clear()
                if self._stall_timer is not None:
                    self._stall_timer.cancel()
                self._stall_timer = loop.call_later(seconds, self._unstalled.set)
            elif kind == "mute":
                self._muted_until = asyncio.get_running_loop().time() + _seconds(params, 5.0)
            elif kind == "corrupt":
                frames = int(params.pop("frames", 30))
                _no_params(params)
                if frames <= 0:
                    raise FaultError("frames must be positive")
                self._corrupt_left = frames
            elif kind == "reboot":
                seconds = _seconds(params, 5.0)
                self.close_event_streams()  # event streams end too: the whole camera restarts
                if self.onvif is not None:
                    self.onvif.end_subscriptions()  # and so do ONVIF subscriptions
                if self.rtsp is not None:
                    await self.rtsp.reboot_camera(self.name, seconds)
            elif kind == "resolution":
                width, height = int(params.pop("width")), int(params.pop("height"))
                _no_params(params)
                if not (64 <= width <= 4096 and 64 <= height <= 2304) or width % 2 or height % 2:
                    raise FaultError("width/height must be even, 64..4096 x 64..2304")
                self._pending_clips["main"] = await self._load_clips(width, height)
            elif kind == "clock_jump":
                self._clock_offset_s += _seconds(params, 3600.0, allow_negative=True)
            else:
                raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        except FaultError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultError(f"bad parameters for {kind}: {exc}") from exc

    @property
    def muted(self) -> bool:
        """A mute fault is active: no frames, but RTSP sessions stay alive (RTCP keeps coming)."""
        return asyncio.get_running_loop().time() < self._muted_until

    async def stalled(self) -> None:
        """Return once no stall fault is active (RTSP replies wait on this)."""
        await self._unstalled.wait()

    # --- WHIP -------------------------------------------------------------------------------
    async def publish_whip(self, url: str, token: str | None = None, stream: str = "main") -> WhipPublisher:
        """Push this camera's stream to a WHIP endpoint (RFC 9725) until ``await publisher.stop()``."""
        from firmware_sim.whip import WhipPublisher

        pub = WhipPublisher(self.feeds[stream], url, token=token, on_stop=self._publishers.discard)
        await pub.start()
        self._publishers.add(pub)
        return pub


class EventListener:
    """A queue of :class:`CameraEvent`; ``None`` means the camera stopped or rebooted."""

    def __init__(self, camera: SimCamera, maxsize: int) -> None:
        self.camera = camera
        self.queue: asyncio.Queue[CameraEvent | None] = asyncio.Queue(maxsize)

    def __enter__(self) -> Self:
        self.camera._listeners.add(self.queue)
        return self

    def __exit__(self, *exc: object) -> None:
        self.camera._listeners.discard(self.queue)

    async def get(self) -> CameraEvent | None:
        return await self.queue.get()


def _no_params(params: dict[str, Any]) -> None:
    if params:
        raise FaultError(f"unexpected parameters: {', '.join(sorted(params))}")


def _seconds(params: dict[str, Any], default: float, allow_negative: bool = False) -> float:
    seconds = float(params.pop("seconds", default))
    _no_params(params)
    if not allow_negative and not 0 < seconds <= 3600:
        raise FaultError("seconds must be in (0, 3600]")
    return seconds


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
