"""One camera's recorder: consumes a `PacketSource` and writes segments through a `Segmenter`.

Blocking work — muxing, fsync, hashing, queueing index rows — never runs on the event loop. Where it
runs depends on the source:

- A source with its own reader thread (RTSP, `PacketSource.set_sink`): packets are muxed on that
  thread as they are read; nothing crosses threads per packet. On a Pi-class CPU each thread
  hand-off (a futex or epoll wake-up) costs more than muxing the packet, so this path is what keeps
  the recorder's CPU close to `ffmpeg -c copy` (see bench/record_bench.py).
  If the caller also wants every packet on the loop (`on_packet`, e.g. a live-view relay), the
  reader thread queues them there too: one hand-off per packet.
- A source without a reader thread (WHIP: packets arrive on the loop): the loop hands each packet to
  the recorder's worker thread (`camhub-rec-<camera>`) without waiting for it; the queue is bounded
  (`MAX_BACKLOG_PACKETS`).

Either way one lock serialises the segmenter, and finalizing (`stop()`, a source error) runs on the
worker thread.

Lifecycle (what the per-camera supervisor does)::

    recorder = Recorder("front", recordings_dir, store)
    while not stopping:
        try:
            await recorder.run(RtspSource("front", url))   # returns after stop(); raises SourceError
        except SourceError:
            ...back off, count a reconnect...
    await recorder.stop()                                   # from shutdown: finalizes in ≤ 2 s

`run()` always finalizes the open segment and closes the source on the way out, and marks the break,
so the next `run()` records a gap with the reason (the source error's `code`, "ended", "stopped").
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hub.ingest.source import MediaPacket, PacketSink, PacketSource, SourceError
from hub.record import recovery
from hub.record.sealed import AtRest
from hub.record.segmenter import Segmenter
from hub.store import Store
from hub.threadname import name_os_thread

log = logging.getLogger(__name__)

MAX_BACKLOG_PACKETS = 300  # ~20 s at 15 fps waiting for the disk before the loop waits too
CLOSE_FLUSH_S = 0.5  # how long a closing source may take to hand over the packets it holds


class RecordError(Exception):
    """Writing a segment failed (disk full, I/O error); the run ends, the supervisor may retry."""

    code = "record"


@dataclass(frozen=True)
class RecorderStats:
    camera_id: str
    online: bool  # a source is open and packets are flowing into the recorder
    segments: int
    bytes: int
    packets: int
    dropped_packets: int
    gaps: int
    last_frame_at: float | None
    last_error: str | None


class Recorder:
    """Records one camera. `run()` may be called again after it returns or raises (reconnects)."""

    def __init__(
        self,
        camera_id: str,
        recordings_dir: Path,
        store: Store,
        *,
        segment_s: float = 4.0,
        max_drift_s: float = 2.0,
        finalize_timeout_s: float = 2.0,
        at_rest: AtRest | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"camhub-rec-{camera_id}", initializer=name_os_thread
        )
        self._segmenter = Segmenter(
            camera_id,
            Path(recordings_dir),
            store,
            segment_s=segment_s,
            max_drift_s=max_drift_s,
            finalizer=self._executor,
            at_rest=at_rest,
        )
        self._finalize_timeout_s = finalize_timeout_s
        self._inner: asyncio.Task[None] | None = None
        self._stopping = False
        self._online = False
        self._last_error: str | None = None
        # The segmenter is used from one thread at a time: the worker, or the source's reader thread.
        self._lock = threading.Lock()
        self._accepting = False
        self._error: RecordError | None = None
        self._submitted = 0  # packets handed to the worker (loop thread only)
        self._written = 0  # packets the worker finished (worker thread only)

    @property
    def stats(self) -> RecorderStats:
        s = self._segmenter.stats
        return RecorderStats(
            self.camera_id,
            self._online,
            s.segments,
            s.bytes,
            s.packets,
            s.dropped_packets,
            s.gaps,
            s.last_frame_at,
            self._last_error,
        )

    async def run(self, source: PacketSource, on_packet: PacketSink | None = None) -> None:
        """Open `source` and record it until it fails (raises), ends (raises) or `stop()` (returns).

        `on_packet`, if given, is called on the event loop with every packet (e.g. a live-view
        relay's `publish`). A source with its own reader thread (RTSP) muxes on that thread
        (`PacketSource.set_sink`): without `on_packet` no packet crosses threads at all, with it
        each packet crosses once (reader → loop).
        """
        if self._stopping:
            await source.close()
            return
        if self._inner is not None:
            raise RuntimeError(f"{self.camera_id}: recorder is already running")
        # The work runs in an inner task so that stop() can cancel it without cancelling our caller.
        inner = asyncio.create_task(self._consume(source, on_packet), name=f"camhub-record-{self.camera_id}")
        self._inner = inner
        try:
            await inner
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled; the inner task has finalized already
            # Otherwise stop() cancelled the inner task: a normal end.
        finally:
            self._inner = None

    async def stop(self) -> None:
        """Stop recording: finalize (or, past the timeout, abandon) the open segment. Idempotent."""
        self._stopping = True
        inner = self._inner
        if inner is not None and not inner.done():
            inner.cancel()
            await asyncio.wait({inner})
        # All work is done by now; this only lets the idle worker thread exit.
        await asyncio.to_thread(self._executor.shutdown, True)

    async def _consume(self, source: PacketSource, on_packet: PacketSink | None) -> None:
        reason = "stopped"
        with self._lock:
            self._accepting = True
            self._error = None
        # With a reader thread, mux there; packets reach the loop only if on_packet wants them.
        direct = source.set_sink(self._write, queue_packets=on_packet is not None)
        try:
            await source.open()
            self._online = True
            async for pkt in source.packets():
                if on_packet is not None:
                    on_packet(pkt)
                if direct:
                    continue  # already muxed on the reader thread
                if pkt.params is None:
                    pkt = dataclasses.replace(pkt, params=source.params)
                self._submitted += 1
                self._executor.submit(self._write_queued, pkt)
                if self._error is not None:
                    raise self._error
                if self._submitted - self._written > MAX_BACKLOG_PACKETS:
                    await self._drain()
            reason = "ended"
        except SourceError as exc:
            # Packets handed to the worker may have failed to write: that error matters more.
            await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)
            if self._error is not None:
                reason = self._error.code
                self._last_error = str(self._error)
                raise self._error from exc
            reason = exc.code
            self._last_error = str(exc)
            log.warning("%s: source failed: %s", self.camera_id, exc)
            raise
        except RecordError as exc:
            reason = exc.code
            self._last_error = str(exc)
            raise
        finally:
            self._online = False
            # Close first, briefly: a source that batches (rtsp.py) hands its last packets to the
            # sink as it closes, within a frame period. Then finalize without waiting for it: the
            # segment must be safe within the timeout even if the source takes its read timeout to
            # let go.
            closing = asyncio.ensure_future(source.close())
            await asyncio.wait({closing}, timeout=CLOSE_FLUSH_S)
            await asyncio.gather(self._finalize(reason), closing)

    async def _drain(self) -> None:
        """The disk is slower than the camera: wait (bounded queue) rather than grow without limit."""
        log.warning("%s: %d packets waiting for the disk", self.camera_id, self._submitted - self._written)
        while self._submitted - self._written > MAX_BACKLOG_PACKETS // 2:
            if self._error is not None:
                raise self._error
            await asyncio.sleep(0.05)

    def _write_queued(self, pkt: MediaPacket) -> None:
        try:
            self._write(pkt)
        except RecordError:
            pass  # kept in self._error for the loop
        finally:
            self._written += 1

    def _write(self, pkt: MediaPacket) -> None:
        """Mux one packet; runs on the recorder's worker thread or the source's reader thread."""
        with self._lock:
            if not self._accepting or self._error is not None:
                return
            assert pkt.params is not None
            try:
                if self._segmenter.finalize_error is not None:
                    raise self._segmenter.finalize_error
                self._segmenter.write(pkt, pkt.params)
            except Exception as exc:
                if isinstance(exc, OSError):
                    # Disk full or an I/O error: the message says it all, a traceback per retry is noise.
                    log.error("%s: writing a segment failed: %s", self.camera_id, exc)
                else:
                    log.exception("%s: writing a segment failed", self.camera_id)
                part = self._segmenter.abandon()
                self._segmenter.finish("write_error")
                if part is not None:
                    self._salvage(part)
                self._accepting = False
                self._error = RecordError(f"{self.camera_id}: writing a segment failed: {exc}")
                raise self._error from exc

    def _salvage(self, part: str) -> None:
        """Keep the complete fragments of a segment whose write failed and drop its unfinished tail
        now, not at the next start: on a full disk every retry would otherwise leave another
        `.part` that retention never sees, and the space would never come back."""
        seg = self._segmenter
        try:
            recovery.recover_part(Path(part), seg.recordings_dir, seg.store, seg.at_rest)
        except Exception as exc:
            log.warning(
                "%s: salvaging %s failed, left for recovery: %s", self.camera_id, os.path.basename(part), exc
            )

    def _finish(self, reason: str) -> None:
        with self._lock:
            # After this, packets still in flight from the reader thread are ignored.
            self._accepting = False
            self._segmenter.finish(reason)

    async def _finalize(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            # On the worker thread, after every queued write and segment job: finish() closes and
            # indexes the last segment before it returns.
            fut = loop.run_in_executor(self._executor, self._finish, reason)
        except RuntimeError:  # executor already shut down: nothing was left open
            return
        try:
            await asyncio.wait_for(asyncio.shield(fut), self._finalize_timeout_s)
        except TimeoutError:
            # The worker thread is stuck (e.g. a hung disk). Leave it: the segment stays a `.part`
            # file that recovery turns into a segment at the next start.
            log.error(
                "%s: finalizing the segment took over %.1f s; left for recovery",
                self.camera_id,
                self._finalize_timeout_s,
            )
        except Exception:
            log.exception("%s: finalizing the segment failed; left for recovery", self.camera_id)


def _nothing() -> None:
    """Queued behind every pending write: awaiting it waits for them."""
