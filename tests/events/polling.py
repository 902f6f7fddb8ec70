"""Waiting on state that has no event to await: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> None:
    """Return as soon as `predicate()` is true; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(interval_s)
