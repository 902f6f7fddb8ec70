"""The interface every camera source implements, so RTSP and WHIP are interchangeable to the recorder.

A source is used as::

    params = await source.open()          # raises SourceError; connects and learns codec parameters
    async for packet in source.packets():  # MediaPacket, in decode (dts) order
        ...
    await source.close()                  # idempotent; interrupts a blocked read

The packet contract (what the recorder relies on, whichever transport delivered it):

- `data` is one access unit of H.264 or H.265 in **Annex B** byte-stream form (start codes). Parameter
  sets may be in-band at keyframes, or only in `CodecParams.extradata` (Annex B too), or both.
- `pts`/`dts` are integers in `time_base`, never None (`TimestampFixer` fills the gaps FFmpeg leaves,
  e.g. the RTSP demuxer's first packet), dts strictly increasing within one run.
- `discontinuity` is True on the first packet after the timeline broke (timestamp jump, camera
  reboot); the recorder starts a new segment there and records a gap.
- `params` are the codec parameters in force for this packet (they change on a resolution switch;
  carrying them on the packet avoids racing a `source.params` attribute written by another thread).
- `audio` is True for a packet of the camera's audio stream (`CodecParams.audio` describes it; its
  `pts`/`dts` are in that stream's own time base, on the same clock as the video's, and
  `is_keyframe` is always False so that every rule about keyframes stays about video). Sources
  yield audio only when the camera's `audio` setting is on.
- `arrival` is the wall-clock time (`time.time()`) the packet reached the hub; the recorder uses it to
  anchor a run's media timeline to wall-clock time once, then follows the media timestamps. A packet
  is never captured after it arrives, so arrival bounds its capture time from above.
- `bounds_next` is True when the source hands a packet over only once the *next* one began arriving
  (FFmpeg's RTSP demuxer: its parser ends an access unit at the start of the next), so `arrival` also
  bounds the next packet's capture: ~one frame tighter (67 ms at 15 fps), which the recorder uses.
- `av_packet`, when set, is the demuxer's own packet holding exactly `data` (PyAV sources): a muxer
  may send it instead of copying `data` into a new one. Its timestamps and stream are the muxer's to
  overwrite; `data` stays the truth. A source clears it (`drop_av_packet`) once its sink has run.

Errors are typed (`SourceError` and subclasses) so the per-camera supervisor can tell a stall from a
refused connection without parsing messages:

    SourceError            code "source"      base class
     ├── SourceOpenError   code "open"        could not connect / no video stream
     ├── SourceStalled     code "stalled"     no packet within the read timeout
     └── SourceEnded       code "ended"       the stream ended (EOF, camera hung up)
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from hub.ingest.audio import AudioParams

log = logging.getLogger(__name__)

# NAL unit types carrying parameter sets: H.264 (ITU-T H.264 §7.4.1.2.3: 7 SPS, 8 PPS) and
# H.265 (ITU-T H.265 §7.4.2.2: 32 VPS, 33 SPS, 34 PPS).
_H264_PARAM_SETS = {7, 8}
_HEVC_PARAM_SETS = {32, 33, 34}


class SourceError(Exception):
    """A camera source failed; `code` is stable for logs and the camera status."""

    code = "source"


class SourceOpenError(SourceError):
    code = "open"


class SourceStalled(SourceError):
    code = "stalled"


class SourceEnded(SourceError):
    code = "ended"


@dataclass(frozen=True)
class CodecParams:
    """What a muxer needs to write a stream without decoding it."""

    codec: str  # FFmpeg codec name: "h264" or "hevc"
    width: int
    height: int
    time_base: Fraction
    extradata: bytes = b""  # Annex B parameter sets (SPS/PPS[/VPS]); may be empty if only in-band
    audio: AudioParams | None = None  # the audio stream recorded beside the video, if any

    def same_stream(self, other: CodecParams) -> bool:
        """True when packets of `other` can continue a file written with these parameters."""
        return (self.codec, self.width, self.height, self.extradata, self.audio) == (
            other.codec,
            other.width,
            other.height,
            other.extradata,
            other.audio,
        )


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One encoded access unit (Annex B) with timestamps in `time_base`."""

    data: bytes
    pts: int
    dts: int
    time_base: Fraction
    is_keyframe: bool
    arrival: float  # wall-clock seconds when it reached the hub
    duration: int = 0  # in time_base; 0 when unknown
    discontinuity: bool = False
    params: CodecParams | None = None  # the stream's parameters when this packet was read
    audio: bool = False  # a packet of the audio stream (see the contract above)
    bounds_next: bool = False  # `arrival` is after the next packet began arriving (see the contract)
    # The demuxer's packet with these bytes, muxed as is (see the contract): building a new one per
    # frame (an aligned allocation and a copy of the frame) was ~5 % of a reader thread's CPU under
    # perf, 4 cameras at 2 Mbit/s (issue 17).
    av_packet: Any = field(default=None, compare=False, repr=False)


