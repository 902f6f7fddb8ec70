"""camhub's own RTSP reader for RTP interleaved over TCP (RFC 2326 §10.12): the common case, read
with one system call per burst instead of libavformat's three per RTP packet.

Why it exists (issue 17): FFmpeg's RTSP demuxer reads the interleaved TCP stream unbuffered, a
`poll` and a `recv` for the `$`, another pair for the 3-byte header and one for the payload of every
RTP packet: ~1,100 system calls a second for one 2 Mbit/s camera, napping or not, which kept the whole
daemon above 1.2x of `ffmpeg -c copy` on small machines. Reading the socket into one buffer and
splitting it here costs a `recv` per burst: bench/reader_floor.py measured a reader like this at
0.56-0.65x of ffmpeg's CPU at 8 cameras, against ~1.0x for the PyAV reader (README, "Reading RTSP
without libavformat").

Scope: what nearly every camera sends over TCP, and nothing more: H.264 (RFC 6184, packetization
modes 0 and 1: single NAL units, STAP-A, FU-A) and H.265 (RFC 7798 without DONL: single NAL units,
AP, FU), `rtsp://` with Basic or Digest (RFC 2617, qop=auth) credentials, and, when the camera's
audio is on, the audio the recorder keeps: AAC (RFC 3640 AAC-hbr/lbr), G.711 (RFC 3551) and Opus
(RFC 7587), set up on the next interleaved channels (see `_Sound` for how it is placed on the video's
clock). Everything else goes to FFmpeg, which `RtspSource` (hub/ingest/rtsp.py) chooses before
opening: UDP, `rtsps://`; so does AAC as LATM or another RFC 3640 mode (`ReaderUnsupported` at
DESCRIBE). What can only be learned while streaming (interleaved packetization, B-frames, whose decode order RTP does
not carry) raises `ReaderUnsupported`, and the camera's loop reads it with FFmpeg from then on. So
does a camera whose server this reader cannot talk to: a 4xx to DESCRIBE, SETUP or PLAY, an SDP
without a video track it reads, no SPS, or a stream it cannot frame. A new reader must never cost a
camera its recording: FFmpeg then gets the camera until the hub restarts.

The session: OPTIONS, DESCRIBE (following up to `MAX_REDIRECTS` 3xx), SETUP of the first H.264/H.265
video track (and of the first audio track, with audio on), PLAY. The connection is kept alive as
FFmpeg keeps it: GET_PARAMETER when the server lists it in OPTIONS, else OPTIONS, every half of the
Session timeout (RFC 2326 §12.37), capped at `KEEPALIVE_MAX_S`, and RTCP receiver reports go out
every `RECEIVER_REPORT_S` on each track's RTCP channel, as FFmpeg sends them (`_Received`). Responses to those, and any request the server sends, are skipped in the stream.

Access units: RTP packets of one timestamp are one access unit; it is complete at the marker bit
(RFC 6184 §5.1) or, if a camera omits it, when a packet with a new timestamp begins. So a frame is
handed on as soon as its last packet is read, not a frame later as FFmpeg's parser does
(`MediaPacket.bounds_next` is False). A lost RTP packet (a gap in the sequence numbers, which over TCP
only a camera's own send queue makes) marks its access unit corrupt and drops a fragmented NAL unit it
broke; the recorder keeps corrupt frames (later ones reference them).

Timestamps: the RTP clock (90 kHz), unwrapped to 64 bits and counted from the first packet, as pts
and dts both: cameras send no B-frames, and one that does (a timestamp stepping back within a GOP) is
handed to FFmpeg (`ReaderUnsupported`). Jumps and clock resets are `TimestampFixer`'s.

Stalls: the socket's timeout bounds every read, and no video for `read_timeout_s` while RTCP or other
data keep the connection busy raises `TimeoutError` as a silent socket does: both become
`SourceStalled` in hub/ingest/rtsp.py. No thread here ever blocks past that, so `close()` needs no
watchdog's help.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import av

from hub.ingest.source import SourceEnded, SourceOpenError, find_sps, nal_units, sps_size
from hub.redact import redact

log = logging.getLogger(__name__)

START = b"\x00\x00\x00\x01"
USER_AGENT = "camhub"
# One recv() reads up to this much; it also bounds one RTSP message skipped in the stream (an
# interleaved frame is at most 4 + 65535 bytes). A 2 Mbit/s camera sends ~150 KB in a 0.6 s nap (a nap
# lets at most rtsp.NAP_BYTES, 192 KiB, pile up).
BUFFER_BYTES = 512 * 1024
MAX_REDIRECTS = 3
KEEPALIVE_MAX_S = 30.0
DEFAULT_SESSION_TIMEOUT_S = 60.0
# NAL units without a picture (parameter sets, SEI) carried to the next picture; past this the camera
# sends no pictures at all and they are dropped.
MAX_CARRIED_NALS = 64
# One access unit's payload; past it the camera is cut off and reconnected. A 4K intra picture at a
# camera's highest quality is a few MiB; without a bound, a camera (or anyone between it and the hub)
# that never ends a unit (no marker, no new timestamp, no FU end) grows one buffer until the daemon's
# MemoryMax kills recording for every camera.
MAX_UNIT_BYTES = 16 * 1024 * 1024
# RTCP receiver reports, one per track this often (RFC 3550 §6.4.2): FFmpeg's reader sends them, and
# a camera may end a session that sends none however many keep-alives it gets (a Dahua IPC did, after
# a minute: alexeyvasilyev/rtsp-client-android#2).
RECEIVER_REPORT_S = 5.0
# Audio placed by sender reports moves again when a later pair of reports puts it this far away.
DRIFT_S = 0.02
# A header block larger than this is not an RTSP response from a camera.
MAX_HEADER_BYTES = 16 * 1024
_SESSION = re.compile(r"^\s*([^;\s]+)(?:.*?;\s*timeout\s*=\s*(\d+))?", re.I)
_INTERLEAVED = re.compile(r"interleaved\s*=\s*(\d+)(?:-(\d+))?", re.I)
# H.265 IRAP pictures (BLA, IDR, CRA: NAL unit types 16-23, ITU-T H.265 §7.4.2.2): a decoder starts there.
_HEVC_IRAP = frozenset(range(16, 24))
# What an interleaved frame ('$') or an RTSP message (a status line or a request method) begins with.
_MESSAGE_FIRST_BYTES = frozenset(b"$ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# An interleaved frame's header and the RTP fixed header's first 8 bytes in one call: "$", channel,
# length; V/P/X/CC, M/PT, sequence number, timestamp (RFC 2326 §10.12, RFC 3550 §5.1).
_FRAME_HEAD = struct.Struct(">BBHBBHI")
_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))')


class SourceUnauthorized(SourceOpenError):
    """The camera refused the credentials (RTSP 401/403)."""

    code = "unauthorized"


class TransportRefused(SourceOpenError):
    """The camera refused the RTP transport asked for (RTSP 461 Unsupported Transport)."""

    code = "transport"


class ReaderUnsupported(SourceOpenError):
    """The stream needs something only FFmpeg's reader does (see the module docstring); raised by
    `open()` or while streaming, and the camera's loop reads it with FFmpeg from then on."""

    code = "reader"


