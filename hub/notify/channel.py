"""One notification channel's queue and worker: producers never wait, failures never spread.

`offer()` is synchronous and never blocks (the audit log, the camera event writer and the HTTP
handlers call it on the event loop); a full queue drops the newest item and counts it. One worker
task per channel sends items in order, retrying an item that failed for a passing reason (a broker
that is down, a push service that times out or answers 5xx/429) with capped exponential backoff, and
dropping it, counted, after `max_attempts`. A slow channel thus costs at most its own queue.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryLater(Exception):
    """The item may go through later (network error, timeout, 5xx, 429)."""


class GiveUp(Exception):
    """The item can never go through (the push service refused it for good)."""


class Superseded(Exception):
    """The item is moot (its subscription has ended since it was queued): not sent, not a loss."""


@dataclass
class ChannelStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0  # attempts that failed (each retry counts)
    dropped: int = 0  # items lost: queue full, attempts exhausted, or refused for good

    def as_json(self) -> dict[str, int]:
        return {"queued": self.queued, "sent": self.sent, "failed": self.failed, "dropped": self.dropped}


class Channel(ABC, Generic[T]):
    """Subclasses implement `send(item)`; the Notifier runs `run()` as a supervised task."""

    name = "channel"

    def __init__(
        self, queue_size: int, max_attempts: int, backoff_s: float = 1.0, backoff_max_s: float = 30.0
    ) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=queue_size)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self.stats = ChannelStats()
        self.idle = asyncio.Event()  # set whenever nothing is queued or being sent (tests wait on it)
        self.idle.set()

    def offer(self, item: T) -> bool:
        """Queue `item`; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning(
                "notify %s: queue full, notification dropped (%d so far)", self.name, self.stats.dropped
            )
            return False
        self.idle.clear()
        self.stats.queued = self._queue.qsize()
        return True

    @abstractmethod
    async def send(self, item: T) -> None:
        """Deliver one item: `RetryLater` retries it with backoff, `GiveUp` drops it, `Superseded` skips it."""

    async def run(self) -> None:
        while True:
            if self._queue.empty():
                self.idle.set()
            item = await self._queue.get()
            self.stats.queued = self._queue.qsize()
            await self._deliver(item)

    async def _deliver(self, item: T) -> None:
        delay = self._backoff_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self.send(item)
            except RetryLater as exc:
                self.stats.failed += 1
                log.info("notify %s: attempt %d failed: %s", self.name, attempt, exc)
                if attempt < self._max_attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._backoff_max_s)
                continue
            except Superseded:
                return
            except GiveUp as exc:
                self.stats.failed += 1
                self.stats.dropped += 1
                log.warning("notify %s: notification refused for good: %s", self.name, exc)
                return
            self.stats.sent += 1
            return
        self.stats.dropped += 1
        log.warning("notify %s: notification dropped after %d attempts", self.name, self._max_attempts)
