"""Task ownership: every long-running task in the daemon is started here and stopped here.

A task that crashes is logged and restarted with capped exponential backoff and jitter, so one
camera's bug never takes the daemon (or another camera) down. `stop()` cancels everything in
reverse start order and waits, so shutdown leaves no "Task was destroyed but it is pending" warnings.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# A task that ran this long before crashing is considered healthy again: backoff starts over.
HEALTHY_AFTER_SECONDS = 60.0


class Supervisor:
    def __init__(self, min_backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self.restarts: dict[str, int] = {}
        self._stopping = False

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        """Run `factory()` as task `name`; if it raises, log and (when `restart`) run it again."""
        if self._stopping:
            raise RuntimeError("supervisor is stopping")
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"task {name} is already running")
        self._tasks[name] = asyncio.create_task(self._guard(name, factory, restart), name=name)

    def running(self) -> list[str]:
        return [name for name, task in self._tasks.items() if not task.done()]

    async def _guard(self, name: str, factory: Callable[[], Awaitable[None]], restart: bool) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            started = loop.time()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s crashed", name)
                if not restart:
                    return
            if loop.time() - started > HEALTHY_AFTER_SECONDS:
                attempt = 0
            # Full jitter in the upper half: restarts of many cameras after a shared outage spread out.
            delay = min(self._max_backoff, self._min_backoff * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning("restarting task %s in %.1f s (restart #%d)", name, delay, self.restarts[name])
            await asyncio.sleep(delay)

    async def cancel(self, name: str, timeout: float = 3.0) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            await _cancel_and_wait([task], timeout)

    async def stop(self, timeout: float = 3.0) -> None:
        """Cancel every task (newest first) and wait up to `timeout` seconds for them to finish."""
        self._stopping = True
        tasks = list(reversed(self._tasks.values()))
        self._tasks.clear()
        await _cancel_and_wait(tasks, timeout)


async def _cancel_and_wait(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.error("task %s did not stop within %.1f s; abandoning it", task.get_name(), timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed while stopping: %r", task.get_name(), task.exception())


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task a component owns and wait until it has ended (nothing to do for None).

    `with suppress(CancelledError): await task` would also swallow a cancellation of the *caller*
    arriving during the wait, and its shutdown would carry on as if nothing had happened; this
    re-raises that one and absorbs only the task's own.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


async def sleep_to_tick(interval: float) -> None:
    """Sleep until the next multiple of `interval` on the event loop's clock.

    For periodic loops: those whose intervals divide one another then wake in the same turn of the
    event loop (their timers are due at the very same instant) instead of each on its own. The
    camera status and the notifier's camera watch (2 s and then 1 s) drifted a few ms apart and woke
    the loop 1.5 times a second, at ~0.1 ms of CPU each on a small box (issue 17); now they share
    one wake-up every 2 s.
    """
    loop = asyncio.get_running_loop()
    now = loop.time()
    tick = (now // interval + 1) * interval
    if tick - now < interval * 0.01:
        tick += interval  # woken a hair before this tick (timers may run early by the clock's resolution)
    woken = loop.create_future()
    timer = loop.call_at(tick, lambda: woken.done() or woken.set_result(None))
    try:
        await woken
    finally:
        timer.cancel()
