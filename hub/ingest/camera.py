"""The cameras: one supervised task per camera from source to disk and live relay, plus retention.

Data flow per camera (STYLE.md: the layout mirrors it)::

    RtspSource / WhipSource ──► Recorder (fMP4 segments, index; muxed on the reader thread)  hub/record
                                   └─(on_packet)─► PacketRelay (live viewers, WHEP)    hub/ingest/relay
    sub-stream / SSE ─────────────────────────► EventRecorder (motion, presses)    hub/events

Each camera's loop reconnects with capped exponential backoff and jitter; a failure is written to
the camera's status row and the footage shows a gap (the recorder records it), never papered over.
While it backs off, an RTSP camera is probed every `PROBE_INTERVAL_S` with an unauthenticated RTSP
OPTIONS (RFC 2326 §10.1; a bare TCP connect for rtsps://): once a probe has seen it down and a later
one sees it answer, the wait ends there, so a camera that comes back is recorded within ~1 s of its
return however long the backoff had grown (issue 16: up to ~30 s were lost after it was back). A
camera that answers every probe but refuses the stream (a wrong password) keeps its full backoff.
Errors and statuses never carry the camera's credentials (hub/redact.py).
The loops run under the daemon's Supervisor, so a crash (a bug, not a camera error) is logged and
the loop restarted without touching other cameras.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import NamedTuple

from hub.config import CameraConfig, Config
from hub.events import motion as motion_mod
from hub.events.service import EventRecorder
from hub.ingest.relay import PacketRelay, RelayHub
from hub.ingest.rtsp import RtspSource
from hub.ingest.rtsp_client import ReaderUnsupported
from hub.ingest.source import PacketSource, SourceError
from hub.ingest.whip import WhipIngest
from hub.record import recovery, retention
from hub.record.recorder import Recorder, RecordError
from hub.record.sealed import AtRest
from hub.redact import redact
from hub.store import Store
from hub.store import cameras as status_q
from hub.store import events as events_q
from hub.store import segments as segments_q
from hub.supervisor import Supervisor, sleep_to_tick

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.0
# A connection that streamed this long was healthy: the next failure starts the backoff over.
HEALTHY_AFTER_S = 30.0
STATUS_INTERVAL_S = 2.0
# A status row is written when its camera comes or goes, and its last-frame time this often while it
# streams. Writing every camera every tick was a transaction on the card every 2 s that nothing read
# (the cameras page reads the runtimes live, `Cameras.status`), and the largest share of the
# idle event loop's and database thread's CPU (issue 17).
STATUS_SAVE_S = 60.0
RETENTION_INTERVAL_S = 30.0

# Audits a batch of deletions: (type, actor, data) -> awaitable.
AuditFn = Callable[[str, str, dict[str, object]], Awaitable[object]]
HoldsFn = Callable[[], list[tuple[str, float, float]]]


@dataclass
class Backoff:
    """Capped exponential backoff with jitter (upper half), reset after a healthy connection."""

    attempt: int = 0

    def next_delay(self, healthy: bool) -> float:
        if healthy:
            self.attempt = 0
        delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2**self.attempt) * random.uniform(0.5, 1.0)
        self.attempt += 1
        return delay


class CameraRuntime:
    """One camera: its source loop, recorder, relay and status."""

    def __init__(
        self,
        camera: CameraConfig,
        store: Store,
        recordings_dir: Path,
        segment_seconds: float,
        relay: PacketRelay,
        whip: WhipIngest,
        at_rest: AtRest | None = None,
    ) -> None:
        self.camera = camera
        self._store = store
        self.relay = relay
        self._whip = whip
        self.recorder = (
            Recorder(camera.id, recordings_dir, store, segment_s=segment_seconds, at_rest=at_rest)
            if camera.record
            else None
        )
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected = False
        self._stopping = False
        # Set while the relay has viewers: only then does the source hand packets to the loop.
        self._demand = threading.Event()
        relay.set_demand_listener(lambda wanted: self._demand.set() if wanted else self._demand.clear())
        self._current: PacketSource | None = None
        # Called when writing failed (e.g. the disk is full): Cameras wakes retention to free space.
        self.on_record_error: Callable[[], None] | None = None
        # "auto" learns which RTP transport the camera takes (TCP, or UDP after a 461) and keeps it.
        self.transport = camera.rtsp_transport
        # Who reads RTP over TCP; "camhub" hands a camera to FFmpeg for good once its stream needs it.
        self.reader = camera.rtsp_reader

    def _source(self) -> PacketSource:
        if self.camera.whip:
            return self._whip.source(self.camera.id, read_timeout_s=self.camera.read_timeout_s)
        url = self.camera.authenticated_url()
        assert url is not None
        return RtspSource(
            self.camera.id,
            url,
            transport=self.transport,
            reader=self.reader,
            read_timeout_s=self.camera.read_timeout_s,
            audio=self.camera.audio,
        )

    def _learn_transport(self, source: PacketSource) -> None:
        """Under "auto", keep UDP once the camera refused TCP with 461 — also when the UDP attempt
        that followed failed: starting the next reconnect with TCP again only repeats the refusal and
        the server's teardown race behind it (hub/ingest/rtsp.py, Transport)."""
        used = getattr(source, "transport_used", None)
        refused = getattr(source, "transport_refused", None)
        if self.transport == "auto" and (used == "udp" or refused == "tcp"):
            log.info(
                "camera %s: it refused RTP over TCP (461); using UDP from now on%s",
                self.camera.id,
                "" if used == "udp" else " (the UDP attempt failed; the next reconnect tries it again)",
            )
            self.transport = "udp"

    async def run(self) -> None:
        """The supervised loop: connect, stream until it fails, back off, reconnect. Ends on stop()."""
        backoff = Backoff()
        while not self._stopping:
            source = self._source()
            source.set_demand(self._demand)
            self._current = source
            started = time.monotonic()
            error: str | None = None
            self.connected = True
            try:
                if self.recorder is not None:
                    await self.recorder.run(source, on_packet=self.relay.publish)
                    if self._stopping:
                        return
                    error = "stream ended"
                else:
                    error = await _relay_only(source, self.relay)
            except (SourceError, RecordError) as exc:
                error = redact(f"{exc.code}: {exc}")
                if isinstance(exc, ReaderUnsupported) and self.reader != "ffmpeg":
                    log.warning("camera %s: reading it with FFmpeg from now on: %s", self.camera.id, error)
                    self.reader = "ffmpeg"
                    backoff.attempt = 0  # not the camera's fault: the shortest backoff
                if isinstance(exc, RecordError) and self.on_record_error is not None:
                    self.on_record_error()
            finally:
                self.connected = False
                self._learn_transport(source)
            # The next run's first packets may not follow the cached GOP (a rebooted camera can restart
            # its timestamps higher, which the relay cannot detect): viewers resume at a keyframe.
            self.relay.mark_break()
            healthy = time.monotonic() - started > HEALTHY_AFTER_S
            self.reconnects += 1
            self.last_error = error
            try:
                await self._store.run(
                    partial(status_q.upsert, online=False, last_error=error, reconnected=True), self.camera.id
                )
            except sqlite3.OperationalError as exc:
                # The database is locked by another process past busy_timeout: the status loop writes
                # the row on a later tick; the camera must go on reconnecting, not crash.
                log.warning("camera %s: status not saved: %s", self.camera.id, exc)
            delay = backoff.next_delay(healthy)
            log.warning("camera %s: %s; reconnecting in %.1f s", self.camera.id, error, delay)
            await self._back_off(delay)

    async def _back_off(self, delay: float) -> None:
        """Wait `delay`, ending early once the camera is seen coming back (see the module docstring)."""
        url = None if self.camera.whip else self.camera.url
        if url is None:
            await asyncio.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        seen_down = False
        while not self._stopping:
            started = loop.time()
            up = await probe(url, PROBE_TIMEOUT_S)
            if not up:
                seen_down = True
            elif seen_down:
                log.info("camera %s: answers again; reconnecting now", self.camera.id)
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, max(0.0, PROBE_INTERVAL_S - (loop.time() - started))))

    @property
    def last_frame_at(self) -> float | None:
        # The relay sees packets only while someone watches; the source's reader thread sees them all.
        times = [t for t in (self.relay.last_packet_at, self._current and self._current.last_arrival) if t]
        return max(times) if times else None

    def online(self, now: float) -> bool:
        last = self.last_frame_at
        return self.connected and last is not None and now - last < 5.0

    async def stop(self) -> None:
        """Finalize the open segment (the recorder's stop is bounded), then let the loop end."""
        self._stopping = True
        if self.recorder is not None:
            await self.recorder.stop()


