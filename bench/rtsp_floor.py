"""A recorder floor that reads RTSP itself: the same recording as bench/pyav_floor.py, but with the
RTSP session and RTP depacketisation done in Python and only the muxer in PyAV.

Why: a PyAV reader costs what `ffmpeg -c copy` does (bench/daemon_bench.py), and `strace` of one
shows where both spend it: libavformat reads RTSP's interleaved TCP stream unbuffered, one `poll` and
one `recv` for the `$`, the 3-byte header and the payload of every RTP packet: ~1,100 system calls a
second for a 2 Mbit/s camera (~180 RTP packets), ~14 % of the daemon's reader CPU at 8 cameras
(`perf`). Reading the socket in large chunks instead takes one call per burst. This measures what
that would save before anyone builds it into hub/ingest: an experiment, not camhub's reader. It
handles only what the simulator serves (H.264, packetization-mode 1, Digest or Basic auth, RTP over
TCP) and records exactly what pyav_floor records.

With ``--nap S`` it sleeps S seconds after each burst it has processed, as the hub's reader does
(hub/ingest/rtsp.py, Naps): what the camera sends meanwhile waits in the socket and comes back in
one read.

Run: ``python -m bench.rtsp_floor RTSP_URL OUT_DIR [--size WxH] [--nap S]`` (until SIGINT or
SIGTERM; the size is what the MP4 header says, 1920x1080 as bench/record_bench.py serves it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import socket
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import av

from bench.pyav_floor import FMP4, SEGMENT_S, StopFlag

CLOCK = 90_000
START = b"\x00\x00\x00\x01"
KEEPALIVE_S = 20.0
TIME_BASE = Fraction(1, CLOCK)


class Rtsp:
    """One RTSP/1.0 session over TCP, RTP interleaved on channel 0."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.user, self.password = unquote(u.username or ""), unquote(u.password or "")
        netloc = u.hostname or ""
        if u.port:
            netloc += f":{u.port}"
        self.url = urlunsplit((u.scheme, netloc, u.path, u.query, ""))
        self.sock = socket.create_connection((u.hostname, u.port or 554), timeout=10)
        self.buf = bytearray()
        self.cseq = 0
        self.challenge: dict[str, str] | None = None
        self.basic = False
        self.session = ""

    def _auth(self, method: str, uri: str) -> str | None:
        if self.basic:
            return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        c = self.challenge
        if c is None:
            return None
        ha1 = hashlib.md5(f"{self.user}:{c['realm']}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        resp = hashlib.md5(f"{ha1}:{c['nonce']}:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="{self.user}", realm="{c["realm"]}", nonce="{c["nonce"]}", uri="{uri}", '
            f'response="{resp}"'
        )

    def request(
        self, method: str, uri: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        for _ in range(2):
            self.cseq += 1
            lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self.cseq}", "User-Agent: camhub-rtsp-floor"]
            if self.session:
                lines.append(f"Session: {self.session}")
            auth = self._auth(method, uri)
            if auth:
                lines.append(f"Authorization: {auth}")
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status, hdrs, body = self.response()
            if status == 401 and self.challenge is None and not self.basic:
                www = hdrs.get("www-authenticate", "")
                if www.lower().startswith("digest"):
                    self.challenge = dict(re.findall(r'(\w+)="([^"]*)"', www))
                else:
                    self.basic = True
                continue
            return status, hdrs, body
        raise RuntimeError(f"{method}: unauthorized")

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("camera closed the connection")
        self.buf += chunk

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next RTSP response, skipping interleaved packets before it."""
        while True:
            while self.buf[:1] == b"$":
                while len(self.buf) < 4:
                    self._fill()
                size = struct.unpack_from(">H", self.buf, 2)[0]
                while len(self.buf) < 4 + size:
                    self._fill()
                del self.buf[: 4 + size]
            end = self.buf.find(b"\r\n\r\n")
            if end < 0 or self.buf[:1] == b"$":
                self._fill()
                continue
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            length = int(hdrs.get("content-length", "0"))
            while len(self.buf) < end + 4 + length:
                self._fill()
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            return int(head[0].split()[1]), hdrs, body


def record(url: str, out_dir: Path, width: int = 1920, height: int = 1080, nap: float = 0.0) -> int:
    stop = StopFlag()
    out_dir.mkdir(parents=True, exist_ok=True)
    rtsp = Rtsp(url)
    status, hdrs, sdp = rtsp.request("DESCRIBE", rtsp.url, {"Accept": "application/sdp"})
    if status != 200:
        raise RuntimeError(f"DESCRIBE: {status}")
    text = sdp.decode()
    base = hdrs.get("content-base", rtsp.url)
    video = text[text.index("m=video") :]
    control = re.search(r"a=control:(\S+)", video)
    track = control.group(1) if control else ""
    track_url = track if "://" in track else base.rstrip("/") + "/" + track
    sprop = re.search(r"sprop-parameter-sets=([^;\s]+)", video)
    param_sets = b"".join(START + base64.b64decode(p) for p in sprop.group(1).split(",")) if sprop else b""
    status, hdrs, _ = rtsp.request("SETUP", track_url, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
    if status != 200:
        raise RuntimeError(f"SETUP: {status}")
    rtsp.session = hdrs.get("session", "").split(";")[0]
    status, _, _ = rtsp.request("PLAY", base, {"Range": "npt=0.000-"})
    if status != 200:
        raise RuntimeError(f"PLAY: {status}")
    rtsp.sock.settimeout(None)

    out: Any = None
    ostream: Any = None
    start = 0
    n = 0
    first_ts: int | None = None
    last_ts = 0
    unwrap = 0
    parts: list[bytes] = []
    key = False
    au_ts: int | None = None
    keepalive = time.monotonic() + KEEPALIVE_S
    buf = rtsp.buf
    pos = 0

    def emit() -> None:
        nonlocal out, ostream, start, n, parts, key
        data = b"".join(parts)
        parts, is_key = [], key
        key = False
        assert au_ts is not None
        pts = au_ts
        if is_key and (out is None or pts - start >= SEGMENT_S * CLOCK):
            if out is not None:
                out.close()
            out = av.open(str(out_dir / f"{n:05d}.mp4"), "w", format="mp4", options={"movflags": FMP4})
            ostream = out.add_mux_stream("h264", width=width, height=height)  # no encoder opened
            ostream.time_base = Fraction(1, CLOCK)
            start, n = pts, n + 1
            if param_sets and not data.startswith(param_sets):
                data = param_sets + data
        if out is None:
            return
        pkt = av.Packet(data)
        pkt.pts = pkt.dts = pts - start
        pkt.time_base = TIME_BASE
        pkt.is_keyframe = is_key
        pkt.stream = ostream
        out.mux(pkt)

    try:
        while not stop.set:
            try:
                chunk = rtsp.sock.recv(262144)
            except InterruptedError:
                continue
            if not chunk:
                break
            if pos:
                del buf[:pos]
                pos = 0
            buf += chunk
            view = memoryview(buf)
            end = len(buf)
            try:
                while pos + 4 <= end:
                    if buf[pos] != 0x24:  # an RTSP response (keep-alive): skip it whole
                        stop_at = buf.find(b"\r\n\r\n", pos)
                        if stop_at < 0:
                            break
                        pos = stop_at + 4
                        continue
                    channel, size = buf[pos + 1], (buf[pos + 2] << 8) | buf[pos + 3]
                    if pos + 4 + size > end:
                        break
                    p = pos + 4
                    pos = p + size
                    if channel != 0 or size < 12:
                        continue  # RTCP
                    b0, b1 = buf[p], buf[p + 1]
                    ts = int.from_bytes(view[p + 4 : p + 8])
                    h = p + 12 + 4 * (b0 & 0x0F)
                    if b0 & 0x10:  # header extension
                        h += 4 + 4 * ((buf[h + 2] << 8) | buf[h + 3])
                    stop_pl = pos - (buf[pos - 1] if b0 & 0x20 else 0)
                    if first_ts is None:
                        first_ts = last_ts = ts
                    if ts != last_ts:
                        if (ts - last_ts) & 0xFFFFFFFF < 0x80000000 and ts < last_ts:
                            unwrap += 1 << 32
                        last_ts = ts
                    t = ts + unwrap - first_ts
                    if parts and t != au_ts:
                        emit()
                    au_ts = t
                    nal = buf[h] & 0x1F
                    if nal == 28:  # FU-A
                        fu = buf[h + 1]
                        if fu & 0x80:
                            parts.append(START + bytes(((buf[h] & 0xE0) | (fu & 0x1F),)))
                            key = key or (fu & 0x1F) == 5
                        parts.append(view[h + 2 : stop_pl].tobytes())
                    elif nal == 24:  # STAP-A
                        q = h + 1
                        while q + 2 <= stop_pl:
                            ln = (buf[q] << 8) | buf[q + 1]
                            key = key or (buf[q + 2] & 0x1F) == 5
                            parts.append(START + view[q + 2 : q + 2 + ln].tobytes())
                            q += 2 + ln
                    else:
                        key = key or nal == 5
                        parts.append(START + view[h:stop_pl].tobytes())
                    if b1 & 0x80:  # marker: the access unit is complete
                        emit()
            finally:
                view.release()
            if nap:
                time.sleep(nap)
            if time.monotonic() > keepalive:
                rtsp.cseq += 1
                rtsp.sock.sendall(
                    f"GET_PARAMETER {rtsp.url} RTSP/1.0\r\nCSeq: {rtsp.cseq}\r\nSession: {rtsp.session}\r\n"
                    f"Authorization: {rtsp._auth('GET_PARAMETER', rtsp.url)}\r\n\r\n".encode()
                )
                keepalive = time.monotonic() + KEEPALIVE_S
    finally:
        if out is not None:
            out.close()
        rtsp.sock.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.rtsp_floor", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT for the MP4 header")
    p.add_argument("--nap", type=float, default=0.0, help="seconds to sleep after each burst")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    sys.exit(record(args.url, args.out_dir, w, h, args.nap))
