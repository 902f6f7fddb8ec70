"""A minimal RTSP 1.0 server (RFC 2326) for the simulated cameras, written on asyncio.

Speaks what IP cameras speak and what FFmpeg/PyAV/ffprobe/VLC expect:

- OPTIONS, DESCRIBE (SDP, RFC 4566, with RFC 6184 §8.1 ``sprop-parameter-sets`` and
  ``packetization-mode=1``), SETUP with RTP over the RTSP TCP connection (interleaved, RFC
  2326 §10.12) or over UDP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER (keep-alive), SET_PARAMETER.
- Digest authentication (RFC 2617 §3.2, MD5; RFC 7616 §3.4 response with ``qop=auth`` too)
  for every method except OPTIONS; a wrong password gets 401 with a fresh challenge.
- Session timeout (RFC 2326 §12.37): a connection that sends nothing (no request, no RTCP)
  for ``session_timeout_s`` is closed.
- Bad input gets a status code, never a crash: 400 (unparseable; the connection is closed
  because framing is lost), 404, 405, 454, 455, 459, 461, 501, 505, 551. Each connection is
  its own task: one client's errors never touch another's.

RTP over UDP (SETUP with ``client_port``) is served too; media goes only to the RTSP client's
own address. Over UDP a slow client cannot push back, so it simply loses packets, as with a
real camera.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import re
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from firmware_sim import rtp
from firmware_sim.feed import AccessUnit, Subscriber

if TYPE_CHECKING:
    from firmware_sim.camera import SimCamera

log = logging.getLogger(__name__)

SERVER = "camhub-sim/0.1"
REALM = "camhub-sim"
NONCE_TTL_S = 300
MAX_LINE = 4096
MAX_HEADERS = 64
MAX_BODY = 65536
QUEUE_FRAMES = 60  # per viewer; at least two GOPs of 30
SR_INTERVAL_S = 1.0  # RFC 3550 §6.2 minimum interval for small sessions is 5 s; cameras send ~1 s
ALLOWED = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
KNOWN_NOT_ALLOWED = {"ANNOUNCE", "RECORD", "REDIRECT"}

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    451: "Parameter Not Understood",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
    551: "Option not supported",
}


class RtspError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None, close: bool = False) -> None:
        super().__init__(f"{status} {REASONS.get(status, '')}")
        self.status = status
        self.headers = headers or {}
        self.close = close


@dataclass
class Request:
    method: str
    uri: str
    version: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Session:
    id: str
    camera: SimCamera
    stream: str
    rtp_channel: int
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    ts_offset: int = field(default_factory=lambda: random.getrandbits(32))
    subscriber: Subscriber | None = None
    sender: asyncio.Task[None] | None = None
    packets: int = 0
    octets: int = 0
    # UDP delivery (RFC 2326 §12.39 client_port/server_port); None for TCP interleaved.
    udp: tuple[asyncio.DatagramTransport, asyncio.DatagramTransport] | None = None
    client_rtp: tuple[str, int] | None = None
    client_rtcp: tuple[str, int] | None = None

    def close_udp(self) -> None:
        if self.udp is not None:
            for transport in self.udp:
                transport.close()
            self.udp = None

    @property
    def playing(self) -> bool:
        return self.sender is not None

    async def stop(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender
            self.sender = None
        if self.subscriber is not None:
            self.subscriber.close()
            self.subscriber = None


class RtspServer:
    """One listening socket serving any number of cameras at ``/<camera>/<main|sub>``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        user: str = "admin",
        password: str = "camhub",
        session_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.session_timeout_s = session_timeout_s
        self.cameras: dict[str, SimCamera] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._secret = os.urandom(16)
        self._down_until: dict[str, float] = {}
        self._reopen: asyncio.Task[None] | None = None

    def add_camera(self, camera: SimCamera) -> None:
        self.cameras[camera.name] = camera
        camera.rtsp = self

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=MAX_LINE * 4, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen
        await self._close_listener()
        tasks = [c._main for c in list(self._connections) if c._main is not None]
        for conn in list(self._connections):
            conn.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in list(self._connections)))

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    def drop_camera(self, name: str) -> None:
        """Close every connection that touched this camera (clients see EOF)."""
        for conn in list(self._connections):
            if name in conn.cameras:
                conn.abort()

    def is_down(self, name: str) -> bool:
        return time.monotonic() < self._down_until.get(name, 0.0)

    async def reboot_camera(self, name: str, seconds: float) -> None:
        """Drop the camera's connections and keep it unreachable for ``seconds``."""
        self._down_until[name] = time.monotonic() + seconds
        self.drop_camera(name)
        if set(self.cameras) == {name}:
            # Alone on this socket: close it, as a rebooting camera does (clients get ECONNREFUSED).
            await self._close_listener()
            for conn in list(self._connections):
                conn.abort()
            if self._reopen is not None:  # a reboot during a reboot restarts the count
                self._reopen.cancel()
            self._reopen = asyncio.create_task(self._reopen_after(name), name=f"rtsp-reboot-{name}")

    async def _reopen_after(self, name: str) -> None:
        await asyncio.sleep(max(0.0, self._down_until[name] - time.monotonic()))
        while self._server is None:
            try:
                await self.start()
            except OSError:
                # The port may linger briefly; keep trying like a booting camera would.
                await asyncio.sleep(0.1)
        self._reopen = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("rtsp connection failed")
        finally:
            await conn.close()
            self._connections.discard(conn)

    # --- Digest authentication (RFC 2617 §3.2.1/§3.2.2) -------------------------------------
    def _nonce(self) -> str:
        stamp = f"{int(time.time()):x}"
        mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}{mac}"

    def _nonce_state(self, nonce: str) -> str:
        stamp, mac = nonce[:-24], nonce[-24:]
        good = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not stamp or not hmac.compare_digest(mac, good):
            return "bad"
        try:
            age = time.time() - int(stamp, 16)
        except ValueError:
            return "bad"
        return "ok" if 0 <= age <= NONCE_TTL_S else "stale"

    def challenge(self, stale: bool = False) -> dict[str, str]:
        value = f'Digest realm="{REALM}", nonce="{self._nonce()}", algorithm=MD5'
        if stale:
            value += ", stale=TRUE"
        return {"WWW-Authenticate": value}

    def check_auth(self, req: Request) -> None:
        auth = req.header("authorization")
        if not auth or not auth.lower().startswith("digest "):
            raise RtspError(401, self.challenge())
        params = {
            m[0].lower(): (m[2] if m[1].startswith('"') else m[1])
            for m in re.findall(r'(\w+)\s*=\s*("([^"]*)"|[^,\s]*)', auth[7:])
        }
        state = self._nonce_state(params.get("nonce", ""))
        if state != "ok":
            raise RtspError(401, self.challenge(stale=state == "stale"))
        if params.get("algorithm", "MD5").upper() != "MD5" or params.get("realm") != REALM:
            raise RtspError(401, self.challenge())

        def md5(s: str) -> str:
            return hashlib.md5(s.encode()).hexdigest()

        ha1 = md5(f"{self.user}:{REALM}:{self.password}")
        ha2 = md5(f"{req.method}:{params.get('uri', '')}")
        if params.get("qop"):
            # RFC 7616 §3.4.1 / RFC 2617 §3.2.2.1 with qop=auth.
            if params["qop"] != "auth":
                raise RtspError(401, self.challenge())
            expected = md5(
                f"{ha1}:{params['nonce']}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}"
            )
        else:
            expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
        if params.get("username") != self.user or not hmac.compare_digest(
            params.get("response", ""), expected
        ):
            raise RtspError(401, self.challenge())


