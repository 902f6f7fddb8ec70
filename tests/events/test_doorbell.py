"""Doorbell presses over Server-Sent Events, against a small aiohttp SSE server in the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest
from aiohttp import web

from hub.events import EventRecorder
from hub.events.doorbell import SseMessage, SseParser, is_press
from hub.store import Store
from hub.store import events as q
from tests.events.polling import until
from tests.events.scenes import encode_walk

FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}


@dataclass
class SseServer:
    url: str = ""
    status: int = 200
    byte_by_byte: bool = False
    last_event_ids: list[str | None] = field(default_factory=list)
    outbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.last_event_ids.append(request.headers.get("Last-Event-ID"))
        if self.status != 200:
            return web.Response(status=self.status, text="nope")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": hello\n\n")
        while (item := await self.outbox.get()) is not None:
            if self.byte_by_byte:
                for i in range(len(item)):
                    await resp.write(item[i : i + 1])
            else:
                await resp.write(item)
        return resp  # None in the outbox: drop the connection


@pytest.fixture
async def sse() -> AsyncIterator[SseServer]:
    server = SseServer()
    app = web.Application()
    app.router.add_get("/cameras/door/events", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/cameras/door/events"
    try:
        yield server
    finally:
        server.outbox.put_nowait(None)
        await runner.cleanup()


def sim_event(type_: str, ident: str | None = None, **extra: object) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    data = json.dumps({"type": type_, "camera": "door", **extra})
    return f"{head}event: {type_}\ndata: {data}\n\n".encode()


async def wait_connected(recorder: EventRecorder) -> None:
    assert recorder.doorbell is not None
    await asyncio.wait_for(recorder.doorbell.connected.wait(), 10)


async def test_press_becomes_a_press_event_and_motion_notices_are_ignored(
    tmp_path: Path, store: Store, sse: SseServer
) -> None:
    seen: asyncio.Queue[q.Event] = asyncio.Queue()
    recorder = EventRecorder(
        "door", store, tmp_path, events_url=sse.url, on_event=seen.put_nowait, doorbell_options=FAST
    )
    await recorder.start()
    try:
        await wait_connected(recorder)
        sse.outbox.put_nowait(sim_event("motion", state="start"))
        sse.outbox.put_nowait(sim_event("doorbell", "7"))
        event = await asyncio.wait_for(seen.get(), 10)
    finally:
        await recorder.stop()
    assert event.kind == "press" and event.camera_id == "door"
    assert event.end_at == event.start_at and event.thumbnail is None  # no stream analysed
    assert await store.run(q.list_events) == [event]


async def test_reconnects_after_drop_with_last_event_id(tmp_path: Path, store: Store, sse: SseServer) -> None:
    seen: asyncio.Queue[q.Event] = asyncio.Queue()
    recorder = EventRecorder(
        "door", store, tmp_path, events_url=sse.url, on_event=seen.put_nowait, doorbell_options=FAST
    )
    await recorder.start()
    try:
        await wait_connected(recorder)
        sse.outbox.put_nowait(sim_event("doorbell", "41"))
        await asyncio.wait_for(seen.get(), 10)
        sse.outbox.put_nowait(None)  # the camera drops the connection
        await until(lambda: len(sse.last_event_ids) >= 2, 10)
        await wait_connected(recorder)
        sse.outbox.put_nowait(sim_event("doorbell", "42"))
        await asyncio.wait_for(seen.get(), 10)
    finally:
        await recorder.stop()
    assert sse.last_event_ids[:2] == [None, "41"]
    assert [e.kind for e in await store.run(q.list_events)] == ["press", "press"]


async def test_stream_split_into_single_bytes_with_crlf(tmp_path: Path, store: Store, sse: SseServer) -> None:
    sse.byte_by_byte = True
    seen: asyncio.Queue[q.Event] = asyncio.Queue()
    recorder = EventRecorder(
        "door", store, tmp_path, events_url=sse.url, on_event=seen.put_nowait, doorbell_options=FAST
    )
    await recorder.start()
    try:
        await wait_connected(recorder)
        sse.outbox.put_nowait(b'event: doorbell\r\ndata: {"type": "doorbell"}\r\n\r\n')
        event = await asyncio.wait_for(seen.get(), 10)
    finally:
        await recorder.stop()
    assert event.kind == "press"
    assert len(await store.run(q.list_events)) == 1


async def test_http_error_is_retried_not_fatal(tmp_path: Path, store: Store, sse: SseServer) -> None:
    sse.status = 503
    recorder = EventRecorder("door", store, tmp_path, events_url=sse.url, doorbell_options=FAST)
    await recorder.start()
    try:
        await until(lambda: len(sse.last_event_ids) >= 3, 10)
        assert recorder.doorbell is not None and "503" in (recorder.doorbell.last_error or "")
        sse.status = 200  # the camera comes back
        await wait_connected(recorder)
    finally:
        await recorder.stop()


async def test_press_gets_thumbnail_from_latest_analysed_frame(
    tmp_path: Path, store: Store, sse: SseServer
) -> None:
    video = tmp_path / "walk.mp4"
    await asyncio.to_thread(encode_walk, video)
    seen: asyncio.Queue[q.Event] = asyncio.Queue()
    recorder = EventRecorder(
        "door",
        store,
        tmp_path / "data",
        motion_url=str(video),
        events_url=sse.url,
        on_event=seen.put_nowait,
        runner_options={"reconnect": False},
        doorbell_options=FAST,
    )
    await recorder.start()
    try:
        assert recorder.runner is not None
        await asyncio.wait_for(recorder.runner.wait_finished(), 60)
        await wait_connected(recorder)
        sse.outbox.put_nowait(sim_event("doorbell"))
        while (event := await asyncio.wait_for(seen.get(), 10)).kind != "press":
            pass
    finally:
        await recorder.stop()
    assert event.thumbnail is not None
    image = cv2.imread(str(tmp_path / "data" / event.thumbnail))
    assert image is not None and image.shape == (360, 640, 3)


def test_parser_follows_the_event_stream_rules() -> None:
    p = SseParser()
    lines = [": comment", "retry: 2500", "id: 9", "event: doorbell", "data: a", "data:b", ""]
    out = [p.feed(line) for line in lines]
    assert out[:-1] == [None] * 6
    assert out[-1] == SseMessage("doorbell", "a\nb", "9")
    assert p.retry_ms == 2500 and p.last_event_id == "9"
    assert p.feed("") is None  # no data: nothing dispatched
    assert p.feed("data: x") is None and p.feed("") == SseMessage("message", "x", "9")


@pytest.mark.parametrize(
    ("msg", "press"),
    [
        (SseMessage("doorbell", "{}", None), True),
        (SseMessage("press", "", None), True),
        (SseMessage("message", '{"type": "press"}', None), True),
        (SseMessage("motion", '{"type": "motion"}', None), False),
        (SseMessage("message", "not json", None), False),
        (SseMessage("message", "[1]", None), False),
    ],
)
def test_is_press(msg: SseMessage, press: bool) -> None:
    assert is_press(msg) is press


async def test_endless_line_is_not_buffered_and_the_next_press_arrives(
    tmp_path: Path, store: Store, sse: SseServer
) -> None:
    """A camera (or anything answering at its events_url) that sends megabytes without a line end:
    the listener drops the line as it goes instead of buffering it, and the next press still counts."""
    seen: asyncio.Queue[q.Event] = asyncio.Queue()
    recorder = EventRecorder(
        "door", store, tmp_path, events_url=sse.url, on_event=seen.put_nowait, doorbell_options=FAST
    )
    await recorder.start()
    try:
        await wait_connected(recorder)
        for _ in range(32):  # 4 MiB in one line
            sse.outbox.put_nowait(b"x" * 131072)
        # The end of the over-long line is dropped with it, even though it looks like an event field.
        sse.outbox.put_nowait(b"event: doorbell\n" + b"data: {}\n\n" + sim_event("doorbell", "9"))
        event = await asyncio.wait_for(seen.get(), 10)
    finally:
        await recorder.stop()
    assert event.kind == "press"
    assert len(await store.run(q.list_events)) == 1


def test_event_data_is_bounded() -> None:
    parser = SseParser()
    for _ in range(100):
        assert parser.feed("data: " + "y" * 10_000) is None
    msg = parser.feed("")
    assert msg is not None and len(msg.data) <= 64 * 1024 + 100
