"""Per-camera packet fan-out: one camera task publishes, any number of viewers subscribe.

The camera's source task (RTSP or WHIP) calls `PacketRelay.publish()` for every packet it reads, on
the event loop, and never waits: `publish` only appends to bounded queues. Each subscriber (a WebRTC
viewer, the owner's live view, a benchmark) owns a `RelaySubscription` with its own bounded queue.

- **Start at a keyframe.** The relay caches the current GOP (the latest keyframe and every packet
  after it, bounded in packets and bytes). A new subscriber's queue starts with that cache, so a
  decoder can start at once instead of waiting up to a GOP for the next IDR.
- **A slow viewer never slows anyone.** When a subscriber's queue is full, its backlog is dropped and
  it resumes at the next keyframe (`skips` counts how often). The publisher, the recorder and the
  other viewers are untouched: nothing here awaits.
- **Packets only while someone watches.** The camera's source hands packets to the loop only while
  the relay has subscribers (`set_demand_listener` → `PacketSource.set_demand`); meanwhile the
  source's reader thread keeps the GOP in progress and hands it over first, so a new viewer still
  starts at a keyframe within a frame period. Nobody watching costs the recorder nothing.
- **Clean ends.** `subscription.close()` unsubscribes; `relay.close()` ends every subscription
  (their `get()` raises `RelayClosed`, iteration just stops).

Packets are `hub.ingest.source.MediaPacket` (Annex B access units, pts/dts in `time_base`, keyframe
flag, codec parameters), exactly what the recorder gets, so every consumer sees the same bytes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable

from hub.ingest.source import CodecParams, MediaPacket

log = logging.getLogger(__name__)

DEFAULT_QUEUE_PACKETS = 120
# A camera GOP is 1-4 s; at 30 fps and 1080p that is ≤ 120 packets and a few MiB. Beyond these bounds
# the cache is abandoned (new viewers then wait for the next keyframe) rather than grown.
MAX_GOP_PACKETS = 600
MAX_GOP_BYTES = 32 * 1024 * 1024


class RelayClosed(Exception):
    """The relay (or this subscription) was closed: no more packets will come."""


class RelaySubscription:
    """One viewer's bounded queue of packets, starting at a keyframe."""

    def __init__(self, relay: PacketRelay, maxsize: int, audio: bool = False, video: bool = True) -> None:
        self.relay = relay
        self.maxsize = maxsize
        self.audio = audio  # also the camera's audio packets (when it records audio); video only if not
        # False: the camera's audio packets only (a live session's sound track), from now on, no
        # keyframe to wait for; a full queue drops its oldest packet.
        self.video = video
        self._queue: collections.deque[MediaPacket] = collections.deque()
        self._wakeup = asyncio.Event()
        self._need_keyframe = True
        self._closed = False
        self.skips = 0  # times the backlog was dropped to resume at the next keyframe
        self.delivered = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def _offer(self, packet: MediaPacket) -> None:
        if self._closed or (packet.audio and not self.audio):
            return
        if not self.video:
            if not packet.audio:
                return
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.skips += 1
            self._queue.append(packet)
            self._wakeup.set()
            return
        if self._need_keyframe:
            if not packet.is_keyframe:
                return
            self._need_keyframe = False
        if len(self._queue) >= self.maxsize:
            # Behind by a whole queue: drop the backlog and resume at the next keyframe, so the
            # decoder never sees a P-frame whose reference was dropped.
            self._queue.clear()
            self.skips += 1
            if not packet.is_keyframe:
                self._need_keyframe = True
                return
        self._queue.append(packet)
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def get(self) -> MediaPacket:
        """The next packet; raises RelayClosed once the relay or this subscription is closed."""
        while True:
            if self._closed:
                # Queued packets are abandoned: a closed viewer (e.g. a cut livestream) gets nothing more.
                self._queue.clear()
                raise RelayClosed(self.relay.camera_id)
            if self._queue:
                self.delivered += 1
                return self._queue.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> MediaPacket | None:
        """The next packet if one is queued, else None; raises RelayClosed once closed."""
        if self._closed:
            self._queue.clear()
            raise RelayClosed(self.relay.camera_id)
        if not self._queue:
            return None
        self.delivered += 1
        return self._queue.popleft()

    async def __aiter__(self) -> AsyncIterator[MediaPacket]:
        while True:
            try:
                yield await self.get()
            except RelayClosed:
                return

    def close(self) -> None:
        """Unsubscribe; idempotent. A pending `get()` raises RelayClosed."""
        self.relay._unsubscribe(self)
        self._queue.clear()
        self._end()


