"""`EventRecorder`: one camera's events, from detection to a row in SQLite and a JPEG on disk.

It owns a `MotionRunner` (decode thread, when the camera has a stream to analyse), a
`DoorbellListener` (when the camera has an event stream), an `OnvifEventListener` (when the
camera has an ONVIF service: its Visitor events are presses, its motion events are recorded as
`motion` with source "camera", beside the hub's own) and one writer task that turns motion
transitions into rows in order. `stop()` stops them in reverse: the runner first (closing an
ongoing motion event at its last motion), then the listener, then the writer once it has written
everything queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hub.events.doorbell import DoorbellListener, SseMessage
from hub.events.motion import MotionConfig, MotionRunner, Transition
from hub.events.thumbnails import thumbnail_relpath, write_thumbnail
from hub.onvif.events import OnvifEvent, OnvifEventListener
from hub.record.sealed import AtRest, SealedError
from hub.store import Store
from hub.store import events as q

log = logging.getLogger(__name__)


class EventRecorder:
    """Per-camera event service with explicit `start()`/`stop()`.

    `motion_url` is the stream to analyse (the sub-stream, or the main stream, which is then
    downscaled); `events_url` is the camera's Server-Sent Events URL. Either may be None.
    `on_event` is called (on the event loop) with each event once its row is written: a press at
    once, a motion event when it starts and again when it ends.
    """

    def __init__(
        self,
        camera_id: str,
        store: Store,
        data_dir: Path,
        *,
        motion_url: str | None = None,
        motion: MotionConfig | None = None,
        events_url: str | None = None,
        press_thumbnail_max_age_s: float = 10.0,
        on_event: Callable[[q.Event], None] | None = None,
        runner_options: dict[str, object] | None = None,
        doorbell_options: dict[str, object] | None = None,
        at_rest: AtRest | None = None,
        onvif_url: str | None = None,
        onvif_credentials: tuple[str | None, str | None] = (None, None),
        onvif_options: dict[str, object] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._store = store
        self._data_dir = data_dir
        self._at_rest = at_rest  # thumbnails show faces: sealed like footage when encryption is on
        self._on_event = on_event
        self._press_max_age = press_thumbnail_max_age_s
        self._queue: asyncio.Queue[Transition | None] = asyncio.Queue()
        self._open: dict[int, q.Event] = {}
        self._writer: asyncio.Task[None] | None = None
        self.runner: MotionRunner | None = None
        if motion_url is not None:
            self.runner = MotionRunner(
                camera_id,
                motion_url,
                motion or MotionConfig(),
                self._queue.put_nowait,
                **(runner_options or {}),  # type: ignore[arg-type]
            )
        self.doorbell: DoorbellListener | None = None
        if events_url is not None:
            self.doorbell = DoorbellListener(
                camera_id,
                events_url,
                self._on_press,
                **(doorbell_options or {}),  # type: ignore[arg-type]
            )
        self.onvif: OnvifEventListener | None = None
        self._camera_motion: q.Event | None = None  # the camera's own motion event, while it lasts
        if onvif_url is not None:
            self.onvif = OnvifEventListener(
                camera_id,
                onvif_url,
                *onvif_credentials,
                self._on_onvif,
                **(onvif_options or {}),  # type: ignore[arg-type]
            )

    async def start(self) -> None:
        if self._writer is not None:
            raise RuntimeError(f"EventRecorder {self.camera_id} already started")
        closed = await self._store.run(q.close_dangling, self.camera_id)
        if closed:
            log.warning("events %s: closed %d event(s) left open by a previous run", self.camera_id, closed)
        self._writer = asyncio.create_task(self._write_loop(), name=f"camhub-events-{self.camera_id}")
        try:
            if self.runner is not None:
                await self.runner.start()
            if self.doorbell is not None:
                await self.doorbell.start()
            if self.onvif is not None:
                await self.onvif.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop detection, then write what is queued. Idempotent."""
        if self.runner is not None:
            await self.runner.stop()
        if self.doorbell is not None:
            await self.doorbell.stop()
        if self.onvif is not None:
            await self.onvif.stop()
        if self._camera_motion is not None:
            # The camera's motion was still on: it ends where the hub stopped following it.
            await self._end_camera_motion(time.time())
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._queue.put_nowait(None)
        try:
            await writer
        except asyncio.CancelledError:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            raise

    async def _write_loop(self) -> None:
        while True:
            transition = await self._queue.get()
            if transition is None:
                return
            try:
                await self._write(transition)
            except Exception:
                # A failed write (disk full, DB error) loses this event, not the camera's events.
                log.exception("events %s: could not record motion %s", self.camera_id, transition.kind)

    async def _write(self, transition: Transition) -> None:
        motion = transition.event
        key = id(motion)
        if transition.kind == "start":
            event = q.Event(
                id=uuid.uuid4().hex,
                camera_id=self.camera_id,
                kind="motion",
                start_at=motion.start,
                end_at=None,
                score=motion.score,
                thumbnail=None,
                created_at=time.time(),
            )
            await self._store.run(q.insert_event, event)
            self._open[key] = event
            log.info("events %s: motion started (%s)", self.camera_id, event.id)
            self._notify(event)
            return
        event = self._open.pop(key, None)
        if event is None:
            log.warning("events %s: motion end without a recorded start", self.camera_id)
            return
        end_at = motion.end if motion.end is not None else time.time()
        thumbnail = None
        if motion.best_frame is not None:
            thumbnail = await self._save_thumbnail(event.id, event.start_at, motion.best_frame)
        await self._store.run(q.end_event, event.id, end_at, motion.score, thumbnail)
        ended = await self._store.run(q.get_event, event.id)
        log.info("events %s: motion ended (%s, score %.3f)", self.camera_id, event.id, motion.score)
        if ended is not None:
            self._notify(ended)

    async def _on_press(self, received_at: float, msg: SseMessage) -> None:
        await self._record_press(received_at)

    async def _on_onvif(self, received_at: float, event: OnvifEvent) -> None:
        if event.kind == "press":
            if event.active:  # Visitor State=false is the button's release, not a second press
                await self._record_press(received_at)
            return
        if event.active and self._camera_motion is None:
            motion = q.Event(
                id=uuid.uuid4().hex,
                camera_id=self.camera_id,
                kind="motion",
                start_at=received_at,
                end_at=None,
                score=1.0,
                thumbnail=None,
                created_at=time.time(),
                source="camera",
            )
            await self._store.run(q.insert_event, motion)
            self._camera_motion = motion
            log.info("events %s: camera reports motion (%s, %s)", self.camera_id, motion.id, event.topic)
            self._notify(motion)
        elif not event.active and self._camera_motion is not None:
            await self._end_camera_motion(received_at)

    async def _end_camera_motion(self, end_at: float) -> None:
        motion, self._camera_motion = self._camera_motion, None
        if motion is None:
            return
        thumbnail = None
        latest = self.runner.latest if self.runner is not None else None
        if latest is not None and abs(end_at - latest.time) <= self._press_max_age:
            thumbnail = await self._save_thumbnail(
                motion.id, motion.start_at, await asyncio.to_thread(latest.image)
            )
        await self._store.run(q.end_event, motion.id, max(end_at, motion.start_at), 1.0, thumbnail)
        log.info("events %s: camera motion ended (%s)", self.camera_id, motion.id)
        ended = await self._store.run(q.get_event, motion.id)
        if ended is not None:
            self._notify(ended)

    async def _record_press(self, received_at: float) -> None:
        event_id = uuid.uuid4().hex
        thumbnail = None
        latest = self.runner.latest if self.runner is not None else None
        if latest is not None and abs(received_at - latest.time) <= self._press_max_age:
            thumbnail = await self._save_thumbnail(
                event_id, received_at, await asyncio.to_thread(latest.image)
            )
        event = q.Event(
            id=event_id,
            camera_id=self.camera_id,
            kind="press",
            start_at=received_at,
            end_at=received_at,
            score=1.0,
            thumbnail=thumbnail,
            created_at=time.time(),
            source="camera",
        )
        await self._store.run(q.insert_event, event)
        log.info("events %s: doorbell press (%s)", self.camera_id, event_id)
        self._notify(event)

    async def _save_thumbnail(self, event_id: str, start_at: float, image: np.ndarray) -> str | None:
        relpath = thumbnail_relpath(self.camera_id, event_id, start_at)
        try:
            await asyncio.to_thread(write_thumbnail, self._data_dir, relpath, image, at_rest=self._at_rest)
        except (OSError, ValueError, SealedError):
            log.exception("events %s: could not write thumbnail %s", self.camera_id, relpath)
            return None
        return relpath

    def _notify(self, event: q.Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("events %s: on_event callback failed", self.camera_id)
