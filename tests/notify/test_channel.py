"""The channel queue (hub/notify/channel.py): `offer()` never waits, a full queue drops and counts,
a passing failure is retried with backoff, a permanent one and exhausted attempts are dropped."""

from __future__ import annotations

import asyncio
import contextlib

from hub.notify.channel import Channel, GiveUp, RetryLater


class Scripted(Channel[str]):
    """Fails each item as its name says: `retry2` fails twice, `never` always, `refused` for good."""

    def __init__(self) -> None:
        super().__init__(queue_size=3, max_attempts=3, backoff_s=0.01, backoff_max_s=0.02)
        self.attempts: dict[str, int] = {}
        self.gate = asyncio.Event()

    async def send(self, item: str) -> None:
        await self.gate.wait()
        n = self.attempts[item] = self.attempts.get(item, 0) + 1
        if item == "refused":
            raise GiveUp("no")
        if item == "never" or (item == "retry2" and n <= 2):
            raise RetryLater("later")


async def test_full_queue_drops_retries_and_gives_up() -> None:
    ch = Scripted()
    task = asyncio.create_task(ch.run())
    try:
        await asyncio.sleep(0)
        # The worker holds the first item (the gate is shut); three more fill the queue, the rest drop.
        assert ch.offer("ok")
        await asyncio.sleep(0.01)
        results = [ch.offer(x) for x in ("retry2", "never", "refused", "extra1", "extra2")]
        assert results == [True, True, True, False, False] and ch.stats.dropped == 2
        dropped_full = ch.stats.dropped
        ch.gate.set()
        await asyncio.wait_for(ch.idle.wait(), 5)
        assert ch.attempts == {"ok": 1, "retry2": 3, "never": 3, "refused": 1}
        assert ch.stats.sent == 2
        assert ch.stats.dropped == dropped_full + 2  # `never` after 3 attempts, `refused` at once
        assert ch.stats.failed == 2 + 3 + 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
