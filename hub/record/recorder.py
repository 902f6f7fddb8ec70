"""One camera's recorder: consumes a `PacketSource` and writes segments through a `Segmenter`.

The recorder owns one worker thread (`camhub-rec-<camera>`, a single-worker executor) where every
blocking call — muxing, fsync, hashing, queueing index rows — happens, in packet order. The event
loop only moves packets from the source's queue to that thread.

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
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hub.ingest.source import MediaPacket, PacketSource, SourceError
from hub.record.segmenter import Segmenter
from hub.store import Store

log = logging.getLogger(__name__)


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
    ) -> None:
        self.camera_id = camera_id
        self._segmenter = Segmenter(
            camera_id, Path(recordings_dir), store, segment_s=segment_s, max_drift_s=max_drift_s
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"camhub-rec-{camera_id}")
        self._finalize_timeout_s = finalize_timeout_s
        self._inner: asyncio.Task[None] | None = None
        self._stopping = False
        self._online = False
        self._last_error: str | None = None

    @property
    def stats(self) -> RecorderStats:
        s = self._segmenter.stats
        return RecorderStats(
            self.camera_id, self._online, s.segments, s.bytes, s.packets, s.dropped_packets, s.gaps,
            s.last_frame_at, self._last_error,
        )

    async def run(self, source: PacketSource) -> None:
        """Open `source` and record it until it fails (raises), ends (raises) or `stop()` (returns)."""
        if self._stopping:
            await source.close()
            return
        if self._inner is not None:
            raise RuntimeError(f"{self.camera_id}: recorder is already running")
        # The work runs in an inner task so that stop() can cancel it without cancelling our caller.
        inner = asyncio.create_task(self._consume(source), name=f"camhub-record-{self.camera_id}")
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

    async def _consume(self, source: PacketSource) -> None:
        loop = asyncio.get_running_loop()
        reason = "stopped"
        try:
            await source.open()
            self._online = True
            async for pkt in source.packets():
                await loop.run_in_executor(self._executor, self._write, pkt, source)
            reason = "ended"
        except SourceError as exc:
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
            # Finalize and close concurrently: the segment must be safe within the timeout even if
            # the source takes its read timeout to let go.
            await asyncio.gather(self._finalize(reason), source.close())

    def _write(self, pkt: MediaPacket, source: PacketSource) -> None:
        try:
            self._segmenter.write(pkt, pkt.params or source.params)
        except Exception as exc:
            log.exception("%s: writing a segment failed", self.camera_id)
            self._segmenter.abandon()
            self._segmenter.finish("write_error")
            raise RecordError(f"{self.camera_id}: writing a segment failed: {exc}") from exc

    async def _finalize(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor, self._segmenter.finish, reason)
        except RuntimeError:  # executor already shut down: nothing was left open
            return
        try:
            await asyncio.wait_for(asyncio.shield(fut), self._finalize_timeout_s)
        except TimeoutError:
            # The worker thread is stuck (e.g. a hung disk). Leave it: the segment stays a `.part`
            # file that recovery turns into a segment at the next start.
            log.error("%s: finalizing the segment took over %.1f s; left for recovery",
                      self.camera_id, self._finalize_timeout_s)
        except Exception:
            log.exception("%s: finalizing the segment failed; left for recovery", self.camera_id)
