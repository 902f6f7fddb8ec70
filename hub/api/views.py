"""Who watched what (PROTOCOL §5, issue 19): every view of footage on the box is an audit entry.

    view.live.start / view.live.end   a live view (WebRTC or MJPEG) opened / closed, with its seconds
    view.playback                     a recorded segment played, once per segment per browser session
    view.snapshot                     a live still, once per camera per browser session per 60 s
    view.export                       `camhub export` on the box (written by hub/cli.py)

The owner's page reads them back through the audit log (`GET /api/v1/owner/audit/entries?types=…`),
so each is covered by the signed checkpoints like every other entry. Repeats are folded here, in
memory and bounded: a <video> element fetches one segment with many Range requests, and the live
tile's fallback polls a still every second; neither should grow the log by the request.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

from hub.api.session import PRINCIPAL
from hub.services import SERVICES

log = logging.getLogger(__name__)

VIEW_TYPES = ("view.live.start", "view.live.end", "view.playback", "view.snapshot", "view.export")
SNAPSHOT_WINDOW_S = 60.0
MAX_REMEMBERED = 4096  # (session, what) pairs kept for folding repeats; the oldest are forgotten


class ViewLog:
    """Writes view entries, folding repeats per browser session (bounded memory)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _first(self, key: tuple[str, str], window_s: float | None, now: float) -> bool:
        last = self._seen.get(key)
        if last is not None and (window_s is None or now - last < window_s):
            return False
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return True

    async def record(
        self,
        request: web.Request,
        type_: str,
        data: dict[str, Any],
        *,
        fold: tuple[str, str] | None = None,
        window_s: float | None = None,
    ) -> None:
        """Audit one view by the request's session (owner or member); with `fold`, only the first of a run."""
        if fold is not None and not self._first(fold, window_s, time.monotonic()):
            return
        services = request.app[SERVICES]
        principal = request.get(PRINCIPAL)
        member = principal.member if principal is not None else None
        actor = "owner" if member is None else f"member:{member.id}"
        # A household member by id and by the name they had then (PROTOCOL §1.2, §5).
        entry = {**data, "who": actor} if member is None else {**data, "who": actor, "name": member.name}
        if services.consent is None:
            log.info("%s %s", type_, entry)
            return
        await services.consent.record(type_, actor, entry)


VIEW_LOG = web.AppKey("view_log", ViewLog)


def view_log(request: web.Request) -> ViewLog:
    """The app's view log (`make_app` makes it; apps built without it get a fresh one per call)."""
    return request.app.get(VIEW_LOG) or ViewLog()