def drop_av_packet(pkt: MediaPacket) -> None:
    """Let go of `pkt.av_packet` once the muxer has had it. A packet the source keeps afterwards (the
    GOP held for a live viewer, the loop's queue) then holds its frame once, as `data`, not also in the
    demuxer's buffer (+2.5 MiB at 8 cameras otherwise). The field is set in place: the packet is not
    shared with another thread yet, and a copy per frame would cost what the field saves."""
    object.__setattr__(pkt, "av_packet", None)


class PacketSource(abc.ABC):
    """A camera stream. `open()` once, iterate `packets()` once, `close()` any number of times."""

    camera_id: str
    # Wall clock of the newest packet read, for sources that read on their own thread and may keep
    # packets from the loop (`set_demand`); None where every packet reaches the loop anyway.
    last_arrival: float | None = None

    @property
    @abc.abstractmethod
    def params(self) -> CodecParams:
        """Codec parameters; valid after `open()`. May change mid-stream (resolution switch)."""

    @abc.abstractmethod
    async def open(self) -> CodecParams:
        """Connect and learn the codec parameters; raises SourceOpenError."""

    @abc.abstractmethod
    def packets(self) -> AsyncIterator[MediaPacket]:
        """Packets in decode order until close() (then it just ends) or a SourceError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop reading and release everything; idempotent, never raises."""

    def set_sink(self, sink: PacketSink | None, *, queue_packets: bool = False) -> bool:
        """Optional fast path: hand every packet to `sink` on the source's own reader thread.

        Call before `open()`. Returns False if the source has no reader thread (the default; e.g.
        WHIP, whose packets arrive on the event loop): then iterate `packets()` as usual. When it
        returns True, `packets()` still raises the source's errors and ends on close, but yields
        packets only if `queue_packets`. An exception from `sink` ends the stream and is re-raised
        by `packets()`.

        Why: a thread hand-off per packet costs more CPU than the muxing itself on small machines
        (each is a futex/epoll wake-up); the recorder uses this to mux on the demux thread.
        """
        return False

    def set_demand(self, demand: threading.Event) -> None:
        """Optional: yield packets from `packets()` only while `demand` is set. Call before `open()`.

        While it is clear, a source with a reader thread keeps just the group of pictures in progress
        and, once it is set, yields that GOP (from its keyframe) before the next packet, so a new
        viewer starts within a frame. Why: the live relay wants packets only while someone watches,
        and handing every packet to the loop nobody reads costs the recorder about half again its
        CPU (bench/record_bench.py). A source without a reader thread (WHIP) ignores it.
        """
        return None


PacketSink = Callable[[MediaPacket], None]


def has_parameter_sets(data: bytes, codec: str) -> bool:
    """True if the Annex B access unit carries an SPS (so a decoder can start from it)."""
    wanted = _HEVC_PARAM_SETS if codec == "hevc" else _H264_PARAM_SETS
    for nal_type in _nal_types(data, codec):
        if nal_type in wanted:
            return True
    return False


def nal_units(data: bytes) -> list[bytes]:
    """NAL units of an Annex B access unit (ITU-T H.264 §B.2), without start codes."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    nals = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        nal = data[start:end]
        if n + 1 < len(starts):
            nal = nal.rstrip(b"\x00")  # the zero byte of a following 4-byte start code
        if nal:
            nals.append(nal)
    return nals


def nal_type(header: int, codec: str) -> int:
    """The NAL unit type in a NAL unit's first byte (H.264 §7.3.1, H.265 §7.3.1.2)."""
    return (header >> 1) & 0x3F if codec == "hevc" else header & 0x1F


def _nal_types(data: bytes, codec: str) -> list[int]:
    # Annex B (ITU-T H.264 Annex B): NAL units follow 0x000001 (or 0x00000001) start codes. Per
    # packet on the demux thread, so it reads header bytes in place rather than slicing every NAL.
    types = []
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        types.append(nal_type(data[i + 3], codec))
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