async def probe(url: str, timeout_s: float) -> bool:
    """Does the camera answer? An RTSP OPTIONS without credentials (RFC 2326 §10.1): any status
    below 500 (401 included) means its server is up; a refused or silent connection, or a 5xx
    (a camera still booting answers 503), means not yet. rtsps:// only gets a TCP connect."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (322 if parts.scheme == "rtsps" else 554)
    except ValueError:
        return False
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            if parts.scheme == "rtsps":
                return True
            bare = parts._replace(netloc=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}").geturl()
            writer.write(f"OPTIONS {bare} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: camhub-probe\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
        fields = status.split()
        return (
            len(fields) >= 2
            and fields[0].startswith(b"RTSP/")
            and fields[1].isdigit()
            and int(fields[1]) < 500
        )
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _relay_only(source: PacketSource, relay: PacketRelay) -> str:
    """Live relay only (record = false): read the source so viewers get packets, write nothing."""
    try:
        await source.open()
        async for packet in source.packets():
            relay.publish(packet)
        return "stream ended"
    finally:
        await source.close()


def motion_settings(camera: CameraConfig) -> motion_mod.MotionConfig:
    m = camera.motion
    return motion_mod.MotionConfig(zones=m.zones, masks=m.masks, min_area=m.min_area)


class CameraState(NamedTuple):
    """A running camera as the hub sees it now (`Cameras.status`)."""

    name: str
    online: bool
    last_frame_at: float | None


class Cameras:
    """Every configured camera, plus the loops that serve them all (status, retention)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        supervisor: Supervisor,
        *,
        holds: HoldsFn,
        audit: AuditFn,
        at_rest: AtRest | None = None,
        footage_lock: asyncio.Lock | None = None,
    ) -> None:
        """`footage_lock`: held by whoever reads held footage (the consent service's build_lock);
        retention deletes under it (retention.enforce)."""
        self._config = config
        self._at_rest = at_rest or AtRest()  # segments and thumbnails sealed at rest (record/sealed.py)
        self._store = store
        self._supervisor = supervisor
        self._holds = holds
        self._footage_lock = footage_lock
        self._audit = audit
        self.relays = RelayHub()
        self.whip = WhipIngest(config)
        self.runtimes: dict[str, CameraRuntime] = {}
        self.events: dict[str, EventRecorder] = {}
        # Called on the event loop with each recorded event (a press; a motion start and end): the
        # owner's notifications (hub/notify/) listen here. Listeners must not block.
        self.event_listeners: list[Callable[[events_q.Event], None]] = []
        # Passed to each camera's OnvifEventListener (tests shorten the subscription and the backoff).
        self.onvif_options: dict[str, object] | None = None
        self._retention_wake = asyncio.Event()

    async def start(self) -> None:
        """Recover what a crash left, then start every camera. Recovery first: a recording must not
        begin in a folder whose `.part` files are still being repaired."""
        cfg = self._config
        outcomes = await asyncio.to_thread(
            recovery.recover_sync, cfg.segments_dir, self._store, self._at_rest
        )
        for outcome in outcomes:
            log.warning("recovery: %s", outcome)
        await self._store.run(status_q.mark_all_offline)
        for cam in cfg.cameras:
            await self.add(cam)
        self._supervisor.spawn("cameras:status", self._status_loop)
        self._supervisor.spawn("retention", self._retention_loop)

    async def add(self, cam: CameraConfig) -> None:
        """Start one camera: its relay, supervised source loop and events. Also used while the hub
        runs, for a camera the owner adds in the web UI (hub/settings.py)."""
        if cam.id in self.runtimes:
            raise ValueError(f"camera {cam.id} is already running")
        cfg = self._config
        relay = self.relays.add(cam.id)
        runtime = CameraRuntime(
            cam, self._store, cfg.segments_dir, cfg.storage.segment_seconds, relay, self.whip, self._at_rest
        )
        runtime.on_record_error = self._retention_wake.set
        self.runtimes[cam.id] = runtime
        self._supervisor.spawn(f"camera:{cam.id}", runtime.run)
        await self._start_events(cam)

    async def remove(self, camera_id: str) -> None:
        """Stop one camera while the hub runs: finalize its open segment, end its loop, events and
        live viewers. Its footage stays on disk and ages out under the default retention."""
        runtime = self.runtimes.pop(camera_id, None)
        if runtime is None:
            return
        events = self.events.pop(camera_id, None)
        if events is not None:
            await asyncio.gather(events.stop(), return_exceptions=True)
        await runtime.stop()
        await self._supervisor.cancel(f"camera:{camera_id}")
        runtime.relay.close()
        await self._store.run(partial(status_q.upsert, online=False), camera_id)

    def reconfigure(self, config: Config) -> None:
        """Use the effective config (the file plus the owner's settings): retention reads it on its
        next pass. Cameras themselves change only through add() and remove()."""
        self._config = config

    async def _start_events(self, cam: CameraConfig) -> None:
        motion_url = None
        if cam.motion.enabled and not cam.whip:
            motion_url = cam.authenticated_url(cam.sub_url) if cam.sub_url else cam.authenticated_url()
        if motion_url is None and cam.events_url is None and cam.onvif is None:
            return
        recorder = EventRecorder(
            cam.id,
            self._store,
            self._config.hub.data_dir,
            motion_url=motion_url,
            motion=motion_settings(cam),
            events_url=cam.events_url,
            at_rest=self._at_rest,
            on_event=self._on_event,
            runner_options={"rtsp_transport": cam.rtsp_transport, "read_timeout_s": cam.read_timeout_s},
            onvif_url=cam.onvif,
            onvif_credentials=(cam.username, cam.password),
            onvif_options=self.onvif_options,
        )
        try:
            await recorder.start()
        except Exception:
            # Events are a convenience; a camera without them still records.
            log.exception("camera %s: events did not start", cam.id)
            return
        self.events[cam.id] = recorder

    def _on_event(self, event: events_q.Event) -> None:
        for listener in list(self.event_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("camera %s: event listener failed", event.camera_id)

    def status(self) -> dict[str, CameraState]:
        """camera id -> its state now, for every running camera: fresher than the status rows, which
        are written only as they change (STATUS_SAVE_S)."""
        now = time.time()
        return {
            cam_id: CameraState(rt.camera.name or cam_id, rt.online(now), rt.last_frame_at)
            for cam_id, rt in self.runtimes.items()
        }

    async def stop(self) -> None:
        """Stop events, finalize every recording (in parallel, each bounded), end the camera loops."""
        await asyncio.gather(*(ev.stop() for ev in self.events.values()), return_exceptions=True)
        self.events.clear()
        await self.whip.close()
        await asyncio.gather(*(rt.stop() for rt in self.runtimes.values()), return_exceptions=True)
        for cam_id in self.runtimes:
            await self._supervisor.cancel(f"camera:{cam_id}")
        for name in ("cameras:status", "retention"):
            await self._supervisor.cancel(name)
        self.relays.close()
        with contextlib.suppress(Exception):
            await self._store.run(status_q.mark_all_offline)

    async def _status_loop(self) -> None:
        saved: dict[str, tuple[bool, float]] = {}  # camera id -> (online, when) as last written
        while True:
            now = time.time()
            # A copy: the owner may add or remove a camera while this loop awaits the store.
            live = []
            for cam_id, rt in list(self.runtimes.items()):
                online = rt.online(now)
                last = saved.get(cam_id)
                if last is None or last[0] != online or now - last[1] >= STATUS_SAVE_S:
                    live.append((cam_id, online, rt.last_frame_at))
            if live:
                try:
                    await self._store.run(status_q.upsert_live, live)
                except sqlite3.OperationalError as exc:
                    # Another process holds the write lock past busy_timeout: the next tick writes it.
                    log.warning("camera status not saved: %s", exc)
                else:
                    saved.update((cam_id, (online, now)) for cam_id, online, _ in live)
            for gone in saved.keys() - self.runtimes.keys():
                del saved[gone]  # removed: written offline by remove(); if added again, written anew
            await sleep_to_tick(STATUS_INTERVAL_S)  # with the notifier's camera watch, one wake-up

    def retention_policy(self) -> retention.RetentionPolicy:
        cfg = self._config
        day = 86400.0
        return retention.RetentionPolicy(
            max_age_s={c.id: c.retention_days * day for c in cfg.cameras if c.retention_days is not None},
            default_max_age_s=cfg.storage.max_age_days * day,
            quota_bytes=cfg.storage.quota_bytes,
            min_free_percent=cfg.storage.min_free_percent or None,
        )

    async def enforce_retention(self) -> int:
        """One retention pass; every deletion is audited, one entry per batch. Returns segments deleted."""

        async def audit_batch(deleted: list[segments_q.Segment]) -> None:
            # Audited as each batch goes, so a pass cut short (crash, stop) leaves no unaudited deletion.
            await self._audit(
                "retention.deleted",
                "hub",
                {
                    "segments": len(deleted),
                    "bytes": sum(s.bytes for s in deleted),
                    "cameras": sorted({s.camera_id for s in deleted}),
                    "from": rfc3339(min(s.start_at for s in deleted)),
                    "to": rfc3339(max(s.end_at for s in deleted)),
                },
            )

        # Holds are read again by `enforce` before each batch, so pass the function, not a snapshot.
        deleted = await retention.enforce(
            self._store,
            self._config.segments_dir,
            self.retention_policy(),
            lambda: holds_now(self._holds),
            on_batch=audit_batch,
            lock=self._footage_lock,
        )
        return len(deleted)

    async def _retention_loop(self) -> None:
        while True:
            self._retention_wake.clear()
            try:
                await self.enforce_retention()
            except Exception:
                log.exception("retention pass failed; retrying in %.0f s", RETENTION_INTERVAL_S)
            # A failed segment write (disk full) wakes this early: free space now, not in 30 s.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retention_wake.wait(), RETENTION_INTERVAL_S)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def holds_now(holds: HoldsFn) -> list[retention.Hold]:
    return [retention.Hold(cam, start, end) for cam, start, end in holds()]
