"""Refused calls that nobody authenticated are counted, not logged one by one (PROTOCOL §5, issue 12).

The audit log is append-only and kept forever, so an entry per refused call let any stranger grow it
without bound (3,000 junk calls were 3.7 MB in seconds; on a full card retention then deletes
footage to make room). Calls that proved nothing about who sent them — a bad or unknown signature,
a wrong pairing code or password, a replayed nonce or `jti`, a rate-limited call — are instead
grouped by (entry type, route, reason):

- the first of a group is written at once, as before, with `"count": 1` and its details;
- the rest are counted, and one entry of the same type with `"count": n`, `"route"`, `"code"`,
  `"first"` and `"last"` (RFC 3339) is written when the window (60 s by default) ends; while calls
  keep coming, each following window is counted the same way, and a window without any ends the
  group (the next refusal is an entry of its own again).

So a steady flood costs each group one entry per window, whatever its rate. Routes are the router's patterns (`POST /api/agency/v1/requests`), never the raw path, and
reasons are error codes: both come from small fixed sets, and the table is capped besides.
Refusals of authenticated callers (a trusted agency's malformed request, an owner's decision the
hub refuses) stay one entry each: they are accountable and bounded by the per-agency rate limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from camhub_protocol import rfc3339

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 60.0
MAX_GROUPS = 1000

Record = Callable[[str, str, dict[str, Any]], Awaitable[object]]


@dataclass
class _Group:
    opened: float  # monotonic
    suppressed: int = 0
    first: float = 0.0  # wall clock of the first suppressed call
    last: float = 0.0


class RejectionCounter:
    """Per-(type, route, code) windows over the audit log; owned by the consent service."""

    def __init__(self, record: Record, window_s: float = DEFAULT_WINDOW_S) -> None:
        self._record = record
        self.window_s = window_s
        self._groups: dict[tuple[str, str, str, str], _Group] = {}
        self._lock = asyncio.Lock()

    async def note(
        self, type_: str, route: str, code: str, data: dict[str, Any], actor: str = "unauthenticated"
    ) -> bool:
        """Count one refusal; True if it was written as its own entry. `actor` is "unauthenticated",
        or a verified agency whose calls are being rate limited (trusted agencies are few)."""
        key = (type_, route[:200], code[:64], actor[:200])
        mono = time.monotonic()
        async with self._lock:
            group = self._groups.get(key)
            if group is not None and mono - group.opened >= self.window_s:
                # The window is over (the flush loop had not come by yet).
                if group.suppressed:
                    await self._summarise(key, group)
                    group.opened = mono  # still flooding: this call opens the next counted window
                else:
                    del self._groups[key]
                    group = None
            if group is not None:
                now = time.time()
                if group.suppressed == 0:
                    group.first = now
                group.suppressed += 1
                group.last = now
                return False
            if len(self._groups) >= MAX_GROUPS:
                await self.flush(everything=True)
            self._groups[key] = _Group(opened=mono)
        await self._record(type_, key[3], {**data, "code": key[2], "route": key[1], "count": 1})
        return True

    async def _summarise(self, key: tuple[str, str, str, str], group: _Group) -> None:
        if group.suppressed == 0:
            return
        type_, route, code, actor = key
        await self._record(
            type_,
            actor,
            {
                "code": code,
                "route": route,
                "count": group.suppressed,
                "first": rfc3339.format(group.first),
                "last": rfc3339.format(group.last),
            },
        )
        group.suppressed = 0

    async def flush(self, everything: bool = False) -> int:
        """Write the summary of every window that has ended (all of them with `everything`);
        returns how many summaries were written. A group that counted calls stays, its next window
        counted too, so a steady flood costs one entry per window; a quiet window ends the group,
        and the next refusal is an entry of its own again."""
        mono = time.monotonic()
        written = 0
        for key, group in list(self._groups.items()):
            if everything or mono - group.opened >= self.window_s:
                flooding = group.suppressed > 0
                if flooding:
                    await self._summarise(key, group)
                    written += 1
                    group.opened = mono
                if everything or not flooding:
                    del self._groups[key]
        return written

    async def run(self) -> None:
        """The supervised loop: summarise ended windows a few times per window."""
        while True:
            await asyncio.sleep(max(0.5, self.window_s / 4))
            async with self._lock:
                await self.flush()

    async def close(self) -> None:
        """Write what is still counted (daemon shutdown): a count is never lost to a restart."""
        async with self._lock:
            try:
                await self.flush(everything=True)
            except Exception:
                log.exception("could not write the last rejection counts")
