"""Pull sources read with PyAV/FFmpeg: RTSP cameras, and recorded files replayed at live pace.

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

Close: `close()` sets a flag the demux thread checks after every packet (≤ one frame period while
streaming) and whose wait for queue space is interruptible; a read blocked on a silent camera ends at
the socket timeout. `close()` waits for the thread to exit. The one exception is the RTCP-only camera
above: FFmpeg cannot be interrupted there, so its thread ends when that connection does.

Batching: while nobody needs packets promptly (the recorder muxes on this thread, the live relay has
no viewers), each GOP's packets are kept as read and processed together when the next keyframe
arrives. The fMP4 muxer holds a fragment until that keyframe anyway, so a crash loses nothing more;
the interpreter runs its per-packet code warm instead of once per wake-up, which cut that code's CPU
by ~4x (bench/record_bench.py). A viewer arriving turns it off at the next read. Batches of all
cameras take turns (`_BATCH_TURN`) rather than interleave at every GIL release.

Packets are normalised to the `hub.ingest.source` contract: Annex B (MP4-style length-prefixed input
goes through FFmpeg's `h264_mp4toannexb` / `hevc_mp4toannexb` bitstream filter), timestamps filled and
made monotonic by `TimestampFixer`, codec parameters re-learned when the in-band SPS changes (a
resolution switch; one keyframe is decoded to read the new size — never a transcode).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

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
    nal_type,
    nal_units,
)

log = logging.getLogger(__name__)

_END = object()
# Bounds on the GOP kept while nobody wants packets (as the relay's cache): a camera with no
# keyframes for this long has its held packets dropped, and a new viewer waits for the next one.
MAX_HELD_PACKETS = 600
MAX_HELD_BYTES = 32 * 1024 * 1024
# Bounds on a batch of packets read but not yet processed (see Batching above).
MAX_BATCH_PACKETS = 120
MAX_BATCH_BYTES = 8 * 1024 * 1024
# Held while a batch goes through the sink. Without it, the threads of cameras whose GOPs end
# together (common: same model, same settings) interleave at every GIL release inside the muxer,
# and each switch is a futex wait and wake: 8 cameras x1.65 of ffmpeg's CPU, x1.32 with it
# (bench/record_bench.py). Single packets (a live viewer, a replay) do not take it.
_BATCH_TURN = threading.Lock()
# How often the event loop checks for a read blocked past the read timeout.
WATCHDOG_INTERVAL_S = 1.0
_ANNEXB_PREFIXES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
_PS_TYPES = {"h264": {7, 8}, "hevc": {32, 33, 34}}


class AvSource(PacketSource):
    """A PyAV input demuxed in a dedicated thread. Use `RtspSource` or `FileSource`."""

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
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self._options = dict(options or {})
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
        self._watchdog = self._loop.call_later(WATCHDOG_INTERVAL_S, self._watch)
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
        """Event loop, every WATCHDOG_INTERVAL_S: end the stream if a read has been blocked past the
        read timeout (plus a second, so the socket timeout normally wins and the thread exits)."""
        since = self._read_since
        if (
            since is not None
            and not self._stall_posted
            and time.monotonic() - since > self._read_timeout_s + WATCHDOG_INTERVAL_S
            # A full queue means the consumer is behind, not the camera; the reader is not in a read.
            and self._slots.acquire(blocking=False)
        ):
            self._stall_posted = True
            log.warning(
                "%s: no video for %.0f s on a live connection", self.camera_id, time.monotonic() - since
            )
            self._queue.put_nowait(SourceStalled(f"{self.camera_id}: no video for {self._read_timeout_s} s"))
            return
        if not self._closing.is_set() and self._loop is not None:
            self._watchdog = self._loop.call_later(WATCHDOG_INTERVAL_S, self._watch)

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
        container = None
        try:
            try:
                # Open timeout only: see Stalls in the module docstring for why reads have none here.
                container = av.open(self.url, options=self._options, timeout=(self._open_timeout_s, None))
                stream = container.streams.video[0]
            except (av.error.FFmpegError, IndexError, OSError) as exc:
                self._settle(self._opened, exc=SourceOpenError(f"{self.camera_id}: cannot open: {exc}"))
                return
            try:
                demux = _Demux(self.camera_id, container, stream, self._max_jump_s)
            except SourceError as exc:
                self._settle(self._opened, exc=exc)
                return
            self._settle(self._opened, demux.params)
            self._params = demux.params
            self._pump(container, stream, demux)
        except Exception as exc:  # never let the thread die silently
            log.exception("%s: demux thread failed", self.camera_id)
            if not self._closing.is_set():
                self._post(SourceError(f"{self.camera_id}: {exc}"))
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            self._settle(self._opened, exc=SourceOpenError(f"{self.camera_id}: closed while opening"))
            with contextlib.suppress(RuntimeError):
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._queue.put_nowait, _END)
            self._settle(self._exited)

    def _pump(self, container: Any, stream: Any, demux: _Demux) -> None:
        pump = _Pump(self, demux)
        it = None
        pending: list[tuple[Any, float]] = []  # (packet, arrival) read but not processed yet
        pending_bytes = 0
        try:
            while not self._closing.is_set():
                try:
                    if it is None:
                        it = container.demux(stream)
                    self._read_since = time.monotonic()
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
                    log.info("%s: read interrupted: %s", self.camera_id, exc)
                    return self._end(
                        pump,
                        pending,
                        SourceStalled(f"{self.camera_id}: no data for {self._read_timeout_s} s"),
                    )
                except (av.error.FFmpegError, OSError) as exc:
                    return self._end(pump, pending, SourceEnded(f"{self.camera_id}: connection lost: {exc}"))
                finally:
                    self._read_since = None
                if raw.size == 0:
                    continue
                arrival = time.time()
                self.last_arrival = arrival
                pending.append((raw, arrival))
                pending_bytes += raw.size
                if (
                    self._batching()
                    and not raw.is_keyframe
                    and len(pending) < MAX_BATCH_PACKETS
                    and pending_bytes < MAX_BATCH_BYTES
                ):
                    continue
                batch, pending, pending_bytes = pending, [], 0
                if not pump.run(batch):
                    return
            pump.run(pending)  # closing: what was read still reaches the recorder
        finally:
            self.timestamps_fixed = demux.fixer.fixed

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
        if pump.run(pending) and not self._closing.is_set():
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
        sink = src._sink
        out: list[MediaPacket] = []
        for raw, arrival in batch:
            if self.first_raw_dts is None and raw.dts is not None:
                self.first_raw_dts = raw.dts
            if raw.is_corrupt:
                # Keep it: later frames reference it, and a damaged frame beats a broken GOP.
                src.corrupt_packets += 1
            for pkt in self.demux.packets(raw, self.offset, arrival):
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
                        return None
                    pkt = dataclasses.replace(pkt, arrival=time.time())
                    src.last_arrival = pkt.arrival
                if sink is not None:
                    try:
                        sink(pkt)
                    except Exception as exc:  # the consumer failed: end the stream with its error
                        src._post(exc)
                        return None
                out.append(pkt)
        return out

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

    def __init__(self, camera_id: str, container: Any, stream: Any, max_jump_s: float) -> None:
        self.camera_id = camera_id
        self.stream = stream
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
        self.params = CodecParams(codec, cc.width, cc.height, self.time_base, extradata)
        self._param_sets: tuple[bytes, ...] | None = None

    def reset_filter(self) -> None:
        if self._bsf_name is not None:
            self._bsf = av.BitStreamFilterContext(self._bsf_name, self.stream)

    def packets(self, raw: Any, offset: int, arrival: float) -> list[MediaPacket]:
        out = []
        for p in self._bsf.filter(raw) if self._bsf is not None else [raw]:
            data = bytes(p)
            if not data:
                continue
            pts = None if p.pts is None else p.pts + offset
            dts = None if p.dts is None else p.dts + offset
            duration = p.duration or 0
            pts, dts, discontinuity = self.fixer.fix(pts, dts, duration)
            if p.is_keyframe:
                self._track_param_sets(data)
            out.append(
                MediaPacket(
                    data,
                    pts,
                    dts,
                    self.time_base,
                    bool(p.is_keyframe),
                    arrival,
                    duration,
                    discontinuity,
                    self.params,
                )
            )
        return out

    def _track_param_sets(self, data: bytes) -> None:
        sets = _param_set_nals(data, self.codec)
        if not sets:
            return
        if self._param_sets is None:
            self._param_sets = sets
            return
        if sets == self._param_sets:
            return
        # New SPS/PPS in-band: usually a resolution change. Decode this keyframe only to read the size.
        self._param_sets = sets
        width, height = self.params.width, self.params.height
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
        self.params = CodecParams(self.codec, width, height, self.time_base, extradata)


def _param_set_nals(data: bytes, codec: str) -> tuple[bytes, ...]:
    """The parameter-set NAL units of an Annex B access unit, without start codes."""
    wanted = _PS_TYPES[codec]
    return tuple(nal for nal in nal_units(data) if nal_type(nal[0], codec) in wanted)


class RtspSource(AvSource):
    """An RTSP camera over TCP (interleaved RTP, RFC 2326 §10.12), read with FFmpeg."""

    def __init__(self, camera_id: str, url: str, *, read_timeout_s: float = 5.0, **kwargs: Any) -> None:
        options = {
            "rtsp_transport": "tcp",
            # Socket I/O timeout in microseconds (FFmpeg rtsp demuxer option; `stimeout` before FFmpeg 5).
            "timeout": str(int(read_timeout_s * 1_000_000)),
            # Do not buffer for reordering: we record in arrival order and fix timestamps ourselves.
            "max_delay": "500000",
            **kwargs.pop("options", {}),
        }
        super().__init__(camera_id, url, options=options, read_timeout_s=read_timeout_s, **kwargs)


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