class PacketRelay:
    """The live fan-out of one camera. Publish and subscribe on the same event loop."""

    def __init__(
        self,
        camera_id: str,
        *,
        queue_packets: int = DEFAULT_QUEUE_PACKETS,
        max_gop_packets: int = MAX_GOP_PACKETS,
        max_gop_bytes: int = MAX_GOP_BYTES,
    ) -> None:
        if queue_packets < 2:
            raise ValueError("queue_packets must be at least 2")
        self.camera_id = camera_id
        self.queue_packets = queue_packets
        self._max_gop_packets = max_gop_packets
        self._max_gop_bytes = max_gop_bytes
        self._gop: list[MediaPacket] = []
        self._gop_bytes = 0
        self._subscribers: set[RelaySubscription] = set()
        self._closed = False
        self._changed = asyncio.Event()
        self.params: CodecParams | None = None
        self._last_dts: int | None = None
        self.published = 0
        self.last_packet_at: float | None = None  # wall clock (packet.arrival) of the newest packet
        self._demand_listener: Callable[[bool], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def cached_packets(self) -> int:
        return len(self._gop)

    def publish(self, packet: MediaPacket) -> None:
        """Hand one packet to every subscriber. Never blocks; ignored after close()."""
        if self._closed:
            return
        self.published += 1
        self.last_packet_at = packet.arrival
        if packet.audio:
            # Audio follows the video's GOP (so a new viewer hears from the cached keyframe on); the
            # timeline checks below are about video timestamps and do not apply.
            if self._gop:
                self._gop.append(packet)
            for sub in tuple(self._subscribers):
                sub._offer(packet)
            self._changed.set()
            return
        if packet.params is not None:
            self.params = packet.params
        restarted = self._last_dts is not None and packet.dts <= self._last_dts
        if (packet.discontinuity or restarted) and not packet.is_keyframe:
            # The timeline broke mid-GOP (a flagged jump, or dts going backwards: within one source
            # run dts only increases, so a new run began): what follows references frames no viewer has.
            self._resync()
        self._last_dts = packet.dts
        self._cache(packet)
        for sub in tuple(self._subscribers):
            sub._offer(packet)
        self._changed.set()

    def _cache(self, packet: MediaPacket) -> None:
        if packet.is_keyframe:
            self._gop = [packet]
            self._gop_bytes = len(packet.data)
            return
        if not self._gop:
            return
        if packet.discontinuity:
            # The timeline broke (camera reboot): packets before it are no reference for what follows.
            self._gop, self._gop_bytes = [], 0
            return
        self._gop_bytes += len(packet.data)
        self._gop.append(packet)
        if len(self._gop) > self._max_gop_packets or self._gop_bytes > self._max_gop_bytes:
            log.info("%s: GOP longer than the cache bound; new viewers wait for a keyframe", self.camera_id)
            self._gop, self._gop_bytes = [], 0

    def set_demand_listener(self, listener: Callable[[bool], None]) -> None:
        """Tell `listener(True)` when the first viewer subscribes and `listener(False)` when the last
        one leaves (called now with the current state). The camera uses it so its source hands
        packets to the loop only while someone watches (`PacketSource.set_demand`)."""
        self._demand_listener = listener
        listener(bool(self._subscribers))

    def _demand_changed(self, wanted: bool) -> None:
        if not wanted:
            # Packets stop coming: the cached GOP goes stale. The source keeps the GOP in progress
            # and hands it over first when a viewer comes back, which starts the cache afresh.
            self._gop, self._gop_bytes = [], 0
        if self._demand_listener is not None:
            self._demand_listener(wanted)

    def _unsubscribe(self, sub: RelaySubscription) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            if not self._subscribers:
                self._demand_changed(False)

    def mark_break(self) -> None:
        """The camera's source reconnected: forget the cached GOP, viewers resume at the next keyframe.

        Subscriptions stay open across a reconnect (a viewer sees a pause, not an end). A new run
        whose timestamps restart lower is detected without this call; one that starts higher is not.
        """
        self._resync()
        self._last_dts = None

    def _resync(self) -> None:
        self._gop, self._gop_bytes = [], 0
        for sub in self._subscribers:
            sub._need_keyframe = True

    def subscribe(
        self, queue_packets: int | None = None, *, audio: bool = False, video: bool = True
    ) -> RelaySubscription:
        """A new viewer starting at the cached keyframe (or the next one if none is cached); with
        `audio`, it also gets the camera's audio packets (if the camera records audio). With
        `video=False` (and `audio`) it gets the audio only, from the next packet on: sound is not
        replayed from the cache (a burst of past sound would only delay the live one)."""
        if self._closed:
            raise RelayClosed(self.camera_id)
        if not video and not audio:
            raise ValueError("a subscription needs audio or video")
        size = max(queue_packets or self.queue_packets, 2)
        # The cached GOP must fit, or the viewer would skip its own first keyframe at once.
        sub = RelaySubscription(self, max(size, len(self._gop) + 2), audio, video)
        for packet in self._gop if video else ():
            sub._offer(packet)
        self._subscribers.add(sub)
        if len(self._subscribers) == 1:
            self._demand_changed(True)
        return sub

    async def wait_for_packet(self) -> None:
        """Return after the next publish (or close); for callers that poll relay state."""
        self._changed.clear()
        await self._changed.wait()

    def close(self) -> None:
        """End every subscription and refuse new ones; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._gop, self._gop_bytes = [], 0
        had_viewers = bool(self._subscribers)
        for sub in tuple(self._subscribers):
            sub._end()
        self._subscribers.clear()
        if had_viewers and self._demand_listener is not None:
            self._demand_listener(False)
        self._changed.set()


class RelayHub:
    """Every camera's relay, by camera id: the daemon creates one per configured camera."""

    def __init__(self) -> None:
        self._relays: dict[str, PacketRelay] = {}

    def add(self, camera_id: str, **kwargs: int) -> PacketRelay:
        """The relay of `camera_id`, created on first use."""
        relay = self._relays.get(camera_id)
        if relay is None or relay.closed:
            relay = self._relays[camera_id] = PacketRelay(camera_id, **kwargs)
        return relay

    def get(self, camera_id: str) -> PacketRelay | None:
        relay = self._relays.get(camera_id)
        return None if relay is None or relay.closed else relay

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self._relays

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()
        self._relays.clear()
