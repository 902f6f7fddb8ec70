"""camhub's own RTSP/TCP reader (hub/ingest/rtsp_client.py) against what cameras send.

The simulator and gst-rtsp-server (tests/ingest/test_rtsp.py, tests/interop/) cover the session with
real stacks; what neither can be made to send is scripted here, byte for byte, by a one-connection
RTSP server on 127.0.0.1: Digest with qop=auth, channels other than 0-1, H.265 aggregation packets,
RTP padding and header extensions, a lost packet inside a fragmented NAL unit, a timestamp wrapping
past 2^32, keep-alive responses with bodies and server requests between interleaved frames, RTCP
alone, B-frames, refusals. Every test reads through the real socket path the hub uses."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from hub.ingest import rtsp_client
from hub.ingest.rtsp import RtspSource
from hub.ingest.rtsp_client import (
    MAX_UNIT_BYTES,
    ReaderAudioPacket,
    ReaderUnsupported,
    RtspTcpReader,
    SourceUnauthorized,
    TransportRefused,
    parse_sdp,
    parse_sdp_audio,
)
from hub.ingest.source import SourceEnded, SourceOpenError, nal_type, nal_units, sps_size

START = b"\x00\x00\x00\x01"


def _param_sets(codec: str, width: int, height: int) -> list[bytes]:
    """Real parameter sets from a real encoder (PyAV), in the order the SDP lists them."""
    enc = av.CodecContext.create("libx265" if codec == "hevc" else "libx264", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = width, height, "yuv420p", Fraction(1, 15)
    if codec == "hevc":
        enc.options = {"x265-params": "log-level=none"}
    enc.open()
    frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24").reformat(
        format="yuv420p"
    )
    data = b"".join(bytes(p) for p in enc.encode(frame) + enc.encode(None))
    wanted = {32, 33, 34} if codec == "hevc" else {7, 8}
    return [n for n in nal_units(data) if nal_type(n[0], codec) in wanted]


def rtp(
    seq: int, ts: int, payload: bytes, *, marker: bool = False, pt: int = 96, pad: int = 0, ext: bytes = b""
) -> bytes:
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext else 0)
    head = struct.pack(">BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234)
    if ext:
        head += struct.pack(">HH", 0xBEDE, len(ext) // 4) + ext
    tail = b"\x00" * (pad - 1) + bytes((pad,)) if pad else b""
    return head + payload + tail


def frame(channel: int, packet: bytes) -> bytes:
    return struct.pack(">BBH", 0x24, channel, len(packet)) + packet


class ScriptedCamera(threading.Thread):
    """Answers one connection's requests with `answer(method, headers) -> (status, headers, body)`,
    then, after PLAY, sends `stream` (bytes, or a float to pause) and keeps the connection open."""

    def __init__(
        self,
        answer: Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]],
        stream: list[bytes | float],
    ) -> None:
        super().__init__(name="scripted-camera", daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self.listener.getsockname()[1]}/cam"
        self.answer = answer
        self.stream = stream
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.interleaved: list[tuple[int, bytes]] = []  # what the reader sent on RTCP channels
        self.done = threading.Event()
        self._sending = threading.Lock()  # replies and the stream share the connection
        self.start()

    def run(self) -> None:
        try:
            self._serve()
        except OSError:
            pass  # the reader hung up first (a test that ended early)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buf = b""
            while True:
                while buf.startswith(b"$") or b"\r\n\r\n" not in buf:
                    if (
                        buf.startswith(b"$")
                        and len(buf) >= 4
                        and len(buf) >= 4 + int.from_bytes(buf[2:4], "big")
                    ):
                        end = 4 + int.from_bytes(buf[2:4], "big")
                        self.interleaved.append((buf[1], buf[4:end]))
                        buf = buf[end:]
                        continue
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method = lines[0].split()[0]
                hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                hdrs["uri"] = lines[0].split()[1]
                self.requests.append((method, hdrs))
                status, extra, body = self.answer(method, hdrs)
                reply = f"RTSP/1.0 {status} X\r\nCSeq: {hdrs.get('cseq', '0')}\r\n"
                reply += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                reply += f"Content-Length: {len(body)}\r\n\r\n"
                with self._sending:
                    conn.sendall(reply.encode() + body)
                if method == "PLAY" and status == 200:
                    # The stream goes out beside the requests that keep coming (keep-alives).
                    threading.Thread(
                        target=self._play, args=(conn,), name="scripted-stream", daemon=True
                    ).start()

    def _play(self, conn: socket.socket) -> None:
        try:
            for item in self.stream:
                if isinstance(item, float):
                    time.sleep(item)
                else:
                    with self._sending:
                        conn.sendall(item)
        except OSError:
            pass  # the reader hung up
        self.done.set()

    def close(self) -> None:
        self.listener.close()


def h264_sdp(sets: list[bytes], extra: str = "") -> bytes:
    sprop = ",".join(base64.b64encode(n).decode() for n in sets)
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\na=control:*\r\n"
        "m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n"
        "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sprop}{extra}\r\na=control:trackID=0\r\n"
    ).encode()


def plain(sdp: bytes, **setup: str) -> Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]:
    def answer(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if method == "OPTIONS":
            return 200, {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"}, b""
        if method == "DESCRIBE":
            return 200, {"Content-Base": "rtsp://127.0.0.1/cam/", "Content-Type": "application/sdp"}, sdp
        if method == "SETUP":
            return (
                200,
                {"Session": "abc;timeout=10", "Transport": "RTP/AVP/TCP;interleaved=0-1", **setup},
                b"",
            )
        return 200, {"Session": "abc"}, b""

    return answer


def take(reader: RtspTcpReader, n: int) -> list[av.Packet]:
    out = []
    it = reader.demux()
    for pkt in it:
        out.append(pkt)
        if len(out) == n:
            break
    return out


@pytest.fixture
def opened() -> Iterator[Callable[[ScriptedCamera], RtspTcpReader]]:
    readers: list[RtspTcpReader] = []
    cams: list[ScriptedCamera] = []

    def open_(cam: ScriptedCamera, url: str | None = None, read_timeout_s: float = 3.0) -> RtspTcpReader:
        cams.append(cam)
        reader = RtspTcpReader(url or cam.url, open_timeout_s=5.0, read_timeout_s=read_timeout_s)
        readers.append(reader)
        reader.open()
        return reader

    yield open_  # type: ignore[misc]
    for r in readers:
        r.close()
    for c in cams:
        c.close()


def test_h264_units_come_whole_from_stap_fu_padding_extensions_and_a_missing_marker(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 640, 360)
    idr = bytes((0x65,)) + bytes(range(256)) * 20  # 5121 bytes: three FU-A fragments
    p1 = bytes((0x41, 0x9A)) + b"\x11" * 300
    p2 = bytes((0x41, 0x9B)) + b"\x22" * 50
    stap = bytes((0x18,)) + b"".join(struct.pack(">H", len(n)) + n for n in (sps, pps))
    fu = [idr[1:2000], idr[2000:4000], idr[4000:]]
    fus = [bytes((0x7C, (0x80 if i == 0 else 0x40 if i == 2 else 0) | 5)) + part for i, part in enumerate(fu)]
    ts0 = 2**32 - 3000  # the second frame's timestamp wraps past 2^32
    stream = [
        frame(2, rtp(1, ts0, stap)),
        frame(3, b"\x80\xc8\x00\x06" + b"\x00" * 24),  # an RTCP sender report on the RTCP channel
        frame(2, rtp(2, ts0, fus[0], ext=b"\x10\xaa\x00\x00")),
        b"RTSP/1.0 200 OK\r\nCSeq: 9\r\nContent-Length: 5\r\n\r\nhello",  # a keep-alive's answer
        frame(2, rtp(3, ts0, fus[1], pad=4)),
        frame(2, rtp(4, ts0, fus[2], marker=True)),
        b"SET_PARAMETER rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nx=1",  # the server asks
        frame(2, rtp(5, ts0 + 6000, p1)),  # no marker bit: the next timestamp ends it
        frame(2, rtp(6, ts0 + 12000, p2, marker=True)),
    ]
    cam = ScriptedCamera(plain(h264_sdp([sps, pps]), Transport="RTP/AVP/TCP;unicast;interleaved=2-3"), stream)
    reader = opened(cam)
    assert reader.stream is not None
    cc = reader.stream.codec_context
    assert (cc.name, cc.width, cc.height) == ("h264", 640, 360)
    assert cc.extradata == START + sps + START + pps
    pkts = take(reader, 3)
    assert bytes(pkts[0]) == START + sps + START + pps + START + idr
    assert bytes(pkts[1]) == START + p1 and bytes(pkts[2]) == START + p2
    assert [p.pts for p in pkts] == [p.dts for p in pkts] == [0, 6000, 12000]  # unwrapped
    assert [p.is_keyframe for p in pkts] == [True, False, False]
    assert not any(p.is_corrupt for p in pkts)
    assert all(p.time_base == Fraction(1, 90000) for p in pkts)
    setup = next(h for m, h in cam.requests if m == "SETUP")
    assert setup["uri"] == "rtsp://127.0.0.1/cam/trackID=0"  # the video track, not the audio
    assert "interleaved=0-1" in setup["transport"]
    play = next(h for m, h in cam.requests if m == "PLAY")
    assert play["session"] == "abc" and play["uri"] == "rtsp://127.0.0.1/cam/"


def test_parameter_sets_sent_as_units_of_their_own_go_in_front_of_the_next_picture(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    sei = bytes((0x06, 0x05, 0x01, 0x00, 0x80))
    idr = bytes((0x65, 0x88, 0x84))
    stream = [
        frame(0, rtp(1, 100, sps, marker=True)),  # a marker bit and a timestamp of their own
        frame(0, rtp(2, 200, pps, marker=True)),
        frame(0, rtp(3, 300, sei)),
        frame(0, rtp(4, 3000, idr, marker=True)),
        frame(0, rtp(5, 9000, bytes((0x41, 0x9A)), marker=True)),
    ]
    reader = opened(ScriptedCamera(plain(h264_sdp([sps, pps])), stream))
    key, delta = take(reader, 2)
    assert bytes(key) == START + sps + START + pps + START + sei + START + idr
    assert key.is_keyframe and (key.pts, delta.pts) == (
        2900,
        8900,
    )  # the picture's time, from the first packet


def test_a_lost_fragment_marks_its_unit_corrupt_and_drops_the_broken_nal(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    slice_a = bytes((0x41,)) + b"\xaa" * 3000
    slice_b = bytes((0x41,)) + b"\xbb" * 100
    fu = [bytes((0x5C, 0x81)) + slice_a[1:1000], bytes((0x5C, 0x01)) + slice_a[1000:2000]]
    fu_end = bytes((0x5C, 0x41)) + slice_a[2000:]
    stream = [
        frame(0, rtp(10, 0, fu[0])),
        # seq 11 (the middle fragment) is lost
        frame(0, rtp(12, 0, fu_end)),  # the rest of a NAL unit whose middle is gone: dropped
        frame(0, rtp(13, 0, slice_b, marker=True)),
        frame(0, rtp(14, 6000, slice_b, marker=True)),
    ]
    reader = opened(ScriptedCamera(plain(h264_sdp([sps, pps])), stream))
    first, second = take(reader, 2)
    assert first.is_corrupt and bytes(first) == START + slice_a[:1000] + START + slice_b
    assert not second.is_corrupt and bytes(second) == START + slice_b


def test_h265_aggregation_and_fragmentation_packets(opened) -> None:  # type: ignore[no-untyped-def]
    vps, sps, pps = _param_sets("hevc", 1280, 720)
    idr = bytes((0x26, 0x01)) + b"\x5a" * 2500  # IDR_W_RADL (19)
    trail = bytes((0x02, 0x01)) + b"\x33" * 200  # TRAIL_R (1)
    ap = bytes((0x60, 0x01)) + b"".join(struct.pack(">H", len(n)) + n for n in (vps, sps, pps))
    fu_head = bytes((0x62, 0x01))  # type 49
    frags = [fu_head + bytes((0x80 | 19,)) + idr[2:1200], fu_head + bytes((0x40 | 19,)) + idr[1200:]]
    sdp = (
        "v=0\r\ns=cam\r\nt=0 0\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n"
        f"a=fmtp:97 sprop-vps={base64.b64encode(vps).decode()}; sprop-sps={base64.b64encode(sps).decode()}; "
        f"sprop-pps={base64.b64encode(pps).decode()}\r\na=control:rtsp://127.0.0.1/cam/video\r\n"
    ).encode()
    stream = [
        frame(0, rtp(1, 500, ap, pt=97)),
        frame(0, rtp(2, 500, frags[0], pt=97)),
        frame(0, rtp(3, 500, frags[1], pt=97, marker=True)),
        frame(0, rtp(4, 3500, trail, pt=97, marker=True)),
    ]
    reader = opened(ScriptedCamera(plain(sdp), stream))
    assert reader.stream is not None
    cc = reader.stream.codec_context
    assert (cc.name, cc.width, cc.height) == ("hevc", 1280, 720)
    key, delta = take(reader, 2)
    assert bytes(key) == START + vps + START + sps + START + pps + START + idr
    assert key.is_keyframe and not delta.is_keyframe
    assert bytes(delta) == START + trail and (key.pts, delta.pts) == (0, 3000)


def test_digest_with_qop_auth_is_answered_as_rfc_2617_says(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    inner = plain(h264_sdp([sps, pps]))
    checked: list[str] = []

    def answer(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        auth = hdrs.get("authorization", "")
        if not auth.startswith("Digest "):
            challenge = 'Digest realm="cam", nonce="n0nce", qop="auth,auth-int", opaque="op"'
            return 401, {"WWW-Authenticate": challenge}, b""
        f = dict(re.findall(r'(\w+)="?([^",]*)"?', auth[7:]))
        ha1 = hashlib.md5(b"admin:cam:p@ss w").hexdigest()
        ha2 = hashlib.md5(f"{method}:{f['uri']}".encode()).hexdigest()
        want = hashlib.md5(f"{ha1}:n0nce:{f['nc']}:{f['cnonce']}:auth:{ha2}".encode()).hexdigest()
        if f["response"] != want or f["qop"] != "auth" or f["opaque"] != "op" or f["username"] != "admin":
            return 401, {}, b""
        checked.append(f"{method} {f['nc']}")
        return inner(method, hdrs)

    cam = ScriptedCamera(answer, [frame(0, rtp(1, 0, bytes((0x65, 1, 2, 3)), marker=True))])
    reader = opened(cam, url=cam.url.replace("rtsp://", "rtsp://admin:p%40ss%20w@"))
    assert take(reader, 1)[0].is_keyframe
    # Every request after the challenge carries a fresh count; no credentials in any request line.
    assert checked == ["OPTIONS 00000001", "DESCRIBE 00000002", "SETUP 00000003", "PLAY 00000004"]
    assert all("admin" not in h["uri"] for _, h in cam.requests)


def test_keep_alives_follow_the_session_timeout_and_a_stale_nonce(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    inner = plain(h264_sdp([sps, pps]), Session="abc;timeout=2")
    nonces: list[tuple[str, str]] = []

    def answer(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        found = re.findall(r'nonce="([^"]*)"', hdrs.get("authorization", ""))
        if not found:
            return 401, {"WWW-Authenticate": 'Digest realm="cam", nonce="n1"'}, b""
        nonce = found[0]
        nonces.append((method, nonce))
        if method == "GET_PARAMETER" and nonce == "n1":
            return 401, {"WWW-Authenticate": 'Digest realm="cam", nonce="n2", stale=TRUE'}, b""
        return inner(method, hdrs)

    key = frame(0, rtp(1, 0, bytes((0x65, 1, 2)), marker=True))
    stream: list[bytes | float] = [key]
    stream += [
        x for i in range(1, 40) for x in (0.1, frame(0, rtp(1 + i, 9000 * i, b"\x41\x9a", marker=True)))
    ]
    cam = ScriptedCamera(answer, stream)
    reader = opened(cam, url=cam.url.replace("rtsp://", "rtsp://admin:pw@"))
    assert len(take(reader, 35)) == 35  # ~3.5 s: a keep-alive every half of the 2 s timeout
    keepalives = [n for m, n in nonces if m == "GET_PARAMETER"]  # OPTIONS listed GET_PARAMETER
    assert keepalives[:1] == ["n1"] and keepalives[1:] and set(keepalives[1:]) == {"n2"}, nonces
    assert 2 <= len(keepalives) <= 5, nonces


def test_refusals_are_typed(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    inner = plain(h264_sdp([sps, pps]))

    def refuse_all(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (
            (200, {}, b"") if method == "OPTIONS" else (401, {"WWW-Authenticate": 'Basic realm="cam"'}, b"")
        )

    cam = ScriptedCamera(refuse_all, [])
    with pytest.raises(SourceUnauthorized):
        opened(cam, url=cam.url.replace("rtsp://", "rtsp://admin:wrong@"))

    def no_tcp(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (461, {}, b"") if method == "SETUP" else inner(method, hdrs)

    with pytest.raises(TransportRefused):
        opened(ScriptedCamera(no_tcp, []))

    audio_only = b"v=0\r\ns=cam\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    with pytest.raises(ReaderUnsupported, match="offers PCMA"):
        opened(ScriptedCamera(plain(audio_only), []))

    # A 4xx may be how this server takes camhub's requests: FFmpeg's reader gets the camera.
    def bad_setup(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (400, {}, b"") if method == "SETUP" else inner(method, hdrs)

    with pytest.raises(ReaderUnsupported, match="SETUP answered 400"):
        opened(ScriptedCamera(bad_setup, []))

    # A 5xx is the camera busy: the same reader tries again at the next reconnect.
    def busy(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (503, {}, b"") if method == "DESCRIBE" else inner(method, hdrs)

    with pytest.raises(SourceOpenError, match="DESCRIBE answered 503") as err:
        opened(ScriptedCamera(busy, []))
    assert not isinstance(err.value, ReaderUnsupported)

    # A stream it cannot frame is handed on too.
    garbage = [frame(0, rtp(1, 0, bytes((0x65, 1)), marker=True)), b"RTSP/1.0 200 OK\r\n" + b"x" * 20000]
    reader = opened(ScriptedCamera(inner, garbage))
    with pytest.raises(ReaderUnsupported, match="garbage"):
        take(reader, 2)


def test_b_frames_are_handed_to_ffmpeg(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    p = bytes((0x41, 0x9A, 1))
    stream = [
        frame(0, rtp(1, 0, bytes((0x65, 1, 2)), marker=True)),
        frame(0, rtp(2, 18000, p, marker=True)),  # P, shown after the B-frame that follows it
        frame(0, rtp(3, 6000, p, marker=True)),
        frame(0, rtp(4, 12000, p, marker=True)),
    ]
    reader = opened(ScriptedCamera(plain(h264_sdp([sps, pps])), stream))
    with pytest.raises(ReaderUnsupported, match="B-frames"):
        take(reader, 4)


def test_a_picture_that_never_ends_is_cut_off_at_the_unit_bound(opened) -> None:  # type: ignore[no-untyped-def]
    """A camera that starts a fragmented NAL unit and never ends it (no end bit, no marker, no new
    timestamp): the reader ends the connection at MAX_UNIT_BYTES instead of growing one buffer."""
    sps, pps = _param_sets("h264", 320, 240)
    chunk = b"\x33" * 60000
    count = MAX_UNIT_BYTES // len(chunk) + 2
    stream: list[bytes | float] = [
        frame(0, rtp(1, 0, bytes((0x65, 1)), marker=True)),
        frame(0, rtp(2, 6000, bytes((0x5C, 0x81)) + chunk)),
    ]
    stream += [frame(0, rtp(3 + i, 6000, bytes((0x5C, 0x01)) + chunk)) for i in range(count)]
    reader = opened(ScriptedCamera(plain(h264_sdp([sps, pps])), stream))
    it = reader.demux()
    assert next(it).is_keyframe
    with pytest.raises(SourceEnded, match="without ending a picture"):
        next(it)


def test_rtcp_alone_is_a_stall_within_the_read_timeout(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    rtcp = frame(1, b"\x80\xc8\x00\x06" + b"\x00" * 24)
    stream: list[bytes | float] = [frame(0, rtp(1, 0, bytes((0x65, 1)), marker=True))]
    # 4 s of RTCP every 0.7 s, no video: each would restart a fixed socket timeout of 1 s.
    stream += [x for _ in range(6) for x in (0.7, rtcp)]
    reader = opened(ScriptedCamera(plain(h264_sdp([sps, pps])), stream), read_timeout_s=1.0)
    it = reader.demux()
    next(it)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        next(it)
    assert 0.9 <= time.monotonic() - t0 <= 1.3  # at the read timeout, not at the RTCP after it (1.4)


def test_sdp_tracks_and_control_urls() -> None:
    sps, pps = _param_sets("h264", 320, 240)
    track, aggregate = parse_sdp(h264_sdp([sps, pps]).decode(), "rtsp://cam/live/")
    assert (track.codec, track.payload_type, track.clock_rate) == ("h264", 96, 90000)
    assert track.control == "rtsp://cam/live/trackID=0" and aggregate == "rtsp://cam/live/"
    assert track.param_sets == (sps, pps)
    sdp = "v=0\r\na=control:rtsp://cam/agg\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    track, aggregate = parse_sdp(sdp, "rtsp://cam/x")
    assert track.control == aggregate == "rtsp://cam/agg" and track.param_sets == ()
    interleaved = sdp + "a=fmtp:96 packetization-mode=2\r\n"
    with pytest.raises(SourceOpenError, match="offers H264"):
        parse_sdp(interleaved, "rtsp://cam/x")


AAC_SDP = (
    "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n"
    "a=fmtp:97 streamtype=5;profile-level-id=15;mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;"
    "indexdeltalength=3\r\na=control:trackID=1\r\n"
)


def with_audio(
    sdp: bytes, play: dict[str, str] | None = None
) -> Callable[[str, dict[str, str]], tuple[int, dict[str, str], bytes]]:
    """A camera that answers each SETUP on the channels asked for, and PLAY with `play`'s headers."""
    base = plain(sdp)

    def answer(method: str, hdrs: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if method == "SETUP":
            asked = re.search(r"interleaved=\d+-\d+", hdrs.get("transport", ""))
            assert asked, hdrs
            return (
                200,
                {"Session": "abc;timeout=10", "Transport": f"RTP/AVP/TCP;unicast;{asked.group(0)}"},
                b"",
            )
        if method == "PLAY":
            return 200, {"Session": "abc", **(play or {})}, b""
        return base(method, hdrs)

    return answer


def sender_report(ntp: float, rtp_ts: int) -> bytes:
    """An RTCP sender report (RFC 3550 §6.4.1) followed by an empty receiver report, as a compound."""
    sr = struct.pack(">BBHIIIIII", 0x80, 200, 6, 0x1234, int(ntp), int(ntp % 1 * 2**32), rtp_ts, 10, 1000)
    return sr + struct.pack(">BBHI", 0x80, 201, 1, 0x1234)


def aac_payload(*units: bytes, size: int | None = None) -> bytes:
    """RFC 3640 AAC-hbr: 16 bits of AU-headers-length, a 13+3-bit header per unit, the units."""
    headers = b"".join(struct.pack(">H", (size or len(u)) << 3) for u in units)
    return struct.pack(">H", 16 * len(units)) + headers + b"".join(units)


def split(packets: list[Any]) -> tuple[list[Any], list[Any]]:
    audio = [p for p in packets if isinstance(p, ReaderAudioPacket)]
    return [p for p in packets if not isinstance(p, ReaderAudioPacket)], audio


def test_aac_is_placed_on_the_video_clock_by_rtp_info_then_by_sender_reports(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    sdp = h264_sdp([sps, pps]).replace(b"m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\n", AAC_SDP.encode())
    # PLAY: video RTP time 1000 and audio RTP time 5000 are the same instant.
    info = "url=rtsp://127.0.0.1/cam/trackID=0;seq=1;rtptime=1000,url=trackID=1;seq=1;rtptime=5000"
    au1, au2, big = b"\x21" * 200, b"\x22" * 180, b"\x23" * 600
    p = bytes((0x41, 0x9A))
    stream = [
        frame(2, rtp(1, 5000, aac_payload(au1), pt=97)),  # before any video: nothing to place it by
        frame(0, rtp(1, 1000, bytes((0x65, 0x88)), marker=True)),  # video pts 0
        frame(2, rtp(2, 5000 + 1600, aac_payload(au1, au2), pt=97)),  # two units: 0.1 s and 0.164 s
        frame(0, rtp(2, 1000 + 9000, p, marker=True)),
        # One 600-byte unit in two packets of one timestamp; the marker bit ends it.
        frame(2, rtp(3, 5000 + 3200, aac_payload(big[:300], size=600), pt=97)),
        frame(2, rtp(4, 5000 + 3200, aac_payload(big[300:], size=600), pt=97, marker=True)),
        # The camera's reports: audio RTP 5000 was 50 ms after video RTP 1000 (RTP-Info said 0).
        frame(1, sender_report(100.0, 1000)),
        frame(3, sender_report(100.05, 5000)),
        frame(2, rtp(5, 5000 + 4800, aac_payload(au2), pt=97)),
        frame(0, rtp(3, 1000 + 18000, p, marker=True)),
    ]
    reader = RtspTcpReader(
        ScriptedCamera(with_audio(sdp, {"RTP-Info": info}), stream).url,
        open_timeout_s=5.0,
        read_timeout_s=3.0,
        audio=True,
    )
    try:
        reader.open()
        assert [s.codec_context.name for s in reader.streams.audio] == ["aac"]
        cc = reader.streams.audio[0].codec_context
        assert (cc.sample_rate, cc.channels, cc.extradata) == (16000, 1, bytes.fromhex("1408"))
        video, audio = split(take(reader, 7))
    finally:
        reader.close()
    assert [v.pts for v in video] == [0, 9000, 18000]
    assert [(bytes(a), a.pts, a.duration) for a in audio] == [
        (au1, 1600, 1024),
        (au2, 1600 + 1024, 1024),
        (big, 3200, 1024),
        (au2, 4800 + 800, 1024),  # by the reports from then on: 50 ms later
    ]
    assert all(a.time_base == Fraction(1, 16000) for a in audio)


def test_g711_without_rtp_info_is_placed_by_arrival(opened) -> None:  # type: ignore[no-untyped-def]
    sps, pps = _param_sets("h264", 320, 240)
    stream = [
        frame(0, rtp(1, 7000, bytes((0x65, 0x88)), marker=True)),
        frame(0, rtp(2, 7000 + 9000, bytes((0x41, 0x9A)), marker=True)),  # video at 0.1 s
        frame(2, rtp(1, 123456, b"\xff" * 160, pt=0)),  # sent right after it: placed at 0.1 s
        frame(2, rtp(2, 123456 + 160, b"\xfe" * 160, pt=0)),
        frame(0, rtp(3, 7000 + 18000, bytes((0x41, 0x9A)), marker=True)),
    ]
    cam = ScriptedCamera(with_audio(h264_sdp([sps, pps])), stream)
    reader = RtspTcpReader(cam.url, open_timeout_s=5.0, read_timeout_s=3.0, audio=True)
    try:
        reader.open()
        assert reader.streams.audio[0].codec_context.name == "pcm_mulaw"  # payload type 0, no rtpmap
        video, audio = split(take(reader, 5))
    finally:
        reader.close()
    setups = [h for m, h in cam.requests if m == "SETUP"]
    assert [h["uri"] for h in setups] == ["rtsp://127.0.0.1/cam/trackID=0", "rtsp://127.0.0.1/cam/trackID=1"]
    assert "interleaved=2-3" in setups[1]["transport"] and setups[1]["session"] == "abc"
    assert [v.pts for v in video] == [0, 9000, 18000]
    assert [(a.pts, a.duration, a.size) for a in audio] == [(800, 160, 160), (960, 160, 160)]


def test_receiver_reports_say_what_arrived_and_echo_the_sender_report(opened, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rtsp_client, "RECEIVER_REPORT_S", 0.3)
    sps, pps = _param_sets("h264", 320, 240)
    ntp = 3_900_000_000.25
    stream: list[bytes | float] = [frame(1, sender_report(ntp, 0))]
    for seq in range(65530, 65546):  # the sequence number wraps; 65540 (4 after the wrap) is lost
        if seq != 65540:
            stream += [frame(0, rtp(seq, (seq - 65530) * 6000, bytes((0x41, 0x9A)), marker=True)), 0.05]
    cam = ScriptedCamera(plain(h264_sdp([sps, pps])), stream)
    reader = opened(cam)
    take(reader, 15)
    deadline = time.monotonic() + 3
    while not cam.interleaved and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cam.interleaved, "no receiver report reached the camera"
    channel, packet = cam.interleaved[-1]
    assert channel == 1 and packet[:2] == bytes((0x81, 201)) and len(packet) == 32 + 20
    source, lost, highest, _jitter, lsr, dlsr = struct.unpack(">IIIIII", packet[8:32])
    assert source == 0x1234
    # The last report came after the loss (reports every 0.3 s over 0.75 s of packets): one lost in
    # all, the highest number counted past the wrap; the report whose interval held the loss gave
    # it a fraction.
    assert lost & 0xFFFFFF == 1, hex(lost)
    assert 0x10000 + 5 <= highest <= 0x10000 + 9, highest
    assert any(rr[12] > 0 for _, rr in cam.interleaved), [rr[12] for _, rr in cam.interleaved]
    assert lsr == (int(ntp * 2**32) >> 16) & 0xFFFFFFFF and 0 < dlsr < 65536 * 3
    assert packet[32:34] == bytes((0x81, 202)) and b"camhub" in packet[32:]  # SDES CNAME


def test_audio_follows_the_sender_reports_when_the_clocks_drift_apart(opened) -> None:  # type: ignore[no-untyped-def]
    """The audio clock ran 30 ms fast over 10 s (its reports say so): the audio moves back to the
    video's clock. 5 ms more over the next 10 s is under DRIFT_S: it stays, no gap, no overlap."""
    sps, pps = _param_sets("h264", 320, 240)
    g711 = b"\xff" * 160
    stream = [
        frame(0, rtp(1, 0, bytes((0x65, 0x88)), marker=True)),
        frame(1, sender_report(100.0, 0)),  # video RTP 0 is NTP 100
        frame(3, sender_report(100.0, 8000)),  # audio RTP 8000 too
        frame(2, rtp(1, 8000 + 800, g711, pt=0)),  # 0.1 s: pts 800
        frame(3, sender_report(110.0, 8000 + 80000 + 240)),  # 10 s later by NTP, 10.03 s by its clock
        frame(2, rtp(2, 88240 + 800, g711, pt=0)),  # 10.1 s: pts 80800
        frame(3, sender_report(120.0, 88240 + 80000 + 40)),  # 5 ms more: under DRIFT_S
        frame(2, rtp(3, 168280 + 800, g711, pt=0)),  # kept where the last move put it: 160840
        frame(0, rtp(2, 9000, bytes((0x41, 0x9A)), marker=True)),
    ]
    cam = ScriptedCamera(with_audio(h264_sdp([sps, pps])), stream)
    reader = RtspTcpReader(cam.url, open_timeout_s=5.0, read_timeout_s=3.0, audio=True)
    try:
        reader.open()
        _, audio = split(take(reader, 5))
    finally:
        reader.close()
    assert [a.pts for a in audio] == [800, 80800, 160840]


def test_audio_the_reader_leaves_to_ffmpeg_or_to_nobody() -> None:
    base = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    assert parse_sdp_audio(base, "rtsp://cam/") is None
    latm = base + "m=audio 0 RTP/AVP 98\r\na=rtpmap:98 MP4A-LATM/16000/1\r\n"
    with pytest.raises(ReaderUnsupported, match="MP4A-LATM"):
        parse_sdp_audio(latm, "rtsp://cam/")
    g726 = base + "m=audio 0 RTP/AVP 99\r\na=rtpmap:99 G726-32/8000\r\n"
    assert parse_sdp_audio(g726, "rtsp://cam/") is None  # not recorded by either reader: video only
    opus = base + "m=audio 0 RTP/AVP 100\r\na=rtpmap:100 opus/48000/2\r\na=control:a\r\n"
    track = parse_sdp_audio(opus, "rtsp://cam/s/")
    assert track is not None and (track.codec, track.clock_rate, track.channels, track.control) == (
        "opus",
        48000,
        2,
        "rtsp://cam/s/a",
    )
    aac = parse_sdp_audio(base + AAC_SDP, "rtsp://cam/")
    assert aac is not None and (aac.codec, aac.size_length, aac.index_length, aac.config) == (
        "aac",
        13,
        3,
        b"\x14\x08",
    )


@pytest.mark.parametrize(
    "packet,samples",
    [
        (bytes((31 << 3,)) + b"x", 960),  # CELT fullband 20 ms, one frame
        (bytes((31 << 3 | 3, 3)) + b"x", 2880),  # three 20 ms frames (code 3)
        (bytes((3 << 3 | 1,)) + b"x", 5760),  # SILK 60 ms, two frames (code 1)
        (bytes((13 << 3,)), 960),  # hybrid 20 ms
        (b"", 0),
    ],
)
def test_opus_packet_durations_come_from_the_toc(packet: bytes, samples: int) -> None:
    assert rtsp_client._opus_samples(packet) == samples


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("size", [(320, 240), (1920, 1080), (642, 362), (176, 144)])
def test_sps_size_matches_the_encoder(codec: str, size: tuple[int, int]) -> None:
    sets = _param_sets(codec, *size)
    sps = next(n for n in sets if nal_type(n[0], codec) == (33 if codec == "hevc" else 7))
    assert sps_size(sps, codec) == size
    with pytest.raises(ValueError):
        sps_size(sps[:6], codec)


def _encoded(width: int, height: int, frames: int) -> list[bytes]:
    """Annex B access units from a real encoder (a GOP of `frames`, in-band SPS/PPS at the IDR)."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = width, height, "yuv420p", Fraction(1, 15)
    enc.options = {"tune": "zerolatency", "preset": "ultrafast"}
    enc.open()
    out = []
    for i in range(frames):
        picture = np.full((height, width, 3), (i * 8) % 256, np.uint8)
        f = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        f.pts = i
        out += [bytes(p) for p in enc.encode(f)]
    out += [bytes(p) for p in enc.encode(None)]
    return out


async def test_a_stale_sdp_gives_way_to_the_first_keyframes_parameter_sets() -> None:
    """The SDP says 640x360, the stream is 320x240 (a camera that changed its stream and not its SDP):
    the packets carry the stream's own size and parameter sets from its first keyframe on. (FFmpeg's
    reader, given this same stream, probed for 9 s and opened it as 0x0; not asserted here.)"""
    reader = "camhub"
    stale = _param_sets("h264", 640, 360)
    stream: list[bytes | float] = []
    seq = 0
    for i, unit in enumerate(_encoded(320, 240, 30)):
        nals = nal_units(unit)
        for j, nal in enumerate(nals):
            seq += 1
            stream.append(frame(0, rtp(seq, i * 6000, nal, marker=j == len(nals) - 1)))
        stream.append(1 / 15)
    cam = ScriptedCamera(plain(h264_sdp(stale)), stream)
    src = RtspSource("cam1", cam.url, reader=reader, read_timeout_s=3.0)
    try:
        await src.open()
        pkts = []
        async for pkt in src.packets():
            pkts.append(pkt)
            if len(pkts) == 10:
                break
    finally:
        await src.close()
        cam.close()
    assert src.reader_used == reader
    assert pkts[0].is_keyframe
    assert pkts[0].params is not None and (pkts[0].params.width, pkts[0].params.height) == (320, 240)
    in_band = [n for n in nal_units(pkts[0].data) if nal_type(n[0], "h264") in (7, 8)]
    assert pkts[0].params.extradata == b"".join(START + n for n in in_band)
    assert all(p.params is pkts[0].params for p in pkts)
