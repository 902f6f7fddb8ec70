"""Doorbell presses from the camera's Server-Sent Events stream.

The camera publishes its events as `text/event-stream` (WHATWG HTML §9.2, "Server-sent events").
`DoorbellListener` keeps one aiohttp GET open, parses the stream (§9.2.6), and calls `on_press`
for each press. It reconnects with capped exponential backoff and jitter, sends `Last-Event-ID`
(§9.2.4) so a camera that keeps history does not replay what was seen, and honours the server's
`retry:` field as the minimum delay. The camera's own motion notices are logged and ignored: the
hub detects motion itself, within the owner's zones and masks.

A message is a press when its event type is `press`/`doorbell`/`ring`, or when its data is a JSON
object whose `type` (or `event`/`kind`) is one of those.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from hub.supervisor import stop_task

log = logging.getLogger(__name__)

PRESS_TYPES = frozenset({"press", "doorbell", "ring"})
# Bound on one event's data and on one unterminated line from the camera.
MAX_EVENT_CHARS = 64 * 1024


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str
    id: str | None


class SseParser:
    """Line-by-line event stream parser (WHATWG HTML §9.2.6). Feed decoded lines without EOL."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None

    def reset(self) -> None:
        """A new connection starts with empty buffers; last event id and retry persist (§9.2.4)."""
        self._event, self._data = "", []

    def feed(self, line: str) -> SseMessage | None:
        if line == "":
            # Dispatch (§9.2.6): no data means no event; the type defaults to "message".
            if not self._data:
                self._event = ""
                return None
            msg = SseMessage(self._event or "message", "\n".join(self._data), self.last_event_id)
            self._event, self._data = "", []
            return msg
        if line.startswith(":"):
            return None  # comment, used as keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            # A press is a few bytes: a camera that never ends its event cannot grow our memory.
            if sum(map(len, self._data)) + len(value) <= MAX_EVENT_CHARS:
                self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            # isascii: str.isdigit() is also true for "²" and other digits int() refuses.
            if value.isascii() and value.isdigit() and len(value) <= 9:
                self.retry_ms = int(value)
        return None


def is_press(msg: SseMessage) -> bool:
    if msg.event in PRESS_TYPES:
        return True
    try:
        body = json.loads(msg.data)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    # isinstance: a list or object member is unhashable, and `in` a frozenset would raise TypeError.
    return any(
        isinstance(body.get(key), str) and body[key] in PRESS_TYPES for key in ("type", "event", "kind")
    )


PressCallback = Callable[[float, SseMessage], Awaitable[None]]


class DoorbellListener:
    """Follow one camera's event stream; `await on_press(received_at, message)` for each press."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        on_press: PressCallback,
        *,
        connect_timeout_s: float = 10.0,
        idle_timeout_s: float = 120.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        auth: aiohttp.BasicAuth | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.url = url
        self._on_press = on_press
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=idle_timeout_s)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._auth = auth
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        """Set while the stream is open (tests wait on it instead of sleeping)."""
        self.reconnects = 0
        self.last_error: str | None = None
        self._parser = SseParser()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("DoorbellListener already started")
        self._task = asyncio.create_task(self._run(), name=f"camhub-doorbell-{self.camera_id}")

    async def stop(self) -> None:
        """Cancel the stream task and wait for it. Idempotent."""
        task, self._task = self._task, None
        await stop_task(task)
        self.connected.clear()

    async def _run(self) -> None:
        failures = 0
        async with aiohttp.ClientSession(timeout=self._timeout, auth=self._auth) as session:
            while True:
                try:
                    await self._follow(session)
                    self.last_error = "stream ended"
                except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("doorbell %s: %s", self.camera_id, self.last_error)
                except Exception as exc:
                    # Not a network error: log it loudly, but a camera's presses must keep coming.
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("doorbell %s: unexpected error", self.camera_id)
                # Backoff grows only while connecting fails; a stream that was open resets it.
                failures = 1 if self.connected.is_set() else failures + 1
                self.connected.clear()
                initial, cap = self._backoff
                delay = min(cap, initial * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1.0)
                if self._parser.retry_ms is not None:
                    delay = max(delay, self._parser.retry_ms / 1000)
                self.reconnects += 1
                await asyncio.sleep(delay)

    async def _follow(self, session: aiohttp.ClientSession) -> None:
        """Read one connection until it ends."""
        parser = self._parser
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if parser.last_event_id is not None:
            headers["Last-Event-ID"] = parser.last_event_id
        async with session.get(self.url, headers=headers) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if resp.status != 200 or not ctype.startswith("text/event-stream"):
                # §9.2.3: a non-200 or wrong content type fails the connection.
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=f"not an event stream ({ctype})"
                )
            parser.reset()
            self.connected.set()
            log.info("doorbell %s: following %s", self.camera_id, self.url)
            pending = b""
            after_cr = False
            skipping = False
            async for chunk in resp.content.iter_any():
                # Lines end in CRLF, LF or CR (§9.2.5); a CRLF may be split across two chunks.
                if after_cr and chunk.startswith(b"\n"):
                    chunk = chunk[1:]
                data = pending + chunk
                after_cr = data.endswith(b"\r")
                lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
                pending = lines.pop()
                if skipping and lines:
                    lines, skipping = lines[1:], False  # the end of an over-long line: dropped
                if skipping or len(pending) > MAX_EVENT_CHARS:
                    pending, skipping = b"", True  # an endless line is no event of ours: not buffered
                for raw in lines:
                    msg = parser.feed(raw.decode("utf-8"))
                    if msg is not None:
                        await self._dispatch(msg)

    async def _dispatch(self, msg: SseMessage) -> None:
        if not is_press(msg):
            log.debug("doorbell %s: ignoring %s event", self.camera_id, msg.event)
            return
        received_at = time.time()
        try:
            await self._on_press(received_at, msg)
        except Exception:
            # One bad event must not stop the listener.
            log.exception("doorbell %s: press handler failed", self.camera_id)