@dataclass(frozen=True)
class VideoTrack:
    """The first H.264/H.265 video track of a camera's SDP (RFC 4566)."""

    codec: str  # "h264" or "hevc"
    payload_type: int
    clock_rate: int
    control: str  # the track's URL for SETUP
    param_sets: tuple[bytes, ...]  # NAL units (no start codes) from sprop-*, in VPS/SPS/PPS order


def _refused(method: str, status: int) -> SourceOpenError:
    """A request the camera answered with an error. A 4xx may be how this camera's server takes
    camhub's requests and not FFmpeg's (headers, URLs): FFmpeg's reader gets the camera. A 5xx is the
    camera being busy or broken, which a reconnect with the same reader may outlive."""
    if 500 <= status < 600:
        return SourceOpenError(f"{method} answered {status}")
    return ReaderUnsupported(f"{method} answered {status} to camhub's reader")


@dataclass(frozen=True)
class AudioRtp:
    """The first audio track of a camera's SDP that this reader depacketises (RFC 3640 AAC, RFC 3551
    G.711, RFC 7587 Opus): FFmpeg's codec name, as hub/ingest/audio.py expects it."""

    codec: str  # "aac", "pcm_mulaw", "pcm_alaw" or "opus"
    payload_type: int
    clock_rate: int
    channels: int
    control: str
    config: bytes = b""  # AAC: the AudioSpecificConfig (fmtp `config`)
    size_length: int = 0  # AAC: the AU-header's bits for AU-size, AU-Index, AU-Index-delta
    index_length: int = 0
    index_delta_length: int = 0


@dataclass(frozen=True)
class _Media:
    kind: str  # "video", "audio", ...
    formats: tuple[int, ...]
    rtpmaps: dict[int, tuple[str, int, int]]  # payload type -> (NAME, clock rate, channels)
    fmtps: dict[int, dict[str, str]]
    control: str


def _sections(sdp: str, base: str) -> tuple[list[_Media], str]:
    """The SDP's media sections and the aggregate control URL for PLAY."""
    session_control = ""
    sections: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    for line in sections[0]:
        if line.startswith("a=control:"):
            session_control = line[len("a=control:") :].strip()
    aggregate = _resolve(base, session_control) if session_control not in ("", "*") else base
    out = []
    for media in sections[1:]:
        m = media[0].split()
        if len(m) < 4:
            continue
        rtpmaps: dict[int, tuple[str, int, int]] = {}
        fmtps: dict[int, dict[str, str]] = {}
        control = ""
        for line in media[1:]:
            if line.startswith("a=rtpmap:"):
                pt, _, enc = line[len("a=rtpmap:") :].partition(" ")
                name, _, clock = enc.strip().partition("/")
                rate, _, channels = clock.partition("/")
                if pt.isdigit():
                    rtpmaps[int(pt)] = (name.upper(), _number(rate, 90000), _number(channels, 1))
            elif line.startswith("a=fmtp:"):
                pt, _, params = line[len("a=fmtp:") :].partition(" ")
                if pt.isdigit():
                    fmtps[int(pt)] = {
                        k.strip().lower(): v.strip()
                        for k, _, v in (p.partition("=") for p in params.split(";"))
                        if k.strip()
                    }
            elif line.startswith("a=control:"):
                control = line[len("a=control:") :].strip()
        formats = tuple(int(f) for f in m[3:] if f.isdigit() and len(f) < 4)
        track_url = _resolve(base, control) if control not in ("", "*") else aggregate
        out.append(_Media(m[0][2:], formats, rtpmaps, fmtps, track_url))
    return out, aggregate


def parse_sdp(sdp: str, base: str) -> tuple[VideoTrack, str]:
    """The first recordable video track and the aggregate control URL for PLAY.

    Raises SourceOpenError when the SDP has no H.264 or H.265 video (what the recorder can keep)."""
    sections, aggregate = _sections(sdp, base)
    seen = []
    for media in sections:
        if media.kind != "video":
            seen += [name for name, _, _ in media.rtpmaps.values()]
            continue
        for pt in media.formats:
            name, rate, _ = media.rtpmaps.get(pt, ("", 90000, 1))
            seen.append(name or f"payload {pt}")
            fmtp = media.fmtps.get(pt, {})
            if name == "H264":
                if fmtp.get("packetization-mode", "0") not in ("0", "1"):
                    break  # interleaved mode (2): FFmpeg's
                sets = _sprop(fmtp.get("sprop-parameter-sets", ""))
                codec = "h264"
            elif name in ("H265", "HEVC"):
                if _number(fmtp.get("sprop-max-don-diff", "0"), 1) > 0:
                    break  # DONL fields in every packet: FFmpeg's
                sets = tuple(
                    nal
                    for key in ("sprop-vps", "sprop-sps", "sprop-pps")
                    for nal in _sprop(fmtp.get(key, ""))
                )
                codec = "hevc"
            else:
                continue
            return VideoTrack(codec, pt, rate, media.control, sets), aggregate
    raise ReaderUnsupported(
        "the camera offers no H.264 or H.265 video camhub's reader takes"
        + (f" (it offers {', '.join(seen)})" if seen else "")
    )


# Payload types RFC 3551 assigns, for an SDP that names them without an rtpmap.
_STATIC_AUDIO = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1)}
# AAC forms FFmpeg's reader takes that this one does not: the camera's audio needs FFmpeg.
_FFMPEG_AUDIO = frozenset({"MP4A-LATM", "MPEG4-GENERIC"})


