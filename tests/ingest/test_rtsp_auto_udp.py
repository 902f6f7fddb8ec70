"""`rtsp_transport = "auto"` against a UDP-only camera whose server is still busy right after the
refusal (the issue-16 interop flake, hub/ingest/rtsp.py "Transport").

gst-rtsp-server (inside many cameras) builds one pipeline per stream: the DESCRIBE of the TCP attempt
sets it up, the 461 to its SETUP makes FFmpeg hang up, and the UDP attempt's DESCRIBE, a few ms
later, meets the teardown and gets 503 — measured in roughly 1 of 3 opens on an idle machine, more
under load. That is timing, so here a small RTSP proxy in front of the simulator plays that camera
deterministically: it refuses every interleaved (TCP) SETUP with 461 and answers the next `busy`
DESCRIBEs after a refusal with 503. Everything else goes to the simulator as sent; RTP over UDP flows
from the simulator straight to the client (127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from firmware_sim.camera import SimCamera
from hub.config import parse
from hub.ingest.camera import CameraRuntime
from hub.ingest.relay import PacketRelay
from hub.ingest.rtsp import RtspSource
from hub.ingest.source import SourceOpenError
from hub.ingest.whip import WhipIngest
from hub.store import Store


class BusyAfterRefusal:
    """An RTSP proxy: 461 to TCP SETUPs, then 503 to the next `busy` DESCRIBEs (any connection)."""

    def __init__(self, upstream_port: int, busy: int) -> None:
        self.upstream_port = upstream_port
        self.busy = busy
        self.owed = 0  # 503s still to give after the latest refusal
        self.refused = 0
        self.answered_503 = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> BusyAfterRefusal:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._copy(up_reader, writer))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method = lines[0].split(" ", 1)[0]
                cseq = headers.get("cseq", "0")
                if method == "SETUP" and "RTP/AVP/TCP" in headers.get("transport", ""):
                    self.refused += 1
                    self.owed = self.busy
                    writer.write(f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n".encode())
                    await writer.drain()
                    continue
                if method == "DESCRIBE" and self.owed > 0:
                    self.owed -= 1
                    self.answered_503 += 1
                    writer.write(f"RTSP/1.0 503 Service Unavailable\r\nCSeq: {cseq}\r\n\r\n".encode())
                    await writer.drain()
                    continue
                up_writer.write(head + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await back
            for w in (up_writer, writer):
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


@pytest.fixture
async def cam() -> AsyncIterator[SimCamera]:
    async with SimCamera("cam1", width=320, height=240, fps=15, gop=15, control_port=None) as c:
        yield c


def _port(cam: SimCamera) -> int:
    return int(cam.rtsp_url().split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _via(cam: SimCamera, proxy: BusyAfterRefusal) -> str:
    """The camera's URL (credentials included) with the proxy's port."""
    return cam.rtsp_url().replace(f":{_port(cam)}/", f":{proxy.port}/")


async def test_auto_asks_again_when_the_server_is_busy_after_the_refusal(cam: SimCamera) -> None:
    async with BusyAfterRefusal(_port(cam), busy=2) as proxy:
        src = RtspSource("cam1", _via(cam, proxy), transport="auto", read_timeout_s=3.0)
        try:
            params = await src.open()
            pkt = await anext(aiter(src.packets()))
        finally:
            await src.close()
    assert params.codec == "h264" and pkt.is_keyframe
    assert (proxy.refused, proxy.answered_503) == (1, 2)
    assert (src.transport_refused, src.transport_used) == ("tcp", "udp")


async def test_the_camera_keeps_udp_from_the_refusal_on_even_if_that_open_failed(
    cam: SimCamera, tmp_path: object
) -> None:
    # Busier than the open's retries: this open fails. The camera loop must still start its next
    # reconnect with UDP — going back to TCP would provoke the refusal and the busy server again.
    async with BusyAfterRefusal(_port(cam), busy=100) as proxy:
        src = RtspSource("cam1", _via(cam, proxy), transport="auto", read_timeout_s=3.0)
        try:
            with pytest.raises(SourceOpenError):
                await src.open()
        finally:
            await src.close()
    assert src.transport_refused == "tcp" and src.transport_used is None
    cfg = parse({"hub": {"data_dir": str(tmp_path)}, "cameras": [
        {"id": "cam1", "url": "rtsp://127.0.0.1:1/cam1/main", "rtsp_transport": "auto"}]})  # fmt: skip
    store = await Store.open(cfg.hub.data_dir / "camhub.sqlite")
    try:
        runtime = CameraRuntime(
            cfg.cameras[0], store, cfg.segments_dir, 2.0, PacketRelay("cam1"), WhipIngest(cfg)
        )
        runtime._learn_transport(src)
        assert runtime.transport == "udp"
    finally:
        await store.close()
