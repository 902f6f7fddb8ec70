"""Test-side clients for the simulator: a raw RTSP client and PyAV/ffprobe readers.

The raw client is deliberately independent of firmware_sim.rtsp (it shares only the RTP
depacketizer) so protocol tests check the wire, not the implementation against itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import av

from firmware_sim import h264, rtp, stamp

FFPROBE = "ffprobe"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class RawRtsp:
    """A small RTSP/1.0 client over one TCP connection, with Digest auth."""

    host: str
    port: int
    user: str = "admin"
    password: str = "camhub"
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    cseq: int = 0
    session: str | None = None
    challenge: dict[str, str] = field(default_factory=dict)
    ssrc: str | None = None
    interleaved: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    async def connect(cls, url: str, **kw: str) -> RawRtsp:
        parts = urlsplit(url)
        client = cls(parts.hostname or "127.0.0.1", parts.port or 554, **kw)
        client.reader, client.writer = await asyncio.open_connection(client.host, client.port)
        return client

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass

    def _auth(self, method: str, uri: str) -> str | None:
        if not self.challenge:
            return None
        realm, nonce = self.challenge["realm"], self.challenge["nonce"]
        ha1 = hashlib.md5(f"{self.user}:{realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"'
        )

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self, method: str, uri: str, headers: dict[str, str] | None = None, auth: bool = True
    ) -> Response:
        """Send a request (retrying once after a 401 challenge) and return the response."""
        for _ in range(2):
            self.cseq += 1
            lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}"]
            if self.session and "Session" not in (headers or {}):
                lines.append(f"Session: {self.session}")
            if auth and (value := self._auth(method, uri)):
                lines.append(f"Authorization: {value}")
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())
            resp = await self.read_response()
            if resp.status == 401 and auth and not self.challenge:
                self.challenge = dict(re.findall(r'(\w+)="([^"]*)"', resp.headers["www-authenticate"]))
                continue
            return resp
        return resp

    async def read_response(self) -> Response:
        assert self.reader is not None
        while True:
            first = await self.reader.readexactly(1)
            if first == b"$":
                head = await self.reader.readexactly(3)
                data = await self.reader.readexactly(struct.unpack(">H", head[1:])[0])
                self.interleaved.append((head[0], data))
                continue
            break
        status_line = first + await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while line := (await self.reader.readuntil(b"\r\n")).strip():
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if "session" in headers:
            self.session = headers["session"].split(";")[0]
        if "ssrc=" in headers.get("transport", ""):
            self.ssrc = headers["transport"].split("ssrc=")[1].split(";")[0]
        return Response(status, headers, body)

    async def play(self, url: str) -> Response:
        """DESCRIBE, SETUP (TCP interleaved) and PLAY ``url``; return the PLAY response."""
        resp = await self.request("DESCRIBE", url, {"Accept": "application/sdp"})
        assert resp.status == 200, resp
        resp = await self.request(
            "SETUP", url + "/trackID=0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        assert resp.status == 200, resp
        resp = await self.request("PLAY", url, {"Range": "npt=0.000-"})
        assert resp.status == 200, resp
        return resp

    async def read_interleaved(self) -> tuple[int, bytes]:
        """The next interleaved (channel, packet); raises IncompleteReadError at EOF."""
        if self.interleaved:
            return self.interleaved.pop(0)
        assert self.reader is not None
        first = await self.reader.readexactly(1)
        assert first == b"$", first
        head = await self.reader.readexactly(3)
        return head[0], await self.reader.readexactly(struct.unpack(">H", head[1:])[0])

    async def read_access_units(self, count: int) -> list[tuple[int, list[bytes]]]:
        """``count`` access units as (RTP timestamp, NAL units), reassembled from RTP."""
        units: list[tuple[int, list[bytes]]] = []
        payloads: list[bytes] = []
        while len(units) < count:
            channel, packet = await self.read_interleaved()
            if channel != 0:
                continue
            marker = bool(packet[1] & 0x80)
            ts = struct.unpack(">I", packet[4:8])[0]
            payloads.append(packet[12:])
            if marker:
                units.append((ts, rtp.depacketize(payloads)))
                payloads = []
        return units


async def ffprobe(url: str, timeout: float = 30.0, transport: str = "tcp") -> tuple[int, dict, str]:
    proc = await asyncio.create_subprocess_exec(
        FFPROBE,
        "-v",
        "error",
        "-rtsp_transport",
        transport,
        "-show_entries",
        "stream=codec_name,width,height,r_frame_rate,avg_frame_rate",
        "-of",
        "json",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    data = json.loads(out) if out.strip() else {}
    return proc.returncode or 0, data, err.decode(errors="replace")


@dataclass
class Decoded:
    seq: int | None  # SEI stamp of the packet
    capture_us: int | None
    pixel: stamp.Stamp | None
    width: int
    height: int


def read_frames(
    url: str,
    count: int,
    timeout_s: float = 30.0,
    started: threading.Event | None = None,
    transport: str = "tcp",
) -> tuple[list[Decoded], int]:
    """Decode ``count`` frames with PyAV (blocking); also return the number of decode errors.

    ``started`` is set once the first frame is decoded.
    """
    container = av.open(url, options={"rtsp_transport": transport, "stimeout": "5000000"}, timeout=10)
    frames: list[Decoded] = []
    errors = 0
    deadline = time.monotonic() + timeout_s
    try:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                break
            sei = h264.find_stamp(bytes(packet)) if packet.size else None
            try:
                decoded = packet.decode()
            except av.InvalidDataError:
                errors += 1
                continue
            for frame in decoded:
                frames.append(
                    Decoded(
                        sei.seq if sei else None,
                        sei.capture_us if sei else None,
                        stamp.decode(frame.to_ndarray(format="bgr24")),
                        frame.width,
                        frame.height,
                    )
                )
            if started is not None and frames:
                started.set()
            if len(frames) >= count:
                break
    finally:
        container.close()
    return frames, errors
