"""Task ownership: crashed tasks restart, others keep running, stop leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from hub.supervisor import Supervisor, sleep_to_tick, stop_task


async def test_crashed_task_is_restarted_and_others_keep_running() -> None:
    sup = Supervisor(min_backoff=0.01, max_backoff=0.02)
    runs = 0
    crashed_twice = asyncio.Event()
    ticks = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("camera firmware bug")
        crashed_twice.set()
        await asyncio.Event().wait()

    async def steady() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    sup.spawn("camera:flaky", flaky)
    sup.spawn("camera:steady", steady)
    await asyncio.wait_for(crashed_twice.wait(), 10)
    assert sup.restarts["camera:flaky"] == 2
    assert ticks > 0
    assert sorted(sup.running()) == ["camera:flaky", "camera:steady"]
    await sup.stop()
    assert sup.running() == []
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_task_that_ignores_cancellation_is_abandoned_within_timeout() -> None:
    sup = Supervisor()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    sup.spawn("stubborn", stubborn, restart=False)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sup.stop(timeout=0.2)
    assert loop.time() - started < 2
    release.set()


async def test_stop_task_ends_the_task_and_keeps_the_callers_own_cancellation() -> None:
    await stop_task(None)
    forever = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    await stop_task(forever)
    assert forever.cancelled()

    # A task that takes a while to clean up; its owner is itself cancelled while waiting for it.
    async def slow_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)

    slow = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    owner = asyncio.create_task(stop_task(slow))
    await asyncio.sleep(0.05)
    owner.cancel()
    # The owner's cancellation is not swallowed as if it were the task's.
    with pytest.raises(asyncio.CancelledError):
        await owner
    await asyncio.wait([slow], timeout=5)
    assert slow.done()


async def test_periodic_loops_on_ticks_wake_in_the_same_turn_of_the_loop() -> None:
    """sleep_to_tick (issue 17): loops of 0.1 s and 0.2 s started 13 ms apart wake at the shared
    ticks in one turn of the event loop, not each on its own (a turn counted by a callback that
    reschedules itself, so the loop never sleeps and timers due apart land in different turns)."""
    loop = asyncio.get_running_loop()
    turns = 0

    def spin() -> None:
        nonlocal turns
        turns += 1
        if not done:
            loop.call_soon(spin)

    done = False
    woke: dict[float, list[tuple[str, int, float]]] = {}

    async def periodic(name: str, interval: float, times: int) -> None:
        for _ in range(times):
            await sleep_to_tick(interval)
            now = loop.time()
            woke.setdefault(round(now / 0.1), []).append((name, turns, now))

    loop.call_soon(spin)
    fast = asyncio.create_task(periodic("fast", 0.1, 8))
    await asyncio.sleep(0.013)
    slow = asyncio.create_task(periodic("slow", 0.2, 3))
    await asyncio.gather(fast, slow)
    done = True
    shared = [w for w in woke.values() if len(w) == 2]
    assert len(shared) == 3, woke  # each of slow's wake-ups fell on one of fast's ticks
    assert all(a[1] == b[1] for a, b in shared), shared  # ... in the same turn of the loop
    for wakes in woke.values():
        for _, _, now in wakes:
            assert (now + 0.05) % 0.1 - 0.05 < 0.03, wakes  # at a tick (late by scheduling only)