def parse_sdp_audio(sdp: str, base: str) -> AudioRtp | None:
    """The first audio track this reader depacketises; None when the SDP has no audio the hub records
    (no audio at all, or a codec hub/ingest/audio.py does not record either: video only, as with
    FFmpeg). Raises ReaderUnsupported for AAC in a form only FFmpeg's reader takes (LATM, RFC 3640
    modes other than AAC-hbr/lbr)."""
    sections, _ = _sections(sdp, base)
    for media in sections:
        if media.kind != "audio":
            continue
        for pt in media.formats:
            name, rate, channels = media.rtpmaps.get(pt) or _STATIC_AUDIO.get(pt, ("", 0, 1))
            fmtp = media.fmtps.get(pt, {})
            if name in ("PCMU", "PCMA") and rate == 8000:
                codec = "pcm_mulaw" if name == "PCMU" else "pcm_alaw"
                return AudioRtp(codec, pt, rate, channels, media.control)
            if name == "OPUS":
                return AudioRtp("opus", pt, rate, channels, media.control)
            if name == "MPEG4-GENERIC" and fmtp.get("mode", "").lower() in ("aac-hbr", "aac-lbr"):
                try:
                    config = bytes.fromhex(fmtp.get("config", ""))
                except ValueError:
                    config = b""
                size = _number(fmtp.get("sizelength", ""), 0)
                index = _number(fmtp.get("indexlength", "0"), 0)
                delta = _number(fmtp.get("indexdeltalength", "0"), 0)
                if config and 0 < size <= 16 and index <= 8 and delta <= 8:
                    return AudioRtp("aac", pt, rate, channels, media.control, config, size, index, delta)
            if name in _FFMPEG_AUDIO:
                raise ReaderUnsupported(f"the camera sends AAC as {name} {fmtp.get('mode', '')}".rstrip())
        return None  # only the first audio section counts, as FFmpeg's first audio stream does
    return None


def _number(text: str, default: int) -> int:
    """A decimal attribute value of an SDP (0 or more), or `default` for anything else."""
    text = text.strip()
    return int(text) if text.isdigit() and 0 < len(text) < 10 else default


def _sprop(value: str) -> tuple[bytes, ...]:
    out = []
    for item in value.split(","):
        item = item.strip()
        if item:
            try:
                out.append(base64.b64decode(item + "=" * (-len(item) % 4)))
            except ValueError:
                log.warning("ignoring an undecodable parameter set in the SDP")
    return tuple(nal for nal in out if nal)


def _resolve(base: str, control: str) -> str:
    """A control attribute made absolute (RFC 2326 §C.1.1): as FFmpeg joins them."""
    if "://" in control:
        return control
    if control.startswith("/"):
        u = urlsplit(base)
        return urlunsplit((u.scheme, u.netloc, control, "", ""))
    return base if not control else base.rstrip("/") + "/" + control


