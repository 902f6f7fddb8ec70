"""Access units of one camera stream and the bounded fan-out to its viewers.

A :class:`Feed` is one stream of one camera (``main`` or ``sub``). The camera's frame clock
publishes an :class:`AccessUnit` per frame; every viewer (RTSP session, WHIP publisher) owns a
:class:`Subscriber` with a bounded queue. A viewer that falls behind never slows the camera
or other viewers: its queue is emptied and it resumes at the next IDR; after
``MAX_OVERRUNS`` such skips it is dropped (it receives ``None``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

from firmware_sim import rtp

MAX_OVERRUNS = 5


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One frame as sent: NAL units (with the SEI stamp) and its timing."""

    seq: int  # per-camera global frame counter (same value in the SEI stamp)
    pts90: int  # 90 kHz presentation time since the camera started (RFC 6184 §5.1 clock)
    capture_s: float  # wall-clock capture time in s since the epoch (clock-jump faults shift it)
    idr: bool
    width: int
    height: int
    nals: tuple[bytes, ...]
    payloads: tuple[bytes, ...] = field(default=())  # RTP payloads, packetized once for all viewers


class Subscriber:
    """One viewer's bounded queue of access units; ``None`` means "you were dropped"."""

    def __init__(self, feed: Feed, maxsize: int) -> None:
        self.feed = feed
        self.queue: asyncio.Queue[AccessUnit | None] = asyncio.Queue(maxsize)
        self.need_idr = True
        self.overruns = 0
        self.dropped = False

    def offer(self, au: AccessUnit) -> None:
        if self.dropped or (self.need_idr and not au.idr):
            return
        self.need_idr = False
        try:
            self.queue.put_nowait(au)
        except asyncio.QueueFull:
            # The viewer is behind by a whole queue: skip to the next IDR, or give up on it.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.overruns += 1
            if self.overruns >= MAX_OVERRUNS:
                self.drop()
            else:
                self.need_idr = True

    def drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def close(self) -> None:
        self.feed.subscribers.discard(self)


class Feed:
    """One stream (``main``/``sub``) of a camera."""

    def __init__(self, camera: str, name: str) -> None:
        self.camera = camera
        self.name = name
        self.subscribers: set[Subscriber] = set()
        self.gop_cache: list[AccessUnit] = []  # from the latest IDR on: where new viewers start
        self.sps = b""
        self.pps = b""
        self.width = 0
        self.height = 0

    def subscribe(self, maxsize: int, from_cache: bool = True) -> Subscriber:
        """Start a viewer; with ``from_cache`` it begins at the cached IDR (no wait for the next one)."""
        sub = Subscriber(self, max(maxsize, len(self.gop_cache) + 2))
        if from_cache:
            for au in self.gop_cache:
                sub.offer(au)
        self.subscribers.add(sub)
        return sub

    def publish(self, au: AccessUnit, deliver: bool = True) -> None:
        if not au.payloads:
            au = dataclasses.replace(au, payloads=tuple(rtp.payloads(au.nals)))
        if au.idr:
            self.gop_cache = [au]
        elif self.gop_cache:
            self.gop_cache.append(au)
        if not deliver:
            for sub in self.subscribers:
                sub.need_idr = True
            return
        for sub in list(self.subscribers):
            sub.offer(au)

    def drop_all(self) -> None:
        for sub in list(self.subscribers):
            sub.drop()