class TimestampFixer:
    """Makes one source's timestamps usable for muxing, in one place for every transport.

    - A packet without dts/pts (FFmpeg's RTSP demuxer returns the first IDR that way, see
      MEDIA_NOTES) gets the previous dts plus one frame period; never dropped.
    - A small backwards step or repeat of dts (reordered/duplicated RTP timestamps) is nudged to
      previous + 1 tick so the muxer accepts it.
    - A jump forwards by more than `max_jump_s`, or backwards by more than `max_jump_s`, is a
      discontinuity: timestamps are accepted as they are and the packet is flagged.
    """

    def __init__(self, time_base: Fraction, *, max_jump_s: float = 2.0, default_fps: float = 15.0) -> None:
        self.time_base = time_base
        self._max_jump = int(max_jump_s / time_base)
        self._period = max(1, int(1 / (default_fps * time_base)))
        self._last_dts: int | None = None
        self.fixed = 0  # packets whose timestamps were filled or nudged

    def fix(self, pts: int | None, dts: int | None, duration: int) -> tuple[int, int, bool]:
        """Returns (pts, dts, discontinuity)."""
        last = self._last_dts
        if duration > 0:
            self._period = duration
        if dts is None and pts is None:
            dts = pts = 0 if last is None else last + self._period
            self.fixed += 1
        elif dts is None:
            assert pts is not None
            dts = pts if last is None else min(pts, last + self._period)
            self.fixed += 1
        elif pts is None:
            pts = dts
            self.fixed += 1
        discontinuity = False
        if last is not None:
            step = dts - last
            if step > self._max_jump or step < -self._max_jump:
                discontinuity = True
            elif step <= 0:
                shift = last + 1 - dts
                dts += shift
                pts = max(pts + shift, dts)
                self.fixed += 1
            elif 0 < step <= self._max_jump and duration <= 0:
                self._period = step
        if pts < dts:
            pts = dts
        self._last_dts = dts
        return pts, dts, discontinuity


def find_sps(nals: Iterable[bytes], codec: str) -> bytes | None:
    """The first sequence parameter set among NAL units (without start codes), or None."""
    wanted = 33 if codec == "hevc" else 7  # H.265 SPS_NUT, H.264 SPS
    return next((n for n in nals if n and nal_type(n[0], codec) == wanted), None)


class _Bits:
    """An MSB-first bit reader over a NAL unit's RBSP (emulation prevention bytes removed)."""

    def __init__(self, nal: bytes) -> None:
        # H.264 §7.4.1 / H.265 §7.4.2: 0x000003 escapes a payload that would contain a start code.
        self.value = int.from_bytes(nal.replace(b"\x00\x00\x03", b"\x00\x00"), "big")
        self.left = 8 * len(nal.replace(b"\x00\x00\x03", b"\x00\x00"))

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# H.264 §7.3.2.1.1: profiles whose SPS carries chroma format, bit depths and scaling matrices.
_H264_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def sps_size(nal: bytes, codec: str) -> tuple[int, int]:
    """The picture size (width, height, after cropping) an SPS NAL unit (with its header, without a
    start code) declares. Raises ValueError on a truncated or malformed SPS.

    Why parse it: a source that reads RTP itself (hub/ingest/rtsp_client.py) learns the size from the
    SDP's parameter sets without opening a decoder; FFmpeg's demuxer did the same inside libavformat."""
    return _hevc_sps_size(nal) if codec == "hevc" else _h264_sps_size(nal)


def _h264_sps_size(nal: bytes) -> tuple[int, int]:
    b = _Bits(nal[1:])
    profile = b.u(8)
    b.u(16)  # constraint flags, level_idc
    b.ue()  # seq_parameter_set_id
    chroma = 1
    separate_planes = 0
    if profile in _H264_HIGH_PROFILES:
        chroma = b.ue()
        if chroma == 3:
            separate_planes = b.u(1)
        b.ue(), b.ue()  # bit depths
        b.u(1)  # qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1), b.se(), b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue(), b.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    width = (b.ue() + 1) * 16
    map_units = b.ue() + 1
    frame_mbs_only = b.u(1)
    height = (2 - frame_mbs_only) * map_units * 16
    if not frame_mbs_only:
        b.u(1)  # mb_adaptive_frame_field_flag
    b.u(1)  # direct_8x8_inference_flag
    if b.u(1):  # frame_cropping_flag (§7.4.2.1.1: crop units depend on the chroma format)
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        if chroma == 0 or separate_planes:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x = 1 if chroma == 3 else 2
            unit_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    return _plausible(width, height)


def _hevc_sps_size(nal: bytes) -> tuple[int, int]:
    b = _Bits(nal[2:])
    b.u(4)  # sps_video_parameter_set_id
    sub_layers = b.u(3)  # sps_max_sub_layers_minus1
    b.u(1)
    # profile_tier_level (H.265 §7.3.3): 88 bits of general profile, 8 of level, then per sub-layer.
    b.u(88), b.u(8)
    present = [(b.u(1), b.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        b.u(2 * (8 - sub_layers))
    for profile_present, level_present in present:
        if profile_present:
            b.u(88)
        if level_present:
            b.u(8)
    b.ue()  # sps_seq_parameter_set_id
    chroma = b.ue()
    if chroma == 3:
        b.u(1)
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance_window_flag (§7.4.3.2.1)
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = 2 if chroma == 1 else 1
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    return _plausible(width, height)


# H.264 level 6.2 / H.265 level 6.2 top out at 8192x4320; anything past this is a corrupt SPS, which
# must not size a muxer's stream.
MAX_PICTURE_SIDE = 16384


def _plausible(width: int, height: int) -> tuple[int, int]:
    if not (0 < width <= MAX_PICTURE_SIDE and 0 < height <= MAX_PICTURE_SIDE):
        raise ValueError(f"SPS declares an implausible picture size {width}x{height}")
    return width, height