class RtspTcpReader:
    """One RTSP session reading one video track (and with `audio`, one audio track) over TCP;
    `demux()` yields its access units, audio as `ReaderAudioPacket`s.

    Used on one thread (the source's demux thread); `close()` may come from it only. Quacks like the
    part of a PyAV input container hub/ingest/rtsp.py uses (`demux`, `close`), with `stream`
    standing in for the container's video stream."""

    def __init__(
        self, url: str, *, open_timeout_s: float, read_timeout_s: float, audio: bool = False
    ) -> None:
        u = urlsplit(url)
        if u.scheme != "rtsp" or not u.hostname:
            raise SourceOpenError(f"not an rtsp:// URL: {redact(url)}")
        self._user = unquote(u.username or "")
        self._password = unquote(u.password or "")
        self._has_credentials = u.username is not None
        self.url = self._strip_credentials(url)
        self._read_timeout_s = read_timeout_s
        self._sock: socket.socket | None = None
        self._buf = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._cseq = 0
        self._session = ""
        self._keepalive_method = "OPTIONS"
        self._keepalive_s = DEFAULT_SESSION_TIMEOUT_S / 2
        self._challenge: dict[str, str] | None = None
        self._basic = False
        self._nc = 0
        self._deadline = time.monotonic() + open_timeout_s
        self.track: VideoTrack | None = None
        self.stream: ReaderStream | None = None
        self._want_audio = audio
        self._sound: _Sound | None = None
        self._video_rx = _Received()
        self._ssrc = int.from_bytes(os.urandom(4), "big")  # ours, in receiver reports
        # What hub/ingest/rtsp.py reads of a container's streams (`streams.audio`), once open.
        self.streams = _Streams([], [])
        self._ready: deque[Any] = deque()  # access units complete and not yet handed on
        self._closed = False

    @staticmethod
    def _strip_credentials(url: str) -> str:
        try:
            u = urlsplit(url)
            port = u.port
        except ValueError as exc:  # a Content-Base or Location the camera got wrong
            raise ReaderUnsupported(f"the camera named a URL that is not one: {exc}") from exc
        netloc = u.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if port:
            netloc += f":{port}"
        return urlunsplit((u.scheme, netloc, u.path, u.query, ""))

    # --- the session ---------------------------------------------------------------------------

    def open(self) -> ReaderStream:
        """OPTIONS, DESCRIBE, SETUP, PLAY; learn the stream's codec and size. Raises SourceOpenError
        (SourceUnauthorized, TransportRefused, ReaderUnsupported) or OSError."""
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            self._connect(url)
            status, hdrs, _ = self._request("OPTIONS", url)
            if status == 200 and "GET_PARAMETER" in hdrs.get("public", "").upper():
                self._keepalive_method = "GET_PARAMETER"
            status, hdrs, body = self._request("DESCRIBE", url, {"Accept": "application/sdp"})
            if status in (301, 302, 303, 305, 307) and hdrs.get("location"):
                url = self._strip_credentials(hdrs["location"])
                self._disconnect()
                continue
            break
        if status in (401, 403):
            raise SourceUnauthorized(f"the camera refused the credentials ({status})")
        if status != 200:
            raise _refused("DESCRIBE", status)
        base = hdrs.get("content-base") or hdrs.get("content-location") or url
        sdp, base = body.decode("utf-8", "replace"), self._strip_credentials(base)
        track, aggregate = parse_sdp(sdp, base)
        self.track = track
        status, hdrs, _ = self._request(
            "SETUP", track.control, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        if status == 461:
            # Worded as for FFmpeg's reader (hub/ingest/rtsp.py _open_error): one line to grep for.
            raise TransportRefused("the camera refused this RTP transport (461): SETUP of RTP over TCP")
        if status in (401, 403):
            raise SourceUnauthorized(f"the camera refused the credentials ({status})")
        if status != 200:
            raise _refused("SETUP", status)
        session = _SESSION.match(hdrs.get("session", ""))
        if not session:
            raise ReaderUnsupported("SETUP answered without a Session")
        self._session = session.group(1)
        if session.group(2):
            self._keepalive_s = min(KEEPALIVE_MAX_S, max(1.0, int(session.group(2)) / 2))
        channel = _INTERLEAVED.search(hdrs.get("transport", ""))
        self._channel = int(channel.group(1)) if channel else 0
        sound = parse_sdp_audio(sdp, base) if self._want_audio else None
        if sound is not None:
            self._setup_audio(sound)
        status, hdrs, _ = self._request("PLAY", aggregate, {"Range": "npt=0.000-"})
        if status != 200:
            raise _refused("PLAY", status)
        if self._sound is not None:
            self._sound.play_info(hdrs.get("rtp-info", ""), track.control)
        self._aggregate = aggregate
        self.stream = self._learn_stream(track)
        self.streams = _Streams([self.stream], [] if self._sound is None else [self._sound.stream])
        return self.stream

    def _setup_audio(self, track: AudioRtp) -> None:
        """SETUP the audio track on the next interleaved channels, in the video's session."""
        first = self._channel + 2
        status, hdrs, _ = self._request(
            "SETUP", track.control, {"Transport": f"RTP/AVP/TCP;unicast;interleaved={first}-{first + 1}"}
        )
        if status in (401, 403):
            raise SourceUnauthorized(f"the camera refused the credentials ({status})")
        if status != 200:
            raise _refused("SETUP", status)
        channel = _INTERLEAVED.search(hdrs.get("transport", ""))
        self._sound = _Sound(track, int(channel.group(1)) if channel else first, self.track.clock_rate)
        log.debug("audio: %s %d Hz on channel %d", track.codec, track.clock_rate, self._sound.channel)

    def attach(
        self, sock: socket.socket, track: VideoTrack, channel: int = 0, audio: AudioRtp | None = None
    ) -> None:
        """Read `track` from `sock`, a session already playing (what `open()` ends with) on interleaved
        `channel` (and `audio` on the two after its RTCP); `demux()` then yields its access units. For
        the parser's tests and fuzzing, which feed it bytes no camera sends."""
        self._sock, self.track, self._channel, self._aggregate = sock, track, channel, self.url
        if audio is not None:
            self._sound = _Sound(audio, channel + 2, track.clock_rate)
        self._frames_it = self._frames()

    def _learn_stream(self, track: VideoTrack) -> ReaderStream:
        """The codec parameters: from the SDP's parameter sets, or the first in-band SPS if it has none
        (read within the open timeout; the frames read meanwhile are handed on first)."""
        sets = track.param_sets
        sps = find_sps(sets, track.codec)
        frames = self._frames()
        while sps is None:
            if time.monotonic() > self._deadline:
                raise ReaderUnsupported("the camera sent no SPS (picture size) within the open timeout")
            pkt = next(frames)
            self._ready.append(pkt)
            sps = find_sps(nal_units(bytes(pkt)), track.codec)
        try:
            width, height = sps_size(sps, track.codec)
        except ValueError as exc:
            raise ReaderUnsupported(f"cannot read the picture size from the camera's SPS: {exc}") from exc
        extradata = b"".join(START + n for n in sets)
        self._frames_it = frames
        return ReaderStream(track.codec, width, height, Fraction(1, track.clock_rate), extradata)

    def _connect(self, url: str) -> None:
        u = urlsplit(url)
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("open timed out")
        self._sock = socket.create_connection((u.hostname, u.port or 554), timeout=remaining)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._start = self._end = 0

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _request(
        self, method: str, uri: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request and wait for its response (interleaved data before it is dropped: only
        keep-alives are sent once PLAY began, and their responses are skipped by `_frames`)."""
        assert self._sock is not None
        for attempt in range(2):
            self._sock.settimeout(max(0.01, self._deadline - time.monotonic()))
            self._send(method, uri, headers)
            status, hdrs, body = self._response()
            if status == 401 and attempt == 0 and self._has_credentials:
                if self._learn_challenge(hdrs.get("www-authenticate", "")):
                    continue
            return status, hdrs, body
        return status, hdrs, body

    def _send(self, method: str, uri: str, headers: dict[str, str] | None = None) -> None:
        assert self._sock is not None
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self._session:
            lines.append(f"Session: {self._session}")
        auth = self._authorization(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _learn_challenge(self, www: str) -> bool:
        """Take the server's challenge (RFC 2617 §3.2.1); False when there is nothing to answer."""
        scheme, _, rest = www.strip().partition(" ")
        if scheme.lower() == "basic":
            self._basic = True
            return True
        if scheme.lower() != "digest":
            return False
        params = {k.lower(): a or b for k, a, b in _AUTH_PARAM.findall(rest)}
        if "nonce" not in params or params.get("algorithm", "MD5").upper() != "MD5":
            return False
        self._challenge = params
        return True

    def _authorization(self, method: str, uri: str) -> str | None:
        if self._basic:
            return "Basic " + base64.b64encode(f"{self._user}:{self._password}".encode()).decode()
        c = self._challenge
        if c is None:
            return None
        realm, nonce = c.get("realm", ""), c["nonce"]
        ha1 = hashlib.md5(f"{self._user}:{realm}:{self._password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        fields = [f'username="{self._user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qops = [q.strip() for q in c.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            self._nc += 1
            nc, cnonce = f"{self._nc:08x}", os.urandom(8).hex()
            response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        fields.append(f'response="{response}"')
        if "opaque" in c:
            fields.append(f'opaque="{c["opaque"]}"')
        return "Digest " + ", ".join(fields)

    def _fill(self) -> int:
        """Read what the socket has (at least one byte) after the data held; returns the count."""
        assert self._sock is not None
        buf = self._buf
        if self._start and self._end + 65536 > len(buf):
            held = self._end - self._start
            buf[:held] = buf[self._start : self._end]
            self._start, self._end = 0, held
        if self._end == len(buf):
            raise ReaderUnsupported("an RTSP message larger than the read buffer")
        n = self._sock.recv_into(self._view[self._end :])
        if not n:
            raise ConnectionError("the camera closed the connection")
        self._end += n
        return n

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        """The next RTSP response, skipping interleaved frames before it."""
        while True:
            msg = self._take_message()
            if msg is None:
                self._fill()
                continue
            if msg[0] is not None:
                return msg  # type: ignore[return-value]

    def _take_message(self) -> tuple[int | None, dict[str, str], bytes] | None:
        """Consume one whole item at the buffer's start: an interleaved frame (returned as status
        None) or an RTSP message; None when it is not all in the buffer yet. A request from the
        server is returned with status None too (and left unanswered: a camera sends none we need)."""
        buf, start, end = self._buf, self._start, self._end
        if start >= end:
            return None
        if buf[start] not in _MESSAGE_FIRST_BYTES:
            # Not a frame and not a message: resynchronise at the next '$', as FFmpeg does.
            resync = buf.find(b"$", start + 1, end)
            self._start = end if resync < 0 else resync
            return None, {}, b""
        if buf[start] == 0x24:
            if end - start < 4:
                return None
            size = (buf[start + 2] << 8) | buf[start + 3]
            if end - start < 4 + size:
                return None
            self._start = start + 4 + size
            return None, {}, b""
        head_end = buf.find(b"\r\n\r\n", start, end)
        if head_end < 0:
            if end - start > MAX_HEADER_BYTES:
                raise ReaderUnsupported("garbage in the RTSP stream")
            return None
        lines = bytes(buf[start:head_end]).decode("latin-1").split("\r\n")
        hdrs: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            hdrs[key.strip().lower()] = value.strip()
        try:
            length = int(hdrs.get("content-length", "0"))
        except ValueError as exc:
            raise ReaderUnsupported("a bad Content-Length in the RTSP stream") from exc
        if head_end + 4 + length > end:
            if head_end + 4 + length - start > len(buf):
                raise ReaderUnsupported("an RTSP message larger than the read buffer")
            return None
        body = bytes(buf[head_end + 4 : head_end + 4 + length])
        self._start = head_end + 4 + length
        first = lines[0].split()
        if len(first) >= 2 and first[0].startswith("RTSP/") and first[1].isdigit():
            return int(first[1]), hdrs, body
        if len(first) == 3 and first[2].startswith("RTSP/"):
            return None, hdrs, body  # a request from the server
        raise ReaderUnsupported("garbage in the RTSP stream")

    # --- streaming -----------------------------------------------------------------------------

    def demux(self, *_streams: Any) -> Iterator[Any]:
        """The access units as PyAV packets (pts, dts, time_base, is_keyframe, is_corrupt set), in
        the order read; ends when the camera hangs up (TEARDOWN, or EOF between messages)."""
        while True:
            ready = self._ready
            while ready:
                yield ready.popleft()
            try:
                yield next(self._frames_it)
            except StopIteration:
                return

    def _frames(self) -> Iterator[Any]:
        """Read, split and depacketise; yields each access unit as it completes."""
        track = self.track
        assert track is not None and self._sock is not None
        hevc = track.codec == "hevc"
        # The two payload formats differ only in these: the NAL header's length and type field, the
        # fragment and aggregate types, which types a keyframe has, which types need FFmpeg.
        if hevc:
            hl, type_mask, fu_type, ap_type = 2, 0x3F, 49, 48
            key_types, single_types, unsupported = _HEVC_IRAP, range(0, 48), frozenset({50})
            vcl_types = range(0, 32)  # coded slices (H.265 §7.4.2.2)
        else:
            hl, type_mask, fu_type, ap_type = 1, 0x1F, 28, 24
            key_types, single_types, unsupported = frozenset({5}), range(1, 24), frozenset({25, 26, 27, 29})
            vcl_types = range(1, 6)  # coded slices (H.264 §7.4.1.2.3)
        channel, pt = self._channel, track.payload_type
        sound = self._sound
        time_base = Fraction(1, track.clock_rate)
        buf, view = self._buf, self._view
        # The access unit being put together, in Annex B, and how many NAL units it holds. One buffer
        # grown in place, not a bytes object per RTP payload joined at the end: that was an allocation
        # and a copy of each ~1.4 kB payload, most of this loop's malloc time under perf (issue 17).
        unit = bytearray()
        nals = 0
        key = corrupt = vcl = False  # vcl: the unit holds a slice of a picture
        fu_open = False  # inside a fragmented NAL unit whose start was seen
        au_ts: int | None = None
        first_ts: int | None = None
        last_ts = unwrap = 0
        last_pts = -1
        expect_seq: int | None = None
        video_at = time.monotonic()
        keepalive_at = video_at + self._keepalive_s
        report_at = video_at + RECEIVER_REPORT_S
        rx = self._video_rx
        rtcp_channel = channel + 1
        ready = deque()

        def emit() -> None:
            nonlocal unit, nals, key, corrupt, vcl, last_pts
            if not vcl:
                # Parameter sets or SEI sent as a unit of their own (a marker bit, or a timestamp of
                # their own, before the picture's): they go in front of the next picture, as FFmpeg's
                # parser puts them, not into the recording as a sample without a picture.
                if nals > MAX_CARRIED_NALS:
                    unit, nals = bytearray(), 0  # no picture in sight
                return
            if nals:
                assert au_ts is not None
                if au_ts < last_pts and au_ts > last_pts - track.clock_rate * 2:
                    raise ReaderUnsupported(
                        "the camera sends B-frames (timestamps step back); they need FFmpeg's reader"
                    )
                pkt = av.Packet(unit)
                pkt.pts = pkt.dts = au_ts
                pkt.time_base = time_base
                pkt.is_keyframe = key
                if corrupt:
                    pkt.is_corrupt = True
                last_pts = au_ts
                ready.append(pkt)
            unit, nals, key, corrupt, vcl = bytearray(), 0, False, False, False

        while True:
            while ready:
                yield ready.popleft()
            # The read waits at most until the camera has sent no video for read_timeout_s, also
            # while RTCP or other data keep arriving (each would restart a fixed socket timeout).
            # Past that it still takes what is in the socket first: a reader that was held up (its
            # consumer full) has the camera's video waiting there, which is no stall.
            self._sock.settimeout(max(self._read_timeout_s - (time.monotonic() - video_at), 0.001))
            self._fill()
            now = time.monotonic()
            start, end = self._start, self._end
            while start + 4 <= end:
                if buf[start] != 0x24:
                    self._start = start
                    msg = self._take_message()
                    if msg is None:
                        break
                    if msg[0] == 401:
                        # A keep-alive refused with a new nonce (stale=TRUE, RFC 2617 §3.2.1): answer
                        # the next one with it, as FFmpeg does, or a camera that counts only accepted
                        # requests as liveness ends the session at its timeout.
                        self._learn_challenge(msg[1].get("www-authenticate", ""))
                    start = self._start
                    continue
                if start + 12 > end:
                    break  # (a frame this short is no RTP packet: it waits for the bytes after it)
                _, ch, size, b0, b1, seq, ts = _FRAME_HEAD.unpack_from(buf, start)
                p = start + 4
                if p + size > end:
                    break
                start = stop = p + size
                if ch != channel or size < 12:
                    if ch == rtcp_channel:
                        sr = _sender_report(buf, p, stop)
                        if sr is not None:
                            rx.sender_report(sr[2], now)
                            if sound is not None:
                                sound.video_report = sr[:2]
                    elif sound is not None:  # else another track's data
                        if ch == sound.channel and size >= 12:
                            if first_ts is None:
                                sound.dropped += 1  # nothing to place it by yet
                            else:
                                ready.extend(sound.packets(buf, view, p, stop, first_ts, last_ts + unwrap))
                        elif ch == sound.rtcp:
                            sound.report(buf, p, stop, now)
                    continue
                if b0 >> 6 != 2 or b1 & 0x7F != pt:
                    continue
                h = p + 12 + 4 * (b0 & 0x0F)
                if b0 & 0x10:  # header extension (RFC 3550 §5.3.1)
                    if h + 4 > stop:
                        continue
                    h += 4 + 4 * ((buf[h + 2] << 8) | buf[h + 3])
                if b0 & 0x20:  # padding
                    stop -= buf[stop - 1]
                if h >= stop:
                    continue
                video_at = now
                rx.note(seq, buf, p)
                if expect_seq is not None and seq != expect_seq:
                    corrupt = True
                    fu_open = False
                expect_seq = (seq + 1) & 0xFFFF
                if first_ts is None:
                    first_ts = last_ts = ts
                if ts != last_ts:
                    if (ts - last_ts) & 0xFFFFFFFF < 0x80000000:  # forwards, modulo 2^32
                        if ts < last_ts:
                            unwrap += 1 << 32
                    elif ts > last_ts:  # backwards across a wrap
                        unwrap -= 1 << 32
                    last_ts = ts
                t = ts + unwrap - first_ts
                if au_ts is not None and t != au_ts:
                    emit()  # the previous access unit had no marker bit
                au_ts = t
                typ = (buf[h] >> 1) & 0x3F if hevc else buf[h] & 0x1F
                if typ == fu_type:  # FU-A (RFC 6184 §5.8), FU (RFC 7798 §4.4.3)
                    if h + hl >= stop:
                        continue
                    fu = buf[h + hl]
                    inner = fu & type_mask
                    if fu & 0x80:
                        if hevc:  # the NAL unit header: F and layer bits from the payload header
                            head = bytes(((buf[h] & 0x81) | (inner << 1), buf[h + 1]))
                        else:  # F and NRI from the FU indicator
                            head = bytes(((buf[h] & 0xE0) | inner,))
                        unit += START
                        unit += head
                        nals += 1
                        key = key or inner in key_types
                        vcl = vcl or inner in vcl_types
                        fu_open = True
                    elif not fu_open:
                        continue  # its start was lost
                    unit += view[h + hl + 1 : stop]
                    if fu & 0x40:
                        fu_open = False
                elif typ == ap_type:  # STAP-A (RFC 6184 §5.7.1), AP (RFC 7798 §4.4.2)
                    q = h + hl
                    while q + 2 < stop:
                        ln = (buf[q] << 8) | buf[q + 1]
                        if q + 2 + ln > stop or ln < hl:
                            corrupt = True
                            break
                        inner = (buf[q + 2] >> 1) & 0x3F if hevc else buf[q + 2] & 0x1F
                        key = key or inner in key_types
                        vcl = vcl or inner in vcl_types
                        unit += START
                        unit += view[q + 2 : q + 2 + ln]
                        nals += 1
                        q += 2 + ln
                elif typ in unsupported:
                    raise ReaderUnsupported(
                        f"the camera sends {track.codec.upper()} packets of type {typ} "
                        "(interleaved packetization or PACI); they need FFmpeg's reader"
                    )
                elif typ in single_types:
                    key = key or typ in key_types
                    vcl = vcl or typ in vcl_types
                    unit += START
                    unit += view[h:stop]
                    nals += 1
                # else: a type the payload formats leave unspecified; skipped, as FFmpeg does
                if len(unit) > MAX_UNIT_BYTES:
                    raise SourceEnded(
                        f"the camera sent over {MAX_UNIT_BYTES >> 20} MiB without ending a picture"
                    )
                if b1 & 0x80:  # marker: the access unit is complete
                    emit()
                    au_ts = None
            self._start = start
            if now - video_at > self._read_timeout_s:
                raise TimeoutError(f"no video for {now - video_at:.1f} s while the connection stays busy")
            if now >= keepalive_at:
                self._send(self._keepalive_method, self._aggregate)
                keepalive_at = now + self._keepalive_s
            if now >= report_at:
                self._send_reports(now, rtcp_channel)
                report_at = now + RECEIVER_REPORT_S

    def _send_reports(self, now: float, rtcp_channel: int) -> None:
        """One receiver report per track that has sent RTP, each on its RTCP channel."""
        out = b""
        for channel, rx in ((rtcp_channel, self._video_rx), *self._audio_rx()):
            if rx.ssrc >= 0:
                packet = rx.report(self._ssrc, now)
                out += b"$" + bytes((channel,)) + len(packet).to_bytes(2, "big") + packet
        if out:
            assert self._sock is not None
            self._sock.sendall(out)

    def _audio_rx(self) -> list[tuple[int, _Received]]:
        return [] if self._sound is None else [(self._sound.rtcp, self._sound.rx)]

    def close(self) -> None:
        """Say TEARDOWN if the session is up (best effort: a camera counts sessions) and hang up."""
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        if sock is None:
            return
        if self._session:
            try:
                sock.settimeout(0.2)
                self._send("TEARDOWN", getattr(self, "_aggregate", self.url))
            except OSError:
                pass
        self._disconnect()


@dataclass(frozen=True)
class _CodecContext:
    name: str
    width: int
    height: int
    extradata: bytes


class ReaderStream:
    """What hub/ingest/rtsp.py reads of a PyAV video stream, for a stream camhub reads itself."""

    index = 0

    def __init__(self, codec: str, width: int, height: int, time_base: Fraction, extradata: bytes) -> None:
        self.codec_context = _CodecContext(codec, width, height, extradata)
        self.time_base = time_base
        self.average_rate = None  # learned from the timestamps (TimestampFixer)
        self.guessed_rate = None


AAC_FRAME = 1024  # samples per AAC-LC access unit (ISO/IEC 14496-3)
# Opus frame durations in 48 kHz samples by TOC configuration (RFC 6716 §3.1).
_OPUS_FRAME = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4


@dataclass
class _Streams:
    video: list[Any]
    audio: list[Any]


@dataclass(frozen=True)
class _AudioCodecContext:
    name: str
    sample_rate: int
    channels: int
    extradata: bytes


class ReaderAudioStream:
    """What hub/ingest/audio.py reads of a PyAV audio stream, for audio camhub reads itself."""

    index = -1  # never a packet's stream_index: see AUDIO

    def __init__(self, track: AudioRtp) -> None:
        self.codec_context = _AudioCodecContext(track.codec, track.clock_rate, track.channels, track.config)
        self.time_base = Fraction(1, track.clock_rate)


class ReaderAudioPacket:
    """One audio packet as this reader yields it. A PyAV packet cannot say which stream it is of
    (`stream_index` cannot be set, and `opaque` was seen to lose its value when packets share one),
    so audio comes wrapped, with what hub/ingest/rtsp.py and audio.py read of a demuxed packet."""

    __slots__ = ("data", "dts", "duration", "pts", "time_base")
    stream_index = ReaderAudioStream.index
    is_keyframe = False
    is_corrupt = False

    def __init__(self, data: bytes, pts: int, duration: int, time_base: Fraction) -> None:
        self.data = data
        self.pts = self.dts = pts
        self.duration = duration
        self.time_base = time_base

    @property
    def size(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def packet(self) -> av.Packet:
        """As a PyAV packet, for a decoder (G.711 is transcoded)."""
        pkt = av.Packet(self.data)
        pkt.pts = pkt.dts = self.pts
        pkt.time_base = self.time_base
        pkt.duration = self.duration
        return pkt


def _sender_report(buf: bytearray, p: int, stop: int) -> tuple[float, int, int] | None:
    """The sender report (PT 200) of an RTCP compound packet: (NTP time in seconds, RTP timestamp,
    the NTP time's middle 32 bits, which a receiver report echoes); None if it has none."""
    while p + 20 <= stop:
        if buf[p + 1] == 200:
            ntp = int.from_bytes(buf[p + 8 : p + 16], "big")
            return ntp / (1 << 32), int.from_bytes(buf[p + 16 : p + 20], "big"), (ntp >> 16) & 0xFFFFFFFF
        p += (((buf[p + 2] << 8) | buf[p + 3]) + 1) * 4
    return None


# SDES with CNAME "camhub" (RFC 3550 §6.5): a compound RTCP packet must carry one; after our SSRC.
_CNAME = b"\x01\x06camhub\x00\x00\x00\x00"


class _Received:
    """What one RTP stream's receiver report says (RFC 3550 §6.4.2 and A.3): the sender's SSRC, the
    highest sequence number (with wraps), what was lost in all and since the last report, and the
    last sender report's time and how long ago it came. Jitter is sent as 0 (not measured)."""

    def __init__(self) -> None:
        self.ssrc = -1
        self.base_seq = self.last_seq = self.cycles = self.received = 0
        self._expected_prior = self._received_prior = 0
        self._lsr = 0
        self._sr_at: float | None = None

    def note(self, seq: int, buf: bytearray, p: int) -> None:
        """One RTP packet of this stream, its header at `p` in `buf`, in the order the camera sent."""
        if self.ssrc < 0:
            self.ssrc, self.base_seq = int.from_bytes(buf[p + 8 : p + 12], "big"), seq
        elif seq < self.last_seq:
            self.cycles += 0x10000  # over TCP a smaller number is a wrap, not a reorder
        self.last_seq = seq
        self.received += 1

    def sender_report(self, middle: int, now: float) -> None:
        self._lsr, self._sr_at = middle, now

    def report(self, own_ssrc: int, now: float) -> bytes:
        extended = self.cycles + self.last_seq
        expected = extended - self.base_seq + 1
        lost = max(-0x800000, min(0x7FFFFF, expected - self.received))
        interval = expected - self._expected_prior
        lost_interval = interval - (self.received - self._received_prior)
        fraction = (lost_interval << 8) // interval if interval > 0 and lost_interval > 0 else 0
        self._expected_prior, self._received_prior = expected, self.received
        dlsr = 0 if self._sr_at is None else min(0xFFFFFFFF, int((now - self._sr_at) * 65536))
        rr = bytes((0x81, 201)) + (7).to_bytes(2, "big") + own_ssrc.to_bytes(4, "big")
        rr += (
            self.ssrc.to_bytes(4, "big") + bytes((min(fraction, 255),)) + (lost & 0xFFFFFF).to_bytes(3, "big")
        )
        rr += (extended & 0xFFFFFFFF).to_bytes(4, "big") + bytes(4)
        rr += self._lsr.to_bytes(4, "big") + dlsr.to_bytes(4, "big")
        sdes = bytes((0x81, 202)) + (4).to_bytes(2, "big") + own_ssrc.to_bytes(4, "big") + _CNAME
        return rr + sdes


def _signed32(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - (1 << 32) if delta >= 1 << 31 else delta


class _Sound:
    """One audio track: its RTP depacketised into the packets FFmpeg's reader yields (an AAC access
    unit, an Opus packet, a run of G.711 samples), with timestamps on the video's clock.

    The two RTP clocks start at unrelated values. The camera's RTCP sender reports pair each with one
    NTP wall clock (RFC 3550 §6.4.1); once both tracks have sent one, audio is placed by them, exactly,
    as FFmpeg's reader places it. Before that (a camera's first report can take seconds), an audio
    packet is placed at the time of the video packet the camera sent just before it: both travel
    in order on one connection, so they are off by the camera's encoding delays (tens of ms); the
    reports then correct it. Later reports move it again if the two clocks drift more than DRIFT_S
    apart. Audio before the first video packet is dropped (the recorder would drop it too: nothing
    to put it in)."""

    def __init__(self, track: AudioRtp, channel: int, video_rate: int) -> None:
        self.track = track
        self.stream = ReaderAudioStream(track)
        self.channel = channel
        self.rtcp = channel + 1
        self._video_rate = video_rate
        self._rate = track.clock_rate
        self._time_base = Fraction(1, track.clock_rate)
        self._ts: int | None = None  # the last RTP timestamp, unwrapped
        self.offset: int | None = None  # added to an unwrapped timestamp: pts on the video's clock
        self.by_reports = False
        self.placed_by = ""  # "reports", "rtp-info" or "arrival": what `offset` came from
        # The RTP timestamps of one instant, the start of PLAY (RTSP RTP-Info, RFC 2326 §12.33).
        self.play_times: tuple[int, int] | None = None  # (video, audio)
        self.video_report: tuple[float, int] | None = None  # (NTP seconds, RTP timestamp)
        self.audio_report: tuple[float, int] | None = None
        self._placed_with: tuple[Any, Any] = (None, None)  # the reports `offset` came from
        self._fragment = bytearray()  # an AAC access unit split over packets (RFC 3640 §3.2.3)
        self._fragment_size = 0
        self.dropped = 0
        self.rx = _Received()

    def play_info(self, rtp_info: str, video_url: str) -> None:
        """Take the RTP-Info of PLAY: the rtptime of each track at the start of the range."""
        times: dict[str, int] = {}
        for entry in rtp_info.split(","):
            fields = dict(f.strip().partition("=")[::2] for f in entry.split(";") if "=" in f)
            url, rtptime = fields.get("url", ""), fields.get("rtptime", "")
            if url and rtptime.isdigit() and len(rtptime) <= 10:
                times[url.rstrip("/")] = int(rtptime) & 0xFFFFFFFF

        def time_of(control: str) -> int | None:
            # The server may name a track by its full URL or by what follows the base.
            control = control.rstrip("/")
            for url, rtptime in times.items():
                if control == url or control.endswith("/" + url.lstrip("/")) or url.endswith(control):
                    return rtptime
            return None

        video, audio = time_of(video_url), time_of(self.track.control)
        if video is not None and audio is not None and video_url != self.track.control:
            self.play_times = (video, audio)

    def report(self, buf: bytearray, p: int, stop: int, now: float) -> None:
        """The audio's RTCP: take its sender report, if the compound packet has one."""
        sr = _sender_report(buf, p, stop)
        if sr is not None:
            self.audio_report = sr[:2]
            self.rx.sender_report(sr[2], now)

    def packets(
        self, buf: bytearray, view: memoryview, p: int, stop: int, video_first: int, video_last: int
    ) -> list[Any]:
        """The audio packets of one RTP packet; `video_first`/`video_last`: the video's first and
        latest RTP timestamps (unwrapped), whose difference is the video's pts."""
        b0, b1 = buf[p], buf[p + 1]
        if b0 >> 6 != 2 or b1 & 0x7F != self.track.payload_type:
            return []
        self.rx.note((buf[p + 2] << 8) | buf[p + 3], buf, p)
        ts = int.from_bytes(view[p + 4 : p + 8], "big")
        h = p + 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if h + 4 > stop:
                return []
            h += 4 + 4 * ((buf[h + 2] << 8) | buf[h + 3])
        if b0 & 0x20:
            stop -= buf[stop - 1]
        if h >= stop:
            return []
        self._ts = ts if self._ts is None else self._ts + _signed32(ts - self._ts)
        reports = (self.video_report, self.audio_report)
        if reports != self._placed_with:
            # New sender reports: place by them. Once placed by reports, a later pair moves the
            # audio only past DRIFT_S: the camera's audio clock (its sound card's crystal) and video
            # clock may run apart by tens of ppm, ~0.1 s an hour, which FFmpeg's reader follows too.
            placed = self._placed_by_reports(video_first, video_last)
            if placed is not None:
                self._placed_with = reports
                moved = 0 if self.offset is None else placed - self.offset
                if not self.by_reports or abs(moved) > self._rate * DRIFT_S:
                    if abs(moved) > self._rate // 100:
                        log.info(
                            "audio: placed by the camera's sender reports, %+.0f ms from its place by %s",
                            moved * 1000 / self._rate,
                            self.placed_by,
                        )
                    self.offset, self.by_reports, self.placed_by = placed, True, "reports"
        if self.offset is None and self.play_times is not None:
            at_v = self._unwrapped(self.play_times[0], video_last) - video_first
            at_a = self._unwrapped(self.play_times[1], self._ts)
            self.offset = round(at_v * self._rate / self._video_rate) - at_a
            self.placed_by = "rtp-info"
        elif self.offset is None:
            at = (video_last - video_first) / self._video_rate
            self.offset = round(at * self._rate) - self._ts
            self.placed_by = "arrival"
        pts = self._ts + self.offset
        codec = self.track.codec
        if codec == "aac":
            return self._aac(view, h, stop, pts, bool(b1 & 0x80))
        data = view[h:stop].tobytes()
        if codec == "opus":
            duration = _opus_samples(data) * self._rate // 48000
        else:  # G.711: one byte a sample and channel
            duration = len(data) // max(1, self.track.channels)
        return [self._packet(data, pts, duration)]

    @staticmethod
    def _unwrapped(rtp: int, near: int) -> int:
        """A 32-bit RTP timestamp as the unwrapped one nearest `near`."""
        return near + _signed32(rtp - near)

    def _placed_by_reports(self, video_first: int, video_last: int) -> int | None:
        if self.video_report is None or self.audio_report is None or self._ts is None:
            return None
        ntp_v, rtp_v = self.video_report
        ntp_a, rtp_a = self.audio_report
        at_v = (self._unwrapped(rtp_v, video_last) - video_first) / self._video_rate
        return round((at_v + ntp_a - ntp_v) * self._rate) - self._unwrapped(rtp_a, self._ts)

    def _aac(self, view: memoryview, h: int, stop: int, pts: int, marker: bool) -> list[Any]:
        """RFC 3640 §3.2: AU-headers-length (bits), the AU headers, then the access units."""
        t = self.track
        if h + 2 > stop:
            return []
        header_bits = (view[h] << 8) | view[h + 1]
        header_bytes = (header_bits + 7) // 8
        data_at = h + 2 + header_bytes
        if data_at > stop:
            return []
        bits = int.from_bytes(view[h + 2 : data_at], "big")
        total = header_bytes * 8
        sizes, pos, index_bits = [], 0, t.index_length
        while pos + t.size_length + index_bits <= header_bits:
            sizes.append((bits >> (total - pos - t.size_length)) & ((1 << t.size_length) - 1))
            pos += t.size_length + index_bits
            index_bits = t.index_delta_length
        out = []
        if len(sizes) == 1 and data_at + sizes[0] > stop:
            # One access unit larger than a packet: its fragments share a timestamp; the marker
            # bit ends it.
            if self._fragment_size != sizes[0]:
                self._fragment.clear()
                self._fragment_size = sizes[0]
            self._fragment += view[data_at:stop]
            if marker or len(self._fragment) >= sizes[0]:
                if len(self._fragment) == sizes[0]:
                    out.append(self._packet(bytes(self._fragment), pts, AAC_FRAME))
                self._fragment.clear()
                self._fragment_size = 0
            return out
        self._fragment.clear()
        self._fragment_size = 0
        q = data_at
        for i, size in enumerate(sizes):
            if q + size > stop or size == 0:
                break
            out.append(self._packet(view[q : q + size].tobytes(), pts + i * AAC_FRAME, AAC_FRAME))
            q += size
        return out

    def _packet(self, data: bytes, pts: int, duration: int) -> ReaderAudioPacket:
        return ReaderAudioPacket(data, pts, duration, self._time_base)


def _opus_samples(packet: bytes) -> int:
    """An Opus packet's duration in 48 kHz samples, from its TOC byte (RFC 6716 §3.1); 0 if empty."""
    if not packet:
        return 0
    toc = packet[0]
    code = toc & 3
    frames = 1 if code == 0 else 2 if code in (1, 2) else (packet[1] & 0x3F if len(packet) > 1 else 0)
    return _OPUS_FRAME[toc >> 3] * frames


def depacketize(data: bytes, track: VideoTrack, audio: AudioRtp | None = None) -> list[Any]:
    """The access units an interleaved stream (`data`, as a camera sends it after PLAY on channel 0,
    and `audio` on channel 2) holds, read through a real socket pair as from a camera. For tests and
    fuzzing: raises only ReaderUnsupported (a stream it cannot frame or depacketise); the end of
    `data` ends it."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(len(data), 4096) + 4096)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, max(len(data), 4096) + 4096)
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        reader = RtspTcpReader("rtsp://127.0.0.1/fuzz", open_timeout_s=1.0, read_timeout_s=5.0)
        reader.attach(ours, track, audio=audio)
        out: list[Any] = []
        try:
            out.extend(reader.demux())
        except ConnectionError as exc:
            if str(exc) != "the camera closed the connection":
                raise
        return out