class _ClientRtcp(asyncio.DatagramProtocol):
    """Receives the client's RTCP (receiver reports) on a UDP session's ports."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] == self.conn.peer_ip:
            self.conn.touch()


class Connection:
    """One RTSP TCP connection: requests in, responses and interleaved RTP/RTCP out."""

    def __init__(
        self, server: RtspServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.sessions: dict[str, Session] = {}
        self.cameras: set[str] = set()
        self._closed = False
        self._main: asyncio.Task[None] | None = None
        self._pending: Session | None = None  # PLAYed session whose sender starts after the reply
        sockname = writer.get_extra_info("sockname")
        self.local_ip = sockname[0] if sockname else server.host
        peername = writer.get_extra_info("peername")
        self.peer_ip = peername[0] if peername else server.host
        self.last_input = time.monotonic()

    def abort(self) -> None:
        """Close now from outside (drop/reboot faults): the client sees EOF."""
        if not self._closed:
            self.writer.close()
            if self._main is not None:
                self._main.cancel()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in list(self.sessions.values()):
            await session.stop()
            session.close_udp()
        self.sessions.clear()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def run(self) -> None:
        self._main = asyncio.current_task()
        try:
            while not self._closed:
                try:
                    req = await self._read_with_timeout()
                except TimeoutError:
                    log.info("rtsp: session timeout after %.0f s of silence", self.server.session_timeout_s)
                    return
                except RtspError as exc:
                    await self._respond(exc.status, "0", exc.headers)
                    return
                if req is None:
                    return
                cseq = req.header("cseq")
                try:
                    if cseq is None or not (cseq.strip().isascii() and cseq.strip().isdigit()):
                        raise RtspError(400)  # CSeq is required in every request (RFC 2326 §12.17)
                    status, headers, body = await self._handle(req)
                except RtspError as exc:
                    status, headers, body = exc.status, exc.headers, b""
                    if exc.close:
                        await self._respond(status, cseq or "0", headers)
                        return
                except Exception:
                    log.exception("rtsp: %s %s failed", req.method, req.uri)
                    status, headers, body = 500, {}, b""
                await self._respond(status, cseq or "0", headers, body)
                if req.method == "PLAY" and status == 200:
                    self._start_pending()
        except asyncio.CancelledError:
            if not self._closed and not self.writer.is_closing():
                raise
        except (ConnectionError, asyncio.IncompleteReadError):
            return

    async def _read_with_timeout(self) -> Request | None:
        """Next request; TimeoutError after ``session_timeout_s`` without any input from the client."""
        read = asyncio.ensure_future(self._read_request())
        try:
            while True:
                deadline = self.last_input + self.server.session_timeout_s
                done, _ = await asyncio.wait({read}, timeout=max(0.0, deadline - time.monotonic()))
                if done:
                    self.last_input = time.monotonic()
                    return read.result()
                if time.monotonic() >= self.last_input + self.server.session_timeout_s:
                    raise TimeoutError
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read

    async def _read_request(self) -> Request | None:
        """Read one request, skipping interleaved frames from the client (its RTCP)."""
        while True:
            first = await self.reader.read(1)
            if not first:
                return None
            if first == b"$":
                # RFC 2326 §10.12: '$', channel, 16-bit length, data. Client RTCP counts as liveness.
                head = await self.reader.readexactly(3)
                await self.reader.readexactly(struct.unpack(">H", head[1:])[0])
                self.last_input = time.monotonic()
                continue
            if first in b"\r\n":
                continue  # tolerate stray CRLF between messages
            break
        try:
            line = first + await self.reader.readuntil(b"\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
            raise RtspError(400, close=True) from exc
        try:
            method, uri, version = line.decode("utf-8").strip().split(" ")
        except (UnicodeDecodeError, ValueError) as exc:
            raise RtspError(400, close=True) from exc
        if not re.fullmatch(r"RTSP/\d\.\d", version) or not re.fullmatch(r"[A-Z_]{1,32}", method):
            raise RtspError(400, close=True)
        headers: dict[str, str] = {}
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
                raise RtspError(400, close=True) from exc
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                break
            name, sep, value = text.partition(":")
            if not sep or not name.strip() or len(headers) >= MAX_HEADERS:
                raise RtspError(400, close=True)
            headers[name.strip().lower()] = value.strip()
        body = b""
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit()):  # "²".isdigit() is True; int() refuses it
            raise RtspError(400, close=True)
        if int(length) > MAX_BODY:
            raise RtspError(413, close=True)
        if int(length):
            body = await self.reader.readexactly(int(length))
        return Request(method, uri, version, headers, body)

    async def _respond(
        self, status: int, cseq: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        lines = [
            f"RTSP/1.0 {status} {REASONS.get(status, 'Error')}",
            f"CSeq: {cseq}",
            f"Server: {SERVER}",
            "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()

    # --- request handling -------------------------------------------------------------------
    def _target(self, uri: str) -> tuple[SimCamera, str, str | None]:
        """Camera, stream and track (``trackID=0`` or None) named by a request URI."""
        parts = urlsplit(uri)
        if parts.scheme not in ("rtsp", "rtsps") and not uri.startswith("/"):
            raise RtspError(400)
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) not in (2, 3) or (len(segments) == 3 and segments[2] != "trackID=0"):
            raise RtspError(404)
        camera = self.server.cameras.get(segments[0])
        if camera is None or segments[1] not in ("main", "sub"):
            raise RtspError(404)
        if self.server.is_down(camera.name):
            raise RtspError(503, {"Retry-After": "5"})
        self.cameras.add(camera.name)
        return camera, segments[1], segments[2] if len(segments) == 3 else None

    def _session(self, req: Request) -> Session:
        value = req.header("session")
        if not value:
            raise RtspError(454)
        session = self.sessions.get(value.split(";")[0].strip())
        if session is None:
            raise RtspError(454)
        return session

    async def _handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.version != "RTSP/1.0":
            raise RtspError(505)
        if req.header("require"):
            # RFC 2326 §12.32: we support no extensions.
            raise RtspError(551, {"Unsupported": req.header("require") or ""})
        if req.method == "OPTIONS":
            return 200, {"Public": ALLOWED}, b""
        if req.method in KNOWN_NOT_ALLOWED:
            raise RtspError(405, {"Allow": ALLOWED})
        handler = {
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
            "SET_PARAMETER": self._set_parameter,
        }.get(req.method)
        if handler is None:
            raise RtspError(501)
        # Authenticate before revealing whether a camera exists (401 precedes 404).
        self.server.check_auth(req)
        if req.uri != "*":
            camera, _, _ = self._target(req.uri)
            await camera.stalled()  # a stalled camera answers nothing, even to valid requests
        return await handler(req)

    async def _describe(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        camera, stream, track = self._target(req.uri)
        if track is not None:
            raise RtspError(404)
        feed = camera.feeds[stream]
        sprop = ",".join(base64.b64encode(p).decode() for p in (feed.sps, feed.pps))
        profile = feed.sps[1:4].hex()
        ip = self.local_ip
        family = "IP6" if ":" in ip else "IP4"
        sdp = "\r\n".join(
            [
                "v=0",
                f"o=- {camera.name.encode().hex()} 1 IN {family} {ip}",
                f"s={camera.name} {stream}",
                f"c=IN {family} {ip}",
                "t=0 0",
                "a=control:*",
                "a=range:npt=now-",
                "m=video 0 RTP/AVP 96",
                f"a=rtpmap:{rtp.PAYLOAD_TYPE} H264/{rtp.CLOCK_RATE}",
                # RFC 6184 §8.1: packetization-mode=1 (non-interleaved), parameter sets in base64.
                f"a=fmtp:{rtp.PAYLOAD_TYPE} packetization-mode=1;profile-level-id={profile};"
                f"sprop-parameter-sets={sprop}",
                f"a=framerate:{camera.fps}",
                f"a=x-dimensions:{feed.width},{feed.height}",
                "a=control:trackID=0",
                "",
            ]
        ).encode()
        base = req.uri.split("?")[0].rstrip("/") + "/"
        return 200, {"Content-Type": "application/sdp", "Content-Base": base}, sdp

    async def _setup(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        camera, stream, _ = self._target(req.uri)
        transport = req.header("transport")
        if not transport:
            raise RtspError(400)
        # RFC 2326 §12.39: the client lists transports in order of preference; take the first
        # unicast RTP/AVP one we can do (TCP interleaved, or UDP with client_port).
        mode: str | None = None
        channel = -1
        client_ports: tuple[int, int] | None = None
        for spec in transport.split(","):
            fields = [f.strip() for f in spec.split(";")]
            proto = fields[0].upper()
            if any(f.lower() == "multicast" for f in fields) or proto not in (
                "RTP/AVP/TCP",
                "RTP/AVP",
                "RTP/AVP/UDP",
            ):
                continue
            if proto == "RTP/AVP/TCP":
                for f in fields:
                    if m := re.fullmatch(r"interleaved=(\d+)(?:-(\d+))?", f):
                        channel = int(m.group(1))
                mode = "tcp"
                break
            for f in fields:
                if m := re.fullmatch(r"client_port=(\d+)(?:-(\d+))?", f):
                    rtp_port = int(m.group(1))
                    client_ports = (rtp_port, int(m.group(2)) if m.group(2) else rtp_port + 1)
            if client_ports and all(0 < p < 65536 for p in client_ports):
                mode = "udp"
                break
        if mode is None:
            raise RtspError(461)  # RFC 2326 §11.3.12 Unsupported Transport
        used = {s.rtp_channel for s in self.sessions.values()}
        if req.header("session"):
            session = self._session(req)
            if session.camera is not camera or session.stream != stream:
                raise RtspError(459)  # one track per session; another stream is another session
            if session.playing:
                raise RtspError(455)
            if (mode == "udp") != (session.udp is not None):
                raise RtspError(461)  # no switching transports within a session
        else:
            if mode == "tcp":
                if channel < 0:
                    channel = next(c for c in range(0, 254, 2) if c not in used)
                if channel > 254 or channel in used:
                    raise RtspError(461)
            session = Session(
                id=f"{random.getrandbits(64):016X}",
                camera=camera,
                stream=stream,
                rtp_channel=channel if mode == "tcp" else -2,
            )
            if mode == "udp":
                await self._open_udp(session)
            self.sessions[session.id] = session
        timeout = max(1, int(self.server.session_timeout_s))
        if session.udp is not None:
            assert client_ports is not None
            # Media only ever goes to the address the RTSP request came from (no reflection).
            session.client_rtp = (self.peer_ip, client_ports[0])
            session.client_rtcp = (self.peer_ip, client_ports[1])
            server_rtp = session.udp[0].get_extra_info("sockname")[1]
            server_rtcp = session.udp[1].get_extra_info("sockname")[1]
            value = (
                f"RTP/AVP;unicast;client_port={client_ports[0]}-{client_ports[1]};"
                f"server_port={server_rtp}-{server_rtcp};ssrc={session.ssrc:08X}"
            )
        else:
            value = (
                f"RTP/AVP/TCP;unicast;interleaved={session.rtp_channel}-{session.rtp_channel + 1};"
                f"ssrc={session.ssrc:08X}"
            )
        return 200, {"Transport": value, "Session": f"{session.id};timeout={timeout}"}, b""

    async def _open_udp(self, session: Session) -> None:
        """Bind an even/odd UDP port pair for RTP/RTCP (RFC 3550 §11)."""
        loop = asyncio.get_running_loop()
        for _ in range(20):
            rtp_t, _p = await loop.create_datagram_endpoint(
                lambda: _ClientRtcp(self), local_addr=(self.local_ip, 0)
            )
            port = rtp_t.get_extra_info("sockname")[1]
            if port % 2 == 0 and port < 65535:
                try:
                    rtcp_t, _p = await loop.create_datagram_endpoint(
                        lambda: _ClientRtcp(self), local_addr=(self.local_ip, port + 1)
                    )
                except OSError:
                    rtp_t.close()
                    continue
                session.udp = (rtp_t, rtcp_t)
                return
            rtp_t.close()
        raise RtspError(500)

    def touch(self) -> None:
        """Client RTCP over UDP counts as liveness for the session timeout (RFC 2326 §12.37)."""
        self.last_input = time.monotonic()

    async def _play(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        session = self._session(req)
        camera, stream, _ = self._target(req.uri)
        if camera is not session.camera or stream != session.stream:
            raise RtspError(459)
        feed = camera.feeds[stream]
        first: AccessUnit | None = feed.gop_cache[0] if feed.gop_cache else None
        if not session.playing and session.subscriber is None:
            # Start at the cached IDR so the viewer decodes at once (MEDIA_NOTES).
            session.subscriber = feed.subscribe(QUEUE_FRAMES)
            self._pending = session
        pts = first.pts90 if first else round(camera.next_seq * 90_000 / camera.fps)
        url = req.uri.split("?")[0].rstrip("/")
        track_url = url if url.endswith("trackID=0") else url + "/trackID=0"
        return (
            200,
            {
                "Range": "npt=now-",
                # RFC 2326 §12.33: the first packet's sequence number and RTP timestamp.
                "RTP-Info": f"url={track_url};seq={session.seq & 0xFFFF};rtptime={(session.ts_offset + pts) & 0xFFFFFFFF}",
                "Session": session.id,
            },
            b"",
        )

    def _start_pending(self) -> None:
        session = self._pending
        self._pending = None
        if session is not None and session.sender is None and session.subscriber is not None:
            session.sender = asyncio.create_task(self._send(session), name=f"rtsp-send-{session.id}")

    async def _pause(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        session = self._session(req)
        if not session.playing:
            raise RtspError(455)
        await session.stop()
        return 200, {"Session": session.id}, b""

    async def _teardown(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        session = self._session(req)
        await session.stop()
        session.close_udp()
        # stop() can end the stream task, whose cleanup may already have dropped the session.
        self.sessions.pop(session.id, None)
        return 200, {}, b""

    async def _get_parameter(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.header("session"):
            session = self._session(req)
            return 200, {"Session": session.id}, b""
        return 200, {}, b""

    async def _set_parameter(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.header("session"):
            self._session(req)
        if req.body.strip():
            raise RtspError(451)
        return 200, {}, b""

    # --- media ------------------------------------------------------------------------------
    async def _send(self, session: Session) -> None:
        """Send the session's access units as interleaved RTP, with an RTCP SR every second."""
        sub = session.subscriber
        assert sub is not None
        ch = session.rtp_channel
        last_sr = 0.0
        cname = f"{session.camera.name}@camhub-sim"
        try:
            ts = session.ts_offset & 0xFFFFFFFF
            while True:
                out = bytearray()
                try:
                    async with asyncio.timeout(SR_INTERVAL_S):
                        au = await sub.queue.get()
                except TimeoutError:
                    # No frame for a second: a stall sends nothing, a mute (an encoder hang) keeps
                    # the session alive with sender reports.
                    if not session.camera.muted:
                        continue
                    capture_s, report_due = session.camera.camera_time(), True
                else:
                    if au is None:
                        log.info("rtsp: dropping %s viewer that fell behind", session.camera.name)
                        self.abort()
                        return
                    ts = (session.ts_offset + au.pts90) & 0xFFFFFFFF
                    last = len(au.payloads) - 1
                    for i, payload in enumerate(au.payloads):
                        # RFC 6184 §5.1: the marker bit is set on the last packet of the access unit.
                        packet = rtp.header(session.seq, ts, session.ssrc, i == last) + payload
                        session.seq = (session.seq + 1) & 0xFFFF
                        if session.udp is not None:
                            session.udp[0].sendto(packet, session.client_rtp)
                        else:
                            out += struct.pack(">cBH", b"$", ch, len(packet)) + packet
                        session.packets += 1
                        session.octets += len(payload)
                    capture_s, report_due = au.capture_s, time.monotonic() - last_sr >= SR_INTERVAL_S
                if report_due:
                    last_sr = time.monotonic()
                    sr = rtp.sender_report(
                        session.ssrc, capture_s, ts, session.packets, session.octets, cname
                    )
                    if session.udp is not None:
                        session.udp[1].sendto(sr, session.client_rtcp)
                    else:
                        out += struct.pack(">cBH", b"$", ch + 1, len(sr)) + sr
                if out:
                    self.writer.write(bytes(out))
                    await self.writer.drain()
                elif session.udp is not None:
                    # UDP has no back-pressure; yield so one session cannot starve the loop.
                    await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            self.abort()
        except Exception:
            # One viewer's failure must not affect the others: log, close this connection.
            log.exception("rtsp: sending to %s viewer failed", session.camera.name)
            self.abort()
