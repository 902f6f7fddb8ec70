"""H.264 byte-stream helpers: NAL splitting, emulation prevention and the sim's SEI frame stamp.

Every access unit the simulator sends carries one SEI NAL unit of type
``user_data_unregistered`` (ITU-T H.264 §D.1.6 / §D.2.6, payloadType 5) identified by
:data:`SEI_UUID`. Its payload is the *global* stamp of the frame: a per-camera frame
counter that increases by one for every frame the camera produces (also across loop
replays), the capture time in µs since the Unix epoch (including any clock-jump fault),
and which clip/frame of the pre-encoded loop was replayed. Building it costs a few
microseconds, which is what keeps replaying pre-encoded packets honest: the pixels repeat,
the SEI stamp never does.

SEI NAL units survive RTSP (RFC 6184 carries every NAL unit), WHIP and stream-copy
remuxing to MP4/fMP4, so a recording can be checked frame by frame with
:func:`find_stamp` on each packet (Annex-B or 4-byte length-prefixed AVCC).
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# NAL unit types (ITU-T H.264 Table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

SEI_UUID = uuid.UUID("5c3a1f0e-7d2b-4c8e-9a61-63616d687562").bytes  # ends in "camhub"
_STAMP = struct.Struct(">QqHH")  # seq, capture_us, clip, clip_frame
_START = re.compile(b"\x00\x00\x01")


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream (ITU-T H.264 §B.2) into NAL units without start codes."""
    starts = [m.end() for m in _START.finditer(data)]
    nals = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[start:end]
        # A 4-byte start code leaves a zero byte at the end of the previous unit
        # (trailing_zero_8bits, §B.1.1): strip it.
        nal = nal.rstrip(b"\x00") if i + 1 < len(starts) else nal
        if nal:
            nals.append(nal)
    return nals


def join_annexb(nals: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """Split length-prefixed NAL units as stored in MP4 samples (ISO/IEC 14496-15 §5.3.2)."""
    nals = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            break
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def add_emulation_prevention(rbsp: bytes) -> bytes:
    """Insert emulation_prevention_three_byte where needed (ITU-T H.264 §7.4.1)."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def remove_emulation_prevention(ebsp: bytes) -> bytes:
    return ebsp.replace(b"\x00\x00\x03", b"\x00\x00")


@dataclass(frozen=True, slots=True)
class SeiStamp:
    """The global stamp of one frame, carried in its SEI NAL unit."""

    seq: int  # per-camera frame counter, +1 per produced frame, never reset by loop replays
    capture_us: int  # capture time, µs since the Unix epoch (clock-jump faults shift it)
    clip: int  # which pre-encoded clip was replayed (see firmware_sim.picture.CLIP_*)
    clip_frame: int  # frame index inside that clip; equals the pixel stamp's frame number
    camera: str


def build_sei(stamp: SeiStamp) -> bytes:
    """Return the SEI NAL unit (no start code) carrying ``stamp``."""
    payload = SEI_UUID + _STAMP.pack(stamp.seq, stamp.capture_us, stamp.clip, stamp.clip_frame)
    payload += stamp.camera.encode()[:64]
    # sei_message(): payloadType and payloadSize coded as runs of 0xFF plus a final byte (§7.3.2.3.1).
    header = bytearray([5])
    size = len(payload)
    while size >= 255:
        header.append(255)
        size -= 255
    header.append(size)
    rbsp = bytes(header) + payload + b"\x80"  # rbsp_trailing_bits
    return bytes([NAL_SEI]) + add_emulation_prevention(rbsp)


def parse_sei(nal: bytes) -> SeiStamp | None:
    """Return the sim stamp in an SEI NAL unit, or None if it carries none."""
    if not nal or nal_type(nal) != NAL_SEI:
        return None
    rbsp = remove_emulation_prevention(nal[1:])
    pos = 0
    while pos < len(rbsp) and rbsp[pos] != 0x80:
        ptype = 0
        while pos < len(rbsp) and rbsp[pos] == 255:
            ptype += 255
            pos += 1
        if pos >= len(rbsp):
            return None
        ptype += rbsp[pos]
        pos += 1
        psize = 0
        while pos < len(rbsp) and rbsp[pos] == 255:
            psize += 255
            pos += 1
        if pos >= len(rbsp):
            return None
        psize += rbsp[pos]
        pos += 1
        body = rbsp[pos : pos + psize]
        pos += psize
        if ptype == 5 and len(body) >= 16 + _STAMP.size and body[:16] == SEI_UUID:
            seq, capture_us, clip, clip_frame = _STAMP.unpack_from(body, 16)
            camera = body[16 + _STAMP.size :].decode(errors="replace")
            return SeiStamp(seq, capture_us, clip, clip_frame, camera)
    return None


def iter_nals(data: bytes) -> Iterator[bytes]:
    """NAL units of one packet, whether Annex-B (RTSP, raw) or AVCC (MP4 samples)."""
    if data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        yield from split_annexb(data)
    else:
        yield from split_avcc(data)


def find_stamp(packet: bytes) -> SeiStamp | None:
    """Return the sim's SEI stamp from one H.264 packet/sample, or None."""
    for nal in iter_nals(bytes(packet)):
        stamp = parse_sei(nal)
        if stamp is not None:
            return stamp
    return None
