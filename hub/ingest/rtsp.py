"""Pull sources read with PyAV/FFmpeg: RTSP cameras, and recorded files replayed at live pace.

Readers: RTP over TCP from an `rtsp://` camera (with its AAC, G.711 or Opus) is read by camhub's own reader
(hub/ingest/rtsp_client.py: one `recv` per burst where libavformat makes three system calls per RTP
packet, issue 17), plugged in below as the "container" `_pump` demuxes; everything else by FFmpeg.
What follows about FFmpeg's RTSP demuxer (its timeouts, its parser holding a frame) is about that
reader; camhub's bounds every read by the socket timeout and hands a frame on at its last packet.

FFmpeg calls block (connect, `av_read_frame`), so each source demuxes in its own named thread
(`camhub-rtsp-<camera>`) and hands packets to the event loop through a bounded queue — the shape of
aiortc's `contrib/media.py` player. The loop never waits on FFmpeg.

Stalls: the RTSP demuxer's own `timeout` option (socket I/O, microseconds; it replaced `stimeout`,
which FFmpeg 5 removed) ends a read on a silent camera within `read_timeout_s` with ETIMEDOUT, which
becomes `SourceStalled`. PyAV's `timeout=` arms FFmpeg's interrupt callback, which takes the GIL on
every poll of the socket; with several cameras that alone cost ~15% of the recorder's CPU in
bench/record_bench.py, so it is armed for `open()` only. A camera that keeps the connection busy
without sending video (RTCP only) never trips the socket timeout: a watchdog on the event loop
notices a read blocked past `read_timeout_s` and ends the stream with `SourceStalled` all the same.

The watchdog fires once the camera has sent no video for `read_timeout_s` + `STALL_MARGIN_S` (0.5 s)
while the reader waits in a read — so a stall is caught within `read_timeout_s` + 1 s whatever FFmpeg's
own timeout does (measured: FFmpeg's RTSP
reader over TCP can take about twice its `timeout` to give up, the issue-16 report), and the log says
the time actually waited. Audio still arriving while the video is silent is a stall too. It wakes
when that silence would be reached if no video came meanwhile (a few seconds apart while video flows),
and every `WATCHDOG_INTERVAL_S` only once past it while the reader is busy elsewhere: polling every
0.25 s cost the event loop ~0.5 ms of CPU per second per camera, as much as the rest of its work.

Transport (RFC 2326 §12.39): `transport="tcp"` (interleaved on the RTSP connection, the default:
nothing to open in a firewall, no loss), `"udp"` (RTP on its own ports; for servers that refuse TCP
with 461, as VLC's does), or `"auto"`: TCP, and UDP when the server answers the TCP SETUP with 461.
`transport_used` says which one worked, and `transport_refused` which one got the 461, so a camera's
next reconnect starts with UDP even when this open failed after the refusal.

The UDP attempt comes a few milliseconds after the refused one hung up, and a server that builds one
shared pipeline per stream (gst-rtsp-server, inside many cameras) is then still tearing down what the
refused attempt's DESCRIBE set up: it answers that DESCRIBE with 503 Service Unavailable. Measured
here (tests/interop, UDP-only GStreamer camera): 503 in roughly 1 of 3 opens when idle, retried after
20 ms it succeeded; under CPU load the teardown takes longer. Each such 503 cost a whole reconnect
with growing backoff, and starting every reconnect with TCP again re-armed the same race, so a few
in a row took the hub past the 20 s the interop test allows (the issue-16 flake). So a 5xx right
after the fallback is asked again (`FALLBACK_BUSY_RETRIES`, pauses from `FALLBACK_BUSY_PAUSE_S`,
within the open timeout), and the camera loop keeps UDP from the 461 on (`hub/ingest/camera.py`).

Audio (`audio=True`): the camera's first audio stream is demuxed beside the video and converted by
`hub/ingest/audio.py` (stream copy, G.711 transcoded to AAC); off by default, and then no audio is
even demuxed.

Close: `close()` sets a flag the demux thread checks after every packet (≤ one frame period while
streaming) and whose wait for queue space is interruptible; a read blocked on a silent camera ends at
the socket timeout. `close()` waits for the thread to exit. The one exception is the RTCP-only camera
above: FFmpeg cannot be interrupted there, so its thread ends when that connection does.

Batching: while nobody needs packets promptly (the recorder muxes on this thread, the live relay has
no viewers), packets are kept as read and processed together when the next keyframe arrives or the
oldest has waited `MAX_BATCH_S`, whichever is first; the interpreter runs its per-packet code warm
instead of once per wake-up, which cut that code's CPU by ~4x (bench/record_bench.py). The time bound
is part of the recorder's crash budget: a packet reaches the muxer at most `MAX_BATCH_S` after it was
read, and the muxer writes a fragment every `segmenter.FRAGMENT_S` (README, "What a crash loses"). A viewer arriving turns it off at the next read. Batches of all
cameras take turns (`_BATCH_TURN`) rather than interleave at every GIL release.

Naps: batching alone still woke the thread for every frame, in the read, and on this 2-core guest
each wake-up runs cold: reading cost more than ffmpeg's whole process for the same camera (issue 17).
So over TCP, while batching, a reader that has caught up (its last read waited on the network,
`CAUGHT_UP_S`, and the camera's timestamps agree, `FRESH_JUMP_S`) processes what it holds and
sleeps; what the camera sends meanwhile waits in the kernel's socket buffer and is read back to back
when the nap ends, a handful of frames per wake-up instead of one (README, Benchmarks: the reader's
CPU at one and four cameras). A nap lasts
`MAX_BATCH_S`, or less where the camera would send more than `NAP_BYTES` meanwhile, so the crash
budget is the same (a packet waits in the socket instead of in `pending`) and a fast camera never
piles up more than a default receive window holds. Not over UDP, where a full socket buffer drops
packets. A viewer arriving ends the nap at once (`demand`). A closing reader first reads what came
during its last nap, up to a read that waits on the network (≤ a frame period from a live camera),
so a stop records what the camera sent before it as batching did; `close()` may wait out one nap.

Packets are normalised to the `hub.ingest.source` contract: Annex B (MP4-style length-prefixed input
goes through FFmpeg's `h264_mp4toannexb` / `hevc_mp4toannexb` bitstream filter), timestamps filled and
made monotonic by `TimestampFixer`, codec parameters re-learned when the in-band SPS changes (a
resolution switch; one keyframe is decoded to read the new size — never a transcode).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from hub.ingest.audio import RECORDABLE as AUDIO_RECORDABLE
from hub.ingest.audio import AudioTrack
from hub.ingest.rtsp_client import RtspTcpReader, SourceUnauthorized, TransportRefused
from hub.ingest.source import (
    CodecParams,
    MediaPacket,
    PacketSink,
    PacketSource,
    SourceEnded,
    SourceError,
    SourceOpenError,
    SourceStalled,
    TimestampFixer,
    drop_av_packet,
    find_sps,
    nal_type,
    nal_units,
    sps_size,
)
from hub.redact import redact
from hub.threadname import name_os_thread

log = logging.getLogger(__name__)

_END = object()
# Bounds on the GOP kept while nobody wants packets (as the relay's cache): a camera with no
# keyframes for this long has its held packets dropped, and a new viewer waits for the next one.
MAX_HELD_PACKETS = 600
MAX_HELD_BYTES = 32 * 1024 * 1024
# Bounds on a batch of packets read but not yet processed (see Batching above).
MAX_BATCH_PACKETS = 120
MAX_BATCH_BYTES = 8 * 1024 * 1024
# A packet waits at most this long to be muxed: with a 4 s GOP, batching per GOP held 4 s of footage in
# memory only, which a kill -9 lost (issue 17). This + the muxer's fragment (segmenter.FRAGMENT_S,
# 0.05 s) + the parser's frame stays under the 1 s budget. Within that sum the reader gets nearly all:
# what a cycle of the reader costs (a wake-up, a batch processed with cold caches) far outweighs the
# writes of more, shorter fragments. 0.25 s with 0.5 s fragments cost ~20% more reader CPU than 0.4 s
# with 0.2 s, and 0.4 s with 0.2 s ~11% more than 0.6 s with a fragment a frame (README, Benchmarks).
MAX_BATCH_S = 0.6
# Naps (see above): a read that waited longer than this found the socket empty, so the reader has
# caught up; a nap lets at most this much of the camera's stream pile up in the socket (0.6 s of a
# 2.6 Mbit/s camera; a faster one naps shorter). Linux starts a connection with a 128 KiB receive
# buffer (tcp_rmem), half of it window, and grows it as the reader keeps up: `ss -tmi` showed 2.4 MiB
# for a 2 Mbit/s sim camera a few seconds in. Until then a full window holds the camera's sends back
# in its own socket, late but not lost.
CAUGHT_UP_S = 0.002
NAP_BYTES = 192 * 1024
# A read's wait alone misjudges a loaded machine: a read of frames already in the socket can take
# longer than CAUGHT_UP_S when this thread waits for the GIL after it, and a reader that then naps
# after every frame reads one frame per nap and falls further behind for good (seconds, in a full CI
# run). So the camera's clock must agree: the newest frame came at least half of its distance from the
# one before (by their timestamps) after it. Frames already in the socket come back to back, far
# faster than that. The first frame after a nap has no such pair; timestamps stepping back more than
# FRESH_JUMP_S (a camera's clock reset) start over. Misjudging this way costs a read, never a nap.
FRESH_JUMP_S = 2.0
# Held while a batch goes through the sink. Without it, the threads of cameras whose GOPs end
# together (common: same model, same settings) interleave at every GIL release inside the muxer,
# and each switch is a futex wait and wake: 8 cameras x1.65 of ffmpeg's CPU, x1.32 with it
# (bench/record_bench.py). Single packets (a live viewer, a replay) do not take it.
_BATCH_TURN = threading.Lock()
# By how much a camera's silence must exceed the read timeout to be a stall, and how often the event
# loop looks again once it has while the reader is not in a read: a stall is caught within
# read_timeout_s + 1 s. WATCHDOG_SLACK_S: a wake-up lands just past the moment, not just before it.
WATCHDOG_INTERVAL_S = 0.25
STALL_MARGIN_S = 0.5
WATCHDOG_SLACK_S = 0.01
TRANSPORTS = ("tcp", "udp", "auto")
# Who reads RTP over TCP: camhub itself (hub/ingest/rtsp_client.py) or FFmpeg (see RtspSource).
READERS = ("camhub", "ffmpeg")
# "auto" after a 461: a server answering 5xx to the UDP attempt is asked again this many times, after
# pauses starting at FALLBACK_BUSY_PAUSE_S and doubling, within the open timeout (see Transport).
FALLBACK_BUSY_RETRIES = 4
FALLBACK_BUSY_PAUSE_S = 0.1
_RTSP_461 = re.compile(r"(?i)returned 461\b|\b461 unsupported")


def _open_error(camera_id: str, exc: BaseException) -> SourceOpenError:
    """A typed, credential-free error for a failed open (FFmpeg quotes the URL it was given)."""
    text = redact(str(exc))
    if isinstance(exc, SourceOpenError):  # typed already (camhub's own reader)
        return type(exc)(f"{camera_id}: {text}")
    if isinstance(exc, av.error.FFmpegError):
        # "461" only as FFmpeg states a status ("Server returned 461 …"): a bare substring also
        # matched a port (rtsp://…:46183) and turned a wrong password into a transport refusal.
        if exc.errno in (errno.EPROTONOSUPPORT, errno.ENOPROTOOPT) or _RTSP_461.search(text):
            return TransportRefused(f"{camera_id}: the camera refused this RTP transport (461): {text}")
        if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
            return SourceUnauthorized(f"{camera_id}: the camera refused the credentials (401): {text}")
    return SourceOpenError(f"{camera_id}: cannot open: {text}")


_ANNEXB_PREFIXES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
_PS_TYPES = {"h264": {7, 8}, "hevc": {32, 33, 34}}


class AvSource(PacketSource):
    """A PyAV input demuxed in a dedicated thread. Use `RtspSource` or `FileSource`."""

    # FFmpeg's RTSP demuxer runs the H.264/H.265 parser, which hands over an access unit once the next
    # one begins: a live packet is read about a frame after its capture (measured: 52-102 ms, median
    # 67 ms at 15 fps against the sim's SEI capture stamps), and its read time bounds the next
    # packet's capture (`MediaPacket.bounds_next`). Not for files (their packets are all there).
    _parser_holds_frame = False

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        options: dict[str, str] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        queue_size: int = 64,
        max_jump_s: float = 2.0,
        realtime: bool = False,
        loop_input: bool = False,
        audio: bool = False,
        fallback_options: dict[str, str] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self._options = dict(options or {})
        # Tried when the first options get 461 (see Transport): RtspSource's "auto".
        self._fallback_options = fallback_options
        self.options_used: dict[str, str] | None = None
        # The transport the camera refused with 461 in this open ("tcp" under "auto"), else None.
        self.transport_refused: str | None = None
        self._audio = audio
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_jump_s = max_jump_s
        self._realtime = realtime
        self._loop_input = loop_input
        self._params: CodecParams | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._slots = threading.Semaphore(queue_size)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened: asyncio.Future[CodecParams] | None = None
        self._exited: asyncio.Future[None] | None = None
        self._sink: PacketSink | None = None
        self._queue_packets = True
        self._demand: threading.Event | None = None
        self._held: list[MediaPacket] = []  # the GOP in progress while demand is clear
        self._held_bytes = 0
        # monotonic() when the read in progress began, None between reads (demux thread writes it).
        self._read_since: float | None = None
        # monotonic() of the newest video packet (or of the open): the watchdog measures silence by it.
        self._video_at = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self._stall_posted = False
        self.packets_read = 0
        self.corrupt_packets = 0
        self.timestamps_fixed = 0

    @property
    def params(self) -> CodecParams:
        if self._params is None:
            raise SourceError(f"{self.camera_id}: source not open")
        return self._params

    def set_sink(self, sink: PacketSink | None, *, queue_packets: bool = False) -> bool:
        if self._thread is not None:
            raise SourceError(f"{self.camera_id}: set_sink() after open()")
        self._sink = sink
        self._queue_packets = queue_packets or sink is None
        return True

    def set_demand(self, demand: threading.Event) -> None:
        if self._thread is not None:
            raise SourceError(f"{self.camera_id}: set_demand() after open()")
        self._demand = demand

    async def open(self) -> CodecParams:
        if self._thread is not None:
            raise SourceError(f"{self.camera_id}: open() called twice")
        self._loop = asyncio.get_running_loop()
        self._opened = self._loop.create_future()
        self._exited = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"camhub-rtsp-{self.camera_id}", daemon=True)
        self._thread.start()
        try:
            # The thread enforces the open timeout itself; the margin only guards against a bug there.
            self._params = await asyncio.wait_for(
                asyncio.shield(self._opened), self._open_timeout_s + self._read_timeout_s + 5
            )
        except BaseException:
            await self.close()
            raise
        self._video_at = time.monotonic()
        self._watchdog = self._loop.call_later(self._read_timeout_s + STALL_MARGIN_S, self._watch)
        return self._params

    async def packets(self) -> AsyncIterator[MediaPacket]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # later calls end at once too
                return
            self._slots.release()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._exited is None or self._thread is None:
            return
        # A read blocked on a silent camera ends at the read timeout; wait a little past it. One the
        # watchdog gave up on ends only with its connection: do not hold up the reconnect for it.
        wait_s = 0.5 if self._stall_posted else self._read_timeout_s + 2
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), wait_s)
        if self._exited.done() and self._thread.is_alive():
            # It has signalled its exit and is returning; join so no thread outlives close().
            await asyncio.to_thread(self._thread.join, 1.0)
        if self._thread.is_alive():
            log.log(
                logging.WARNING if self._stall_posted else logging.ERROR,
                "%s: demux thread is still blocked in a read (a connection that sends no video); "
                "it ends with that connection",
                self.camera_id,
            )

    def _watch(self) -> None:
        """Event loop: end the stream once the reader waits in a read and the camera has sent no
        video for read_timeout_s + STALL_MARGIN_S (see Stalls); else wake again when it could be so."""
        since = self._read_since
        limit = self._read_timeout_s + STALL_MARGIN_S
        silent = time.monotonic() - self._video_at
        if (
            since is not None
            and not self._stall_posted
            and silent > limit
            # A full queue means the consumer is behind, not the camera; the reader is not in a read.
            and self._slots.acquire(blocking=False)
        ):
            self._stall_posted = True
            log.warning("%s: no video for %.1f s; reconnecting", self.camera_id, silent)
            self._queue.put_nowait(SourceStalled(f"{self.camera_id}: no video for {silent:.1f} s"))
            return
        if not self._closing.is_set() and self._loop is not None:
            delay = limit - silent + WATCHDOG_SLACK_S if silent <= limit else WATCHDOG_INTERVAL_S
            self._watchdog = self._loop.call_later(delay, self._watch)

    # --- demux thread -------------------------------------------------------------------------

    def _post(self, item: object) -> bool:
        """Queue `item` for the loop, waiting for space; False if the source is closing."""
        while not self._slots.acquire(timeout=0.2):
            if self._closing.is_set():
                return False
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # loop closed under us
            return False
        return True

    def _offer(self, pkt: MediaPacket) -> bool:
        """Queue `pkt` for the loop if packets are wanted, else keep only the GOP in progress; False
        if the source is closing."""
        demand = self._demand
        if demand is None or demand.is_set():
            if self._held:
                held, self._held, self._held_bytes = self._held, [], 0
                for old in held:
                    if not self._post(old):
                        return False
            return self._post(pkt)
        if pkt.is_keyframe:
            self._held, self._held_bytes = [pkt], len(pkt.data)
        elif self._held:
            self._held.append(pkt)
            self._held_bytes += len(pkt.data)
            if len(self._held) > MAX_HELD_PACKETS or self._held_bytes > MAX_HELD_BYTES:
                self._held, self._held_bytes = [], 0
        return True

    def _settle(self, fut: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
        def _set() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_set)

    def _run(self) -> None:
        assert self._opened is not None and self._exited is not None
        name_os_thread()
        container = None
        try:
            attempts = [self._options]
            if self._fallback_options is not None:
                attempts.append(self._fallback_options)
            deadline = time.monotonic() + self._open_timeout_s
            n = 0
            busy_retries = 0
            while True:
                options = attempts[n]
                container = None
                try:
                    container, stream = self._open_input(options, deadline)
                    self.options_used = options
                    break
                except (av.error.FFmpegError, IndexError, OSError, SourceError) as exc:
                    error = _open_error(self.camera_id, exc)
                    if isinstance(error, TransportRefused) and n + 1 < len(attempts):
                        self.transport_refused = options.get("rtsp_transport")
                        log.info(
                            "%s: %s; trying %s", self.camera_id, error, attempts[n + 1].get("rtsp_transport")
                        )
                        n += 1
                        continue
                    pause = FALLBACK_BUSY_PAUSE_S * 2**busy_retries
                    if (
                        n > 0
                        and isinstance(exc, av.error.HTTPServerError)
                        and busy_retries < FALLBACK_BUSY_RETRIES
                        and time.monotonic() + pause < deadline
                        and not self._closing.is_set()
                    ):
                        # See Transport: the server is still tearing down what the refused attempt
                        # set up (gst-rtsp-server answers 503 meanwhile); ask again in a moment.
                        busy_retries += 1
                        log.info(
                            "%s: %s right after the %s refusal; asking again in %.2f s",
                            self.camera_id, error, attempts[0].get("rtsp_transport"), pause,
                        )  # fmt: skip
                        if not self._closing.wait(pause):
                            continue
                    self._settle(self._opened, exc=error)
                    return
            assert container is not None
            audio = self._audio_track(container) if self._audio else None
            try:
                demux = _Demux(
                    self.camera_id,
                    container,
                    stream,
                    self._max_jump_s,
                    audio,
                    bounds_next=self._parser_holds_frame and not self._realtime,
                )
            except SourceError as exc:
                self._settle(self._opened, exc=exc)
                return
            self._settle(self._opened, demux.params)
            self._params = demux.params
            self._pump(container, stream, demux)
        except Exception as exc:  # never let the thread die silently
            log.exception("%s: demux thread failed", self.camera_id)
            if not self._closing.is_set():
                self._post(SourceError(f"{self.camera_id}: {redact(str(exc))}"))
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            self._settle(self._opened, exc=SourceOpenError(f"{self.camera_id}: closed while opening"))
            with contextlib.suppress(RuntimeError):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._queue.put_nowait, _END)
            self._settle(self._exited)

    def _open_input(self, options: dict[str, str], deadline: float) -> tuple[Any, Any]:
        """Connect: the input to demux and its video stream. The container is closed by the caller
        (also when this raises after opening it)."""
        # Open timeout only: see Stalls in the module docstring for why reads have none here.
        container = av.open(self.url, options=options, timeout=(self._open_timeout_s, None))
        try:
            return container, container.streams.video[0]
        except IndexError:  # opened, but no video stream in it
            with contextlib.suppress(Exception):
                container.close()
            raise

    def _audio_track(self, container: Any) -> AudioTrack | None:
        streams = list(container.streams.audio)
        if not streams:
            log.info("%s: audio is on but the camera sends none", self.camera_id)
            return None
        codec = streams[0].codec_context.name
        if codec not in AUDIO_RECORDABLE:
            log.warning(
                "%s: audio codec %s is not recorded (AAC, Opus and G.711 are); video only",
                self.camera_id,
                codec,
            )
            return None
        try:
            track = AudioTrack(self.camera_id, streams[0])
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("%s: audio not recorded: %s", self.camera_id, exc)
            return None
        log.info(
            "%s: recording audio: %s %d Hz%s",
            self.camera_id,
            codec,
            track.params.sample_rate,
            " (transcoded to AAC: MP4 cannot carry G.711)" if track.params.transcoded else "",
        )
        return track

    def _pump(self, container: Any, stream: Any, demux: _Demux) -> None:
        pump = _Pump(self, demux)
        it = None
        pending: list[tuple[Any, float]] = []  # (packet, arrival) read but not processed yet
        pending_bytes = 0
        naps = (self.options_used or {}).get("rtsp_transport") == "tcp"
        nap_until = 0.0
        cycle_start, cycle_bytes = time.monotonic(), 0  # the camera's byte rate, between two naps
        # False from a nap until a read waits on the network again: what the camera sent meanwhile is
        # still in the socket, and a closing reader reads it first (it was sent before the stop).
        drained = True
        tb = float(stream.time_base)
        # The newest video frame by the camera's clock (s) and when it was read; whether it was fresh.
        last_media: float | None = None
        last_read, fresh = 0.0, False
        try:
            while not self._closing.is_set() or not drained:
                if nap_until:
                    self._nap(nap_until)
                    nap_until, drained = 0.0, False
                    last_media, fresh = None, False
                    continue
                try:
                    if it is None:
                        it = (
                            container.demux(stream, demux.audio.stream)
                            if demux.audio
                            else container.demux(stream)
                        )
                    self._read_since = read_at = time.monotonic()
                    raw = next(it)
                except StopIteration:
                    if self._loop_input and self.packets_read:
                        container.seek(0)
                        it = None
                        pump.next_loop()
                        continue
                    return self._end(pump, pending, SourceEnded(f"{self.camera_id}: stream ended"))
                except av.error.InvalidDataError:
                    it = None
                    self.corrupt_packets += 1
                    log.warning("%s: skipped an undecodable packet from the demuxer", self.camera_id)
                    continue
                except (av.error.ExitError, av.error.TimeoutError, TimeoutError) as exc:
                    silent = time.monotonic() - self._video_at
                    log.warning(
                        "%s: no video for %.1f s (%s); reconnecting", self.camera_id, silent, redact(str(exc))
                    )
                    return self._end(
                        pump,
                        pending,
                        SourceStalled(f"{self.camera_id}: no video for {silent:.1f} s"),
                    )
                except (av.error.FFmpegError, OSError) as exc:
                    return self._end(
                        pump, pending, SourceEnded(f"{self.camera_id}: connection lost: {redact(str(exc))}")
                    )
                except SourceError as exc:  # camhub's reader met what only FFmpeg's reads
                    log.warning("%s: %s", self.camera_id, exc)
                    return self._end(pump, pending, type(exc)(f"{self.camera_id}: {exc}"))
                finally:
                    self._read_since = None
                if raw.size == 0:
                    continue
                now = time.monotonic()
                is_video = raw.stream_index == stream.index
                if is_video:
                    self._video_at = now
                    if naps and raw.pts is not None:
                        media = raw.pts * tb
                        if last_media is None or media < last_media - FRESH_JUMP_S:
                            last_media, last_read, fresh = media, now, False
                        elif media > last_media:  # with B-frames, only a newer frame tells
                            fresh = now - last_read > (media - last_media) / 2
                            last_media, last_read = media, now
                caught_up = now - read_at > CAUGHT_UP_S and fresh
                drained = drained or caught_up
                arrival = time.time()
                self.last_arrival = arrival
                pending.append((raw, arrival))
                pending_bytes += raw.size
                cycle_bytes += raw.size
                batching = self._batching()
                if (
                    batching
                    and not (is_video and raw.is_keyframe)
                    and len(pending) < MAX_BATCH_PACKETS
                    and pending_bytes < MAX_BATCH_BYTES
                    and arrival - pending[0][1] < MAX_BATCH_S
                    and not (naps and caught_up)
                ):
                    continue
                batch, pending, pending_bytes = pending, [], 0
                if not pump.run(batch):
                    return
                if naps and caught_up and batching and not self._closing.is_set():
                    rate = cycle_bytes / max(now - cycle_start, 1e-3)
                    nap_until = now + min(MAX_BATCH_S, NAP_BYTES / rate)
                    cycle_start, cycle_bytes = now, 0
            if pump.run(pending):  # closing: what was read still reaches the recorder
                pump.flush()
        finally:
            self.timestamps_fixed = demux.fixer.fixed

    def _nap(self, until: float) -> None:
        """Sleep until `until` (see Naps), or until a viewer wants packets; with no relay attached
        (no `demand`), until the source closes."""
        delay = until - time.monotonic()
        if delay <= 0 or not self._batching():
            return
        demand = self._demand
        # A viewer must not wait out the nap; close() sets no event here and waits it out instead.
        (demand if demand is not None else self._closing).wait(delay)

    def _batching(self) -> bool:
        """True while no consumer needs each packet as soon as it is read (see Batching)."""
        if self._realtime:
            return False
        if not self._queue_packets:
            return True
        demand = self._demand
        return demand is not None and not demand.is_set()

    def _end(self, pump: _Pump, pending: list[tuple[Any, float]], error: SourceError) -> None:
        """The stream ended or failed: process what was read, then tell the consumer."""
        if pump.run(pending) and pump.flush() and not self._closing.is_set():
            self._post(error)


class _Pump:
    """Processes read packets on the demux thread: normalise, pace (replays), hand to the sink and
    the queue. Returns False from `run` when the source must stop."""

    def __init__(self, source: AvSource, demux: _Demux) -> None:
        self.source = source
        self.demux = demux
        self.wall0 = time.monotonic()
        self.first_dts: int | None = None  # first output dts, for live pacing
        self.first_raw_dts: int | None = None  # first input dts, for looping a replayed file
        self.last_dts = 0
        self.period = 1
        self.offset = 0  # added to input timestamps after each loop of a replayed file

    def next_loop(self) -> None:
        """A replayed file starts again: continue its timestamps."""
        self.flush()
        self.offset = self.last_dts + self.period - (self.first_raw_dts or 0)
        self.demux.reset_filter()

    def run(self, batch: list[tuple[Any, float]]) -> bool:
        if not batch:
            return True
        if len(batch) == 1:
            return self._enqueue(self._process(batch))
        # Cameras' GOPs often end together: one batch at a time (see _BATCH_TURN).
        with _BATCH_TURN:
            pkts = self._process(batch)
        return self._enqueue(pkts)

    def _process(self, batch: list[tuple[Any, float]]) -> list[MediaPacket] | None:
        """Normalise, pace and hand each packet to the sink; None if the source must stop."""
        src = self.source
        out: list[MediaPacket] = []
        for raw, arrival in batch:
            if self.demux.is_audio(raw):
                for pkt in self.demux.audio_packets(raw, arrival):
                    if not self._deliver(pkt, out):
                        return None
                continue
            if self.first_raw_dts is None and raw.dts is not None:
                self.first_raw_dts = raw.dts
            if raw.is_corrupt:
                # Keep it: later frames reference it, and a damaged frame beats a broken GOP.
                src.corrupt_packets += 1
            for pkt in self.demux.packets(raw, self.offset, arrival):
                if not self._deliver(pkt, out):
                    return None
        return out

    def flush(self) -> bool:
        """Hand on the keyframe `_Demux` holds (the stream ended, or a replayed file loops)."""
        out: list[MediaPacket] = []
        for pkt in self.demux.flush():
            if not self._deliver(pkt, out):
                return False
        return self._enqueue(out)

    def _deliver(self, pkt: MediaPacket, out: list[MediaPacket]) -> bool:
        """Count, pace (replays) and hand one packet to the sink; False if the source must stop."""
        src = self.source
        if not pkt.audio:
            src.packets_read += 1
            if src.packets_read > 1:
                self.period = pkt.duration or max(1, pkt.dts - self.last_dts)
            self.last_dts = pkt.dts
            if src._realtime:
                if self.first_dts is None:
                    self.first_dts = pkt.dts
                due = self.wall0 + float((pkt.dts - self.first_dts) * self.demux.time_base)
                delay = due - time.monotonic()
                if delay > 0 and src._closing.wait(delay):
                    return False
                pkt = dataclasses.replace(pkt, arrival=time.time())
                src.last_arrival = pkt.arrival
        sink = src._sink
        if sink is not None:
            try:
                sink(pkt)
            except Exception as exc:  # the consumer failed: end the stream with its error
                src._post(exc)
                return False
            # Muxed by now (or kept as bytes): what waits for a viewer must not hold the frame twice.
            drop_av_packet(pkt)
        out.append(pkt)
        return True

    def _enqueue(self, pkts: list[MediaPacket] | None) -> bool:
        """Offer packets to the loop (outside _BATCH_TURN: this may wait for queue space)."""
        if pkts is None:
            return False
        src = self.source
        if src._queue_packets:
            for pkt in pkts:
                if not src._offer(pkt):
                    return False
        return True


class _Demux:
    """Per-stream normalisation: Annex B, fixed timestamps, codec parameters tracking the SPS."""

    def __init__(
        self,
        camera_id: str,
        container: Any,
        stream: Any,
        max_jump_s: float,
        audio: AudioTrack | None = None,
        *,
        bounds_next: bool = False,
    ) -> None:
        self.camera_id = camera_id
        self.bounds_next = bounds_next
        self.stream = stream
        self.audio = audio
        self._audio_fixer = (
            TimestampFixer(audio.params.time_base, max_jump_s=max_jump_s, default_fps=50.0) if audio else None
        )
        cc = stream.codec_context
        codec = cc.name
        if codec not in _PS_TYPES:
            raise SourceOpenError(f"{camera_id}: codec {codec!r} is not recordable (want h264 or hevc)")
        self.codec = codec
        self.time_base = Fraction(stream.time_base.numerator, stream.time_base.denominator)
        extradata = bytes(cc.extradata or b"")
        self._bsf_name: str | None = None
        if extradata and not extradata.startswith(_ANNEXB_PREFIXES):
            # MP4-style (avcC/hvcC): the filter converts packets and puts parameter sets in-band.
            self._bsf_name = f"{codec}_mp4toannexb"
            extradata = b""
        self._bsf: Any = None
        self.reset_filter()
        rate = stream.average_rate or stream.guessed_rate or 15
        self.fixer = TimestampFixer(self.time_base, max_jump_s=max_jump_s, default_fps=float(rate))
        self.params = CodecParams(
            codec, cc.width, cc.height, self.time_base, extradata, audio.params if audio else None
        )
        # The sets in force: the SDP's (extradata) until a keyframe carries its own. A camera whose
        # SDP is stale (it changed the stream and not the SDP) is caught at its first keyframe.
        self._param_sets: tuple[bytes, ...] | None = _param_set_nals(extradata, codec) or None
        # A keyframe read but not yet handed on: (data, pts, dts, duration, arrival, demuxed packet
        # or None once joined); see `packets`.
        self._held: tuple[bytes, int | None, int | None, int, float, Any] | None = None

    def is_audio(self, raw: Any) -> bool:
        return self.audio is not None and raw.stream_index == self.audio.stream.index

    def audio_packets(self, raw: Any, arrival: float) -> list[MediaPacket]:
        """The recordable audio of one demuxed packet; timestamps filled and kept increasing."""
        assert self.audio is not None and self._audio_fixer is not None
        out = []
        for data, pts, duration in self.audio.convert(raw):
            pts_, dts, discontinuity = self._audio_fixer.fix(pts, pts, duration)
            tb = self.audio.params.time_base
            out.append(
                MediaPacket(data, pts_, dts, tb, False, arrival, duration, discontinuity, self.params, True)
            )
        return out

    def reset_filter(self) -> None:
        if self._bsf_name is not None:
            self._bsf = av.BitStreamFilterContext(self._bsf_name, self.stream)

    def packets(self, raw: Any, offset: int, arrival: float) -> list[MediaPacket]:
        """Normalised packets for one demuxed packet. A keyframe is held until the next packet: when
        that one has the same timestamp it is the rest of the same picture and is joined to it.
        Why: GStreamer's rtph264pay (config-interval=-1, in many cameras) puts SPS/PPS before each
        slice of an IDR, FFmpeg's parser then starts a new access unit at the second SPS, and a
        multi-slice keyframe (x264's sliced threads) arrived as two packets with one timestamp —
        recorded as two samples, the second of which decoded as a corrupt frame (found against
        gst-rtsp-server, tests/interop/). The first packet of a connection has no timestamp (see
        MEDIA_NOTES), so a keyframe held without one takes the next keyframe's. Costs one frame of
        delay per GOP."""
        out: list[MediaPacket] = []
        for p in self._bsf.filter(raw) if self._bsf is not None else [raw]:
            data = bytes(p)
            if not data:
                continue
            pts = None if p.pts is None else p.pts + offset
            dts = None if p.dts is None else p.dts + offset
            key = bool(p.is_keyframe)
            held = self._held
            if held is not None:
                if key and (held[1] is None or held[1] == pts):
                    # The rest of the held picture: one access unit, with the later timestamps if
                    # the held part had none.
                    self._held = (held[0] + data, pts if held[1] is None else held[1],
                                  dts if held[2] is None else held[2], held[3] or (p.duration or 0), arrival,
                                  None)  # fmt: skip
                    continue
                self._held = None
                out.append(self._packet(*held, True))
            if key:
                self._held = (data, pts, dts, p.duration or 0, arrival, p)
                continue
            out.append(self._packet(data, pts, dts, p.duration or 0, arrival, p, False))
        return out

    def flush(self) -> list[MediaPacket]:
        """The held keyframe, if any (the stream ended or the source is closing)."""
        held, self._held = self._held, None
        return [] if held is None else [self._packet(*held, True)]

    def _packet(
        self,
        data: bytes,
        pts: int | None,
        dts: int | None,
        duration: int,
        arrival: float,
        raw: Any,
        key: bool,
    ) -> MediaPacket:
        pts, dts, discontinuity = self.fixer.fix(pts, dts, duration)
        if key:
            self._track_param_sets(data)
        return MediaPacket(
            data, pts, dts, self.time_base, key, arrival, duration, discontinuity, self.params,
            bounds_next=self.bounds_next, av_packet=raw,
        )  # fmt: skip

    def _track_param_sets(self, data: bytes) -> None:
        sets = _param_set_nals(data, self.codec)
        if not sets:
            return
        if self._param_sets is None:
            self._param_sets = sets
            return
        if sets == self._param_sets:
            return
        # New SPS/PPS in-band: usually a resolution change. The size is the SPS's; a decode of this
        # keyframe only if the SPS cannot be read.
        self._param_sets = sets
        width, height = self.params.width, self.params.height
        sps = find_sps(sets, self.codec)
        try:
            if sps is None:
                raise ValueError("no SPS among the new parameter sets")
            width, height = sps_size(sps, self.codec)
        except ValueError:
            try:
                ctx = av.CodecContext.create(self.codec, "r")
                frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
                if frames:
                    width, height = frames[0].width, frames[0].height
            except av.error.FFmpegError as exc:
                log.warning("%s: could not read the new stream size: %s", self.camera_id, exc)
        extradata = b"".join(b"\x00\x00\x00\x01" + nal for nal in sets)
        log.info(
            "%s: parameter sets changed: %dx%d -> %dx%d",
            self.camera_id,
            self.params.width,
            self.params.height,
            width,
            height,
        )
        self.params = CodecParams(self.codec, width, height, self.time_base, extradata, self.params.audio)


def _param_set_nals(data: bytes, codec: str) -> tuple[bytes, ...]:
    """The distinct parameter-set NAL units of an Annex B access unit, without start codes, in order.

    Distinct: GStreamer's rtph264pay with `config-interval=-1` (what many cameras run) repeats SPS/PPS
    inside one keyframe, and FFmpeg may hand that keyframe over in two packets, one with the sets
    twice and one with them once; compared as they come, every keyframe looked like a new stream
    and cut a segment (found against gst-rtsp-server, tests/interop/)."""
    wanted = _PS_TYPES[codec]
    return tuple(dict.fromkeys(nal for nal in nal_units(data) if nal_type(nal[0], codec) in wanted))


class RtspSource(AvSource):
    """An RTSP camera: RTP interleaved over TCP (RFC 2326 §10.12) or over UDP (§12.39), or "auto"
    (TCP, then UDP on 461; see Transport in the module docstring).

    `reader="camhub"` reads TCP with camhub's own reader (hub/ingest/rtsp_client.py: one system call
    per burst instead of three per RTP packet) when it can: an rtsp:// URL over TCP. Everything
    else, and `reader="ffmpeg"`, is read by FFmpeg. `reader_used` says which one opened."""

    _parser_holds_frame = True

    def __init__(
        self,
        camera_id: str,
        url: str,
        *,
        read_timeout_s: float = 5.0,
        transport: str = "tcp",
        reader: str = "camhub",
        **kwargs: Any,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
        self._reader = reader
        self.reader_used: str | None = None
        extra = kwargs.pop("options", {})

        def options(rtp: str) -> dict[str, str]:
            return {
                "rtsp_transport": rtp,
                # Socket I/O timeout in microseconds (FFmpeg rtsp demuxer option; `stimeout` before FFmpeg 5).
                "timeout": str(int(read_timeout_s * 1_000_000)),
                # Do not buffer for reordering: we record in arrival order and fix timestamps ourselves.
                # Over UDP the reorder buffer would also hold every packet this long.
                "max_delay": "500000",
                **extra,
            }

        first = "tcp" if transport == "auto" else transport
        super().__init__(
            camera_id,
            url,
            options=options(first),
            fallback_options=options("udp") if transport == "auto" else None,
            read_timeout_s=read_timeout_s,
            **kwargs,
        )

    def _open_input(self, options: dict[str, str], deadline: float) -> tuple[Any, Any]:
        own = (
            self._reader == "camhub"
            and options.get("rtsp_transport") == "tcp"
            and self.url.startswith("rtsp://")
        )
        if not own:
            self._parser_holds_frame = True
            self.reader_used = "ffmpeg"
            return super()._open_input(options, deadline)
        reader = RtspTcpReader(
            self.url,
            open_timeout_s=max(0.1, deadline - time.monotonic()),
            read_timeout_s=self._read_timeout_s,
            audio=self._audio,
        )
        try:
            stream = reader.open()
        except BaseException:
            reader.close()
            raise
        # Each access unit is handed on at its last RTP packet: its arrival bounds its own capture.
        self._parser_holds_frame = False
        self.reader_used = "camhub"
        return reader, stream

    @property
    def transport_used(self) -> str | None:
        """ "tcp" or "udp" once open; None before (or if it never opened)."""
        return None if self.options_used is None else self.options_used.get("rtsp_transport")


class FileSource(AvSource):
    """A recorded file replayed as a live camera (paced by its timestamps, optionally looping).

    Used by tests and the benchmark where no camera or simulator is available.
    """

    def __init__(
        self,
        camera_id: str,
        path: Path | str,
        *,
        realtime: bool = True,
        loop_input: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(camera_id, str(path), realtime=realtime, loop_input=loop_input, **kwargs)
