"""RTP packetization of H.264 (RFC 6184) and RTCP sender reports (RFC 3550)."""

from __future__ import annotations

import struct

PAYLOAD_TYPE = 96  # dynamic (RFC 3551 §3), bound to H264/90000 in the SDP
CLOCK_RATE = 90_000  # RFC 6184 §5.1: "the RTP clock rate is 90 kHz"
MAX_PAYLOAD = 1400  # keeps packets below a 1500-byte MTU even when relayed over UDP
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def payloads(nals: list[bytes] | tuple[bytes, ...], max_size: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads for one access unit, in order (non-interleaved mode, RFC 6184 §6.3).

    Small NAL units in a row are aggregated into one STAP-A (§5.7.1), a NAL unit that fits
    is sent as a single NAL unit packet (§5.6), a bigger one is split into FU-A fragments
    (§5.8).
    """
    out: list[bytes] = []
    group: list[bytes] = []

    def flush() -> None:
        if len(group) == 1:
            out.append(group[0])
        elif group:
            # STAP-A header: F and NRI are the maximum over the aggregated units (§5.7.1).
            nri = max(n[0] & 0x60 for n in group)
            forbidden = max(n[0] & 0x80 for n in group)
            out.append(bytes([forbidden | nri | 24]) + b"".join(struct.pack(">H", len(n)) + n for n in group))
        group.clear()

    for nal in nals:
        if len(nal) + 2 <= max_size // 4:
            if 1 + sum(2 + len(n) for n in group) + 2 + len(nal) > max_size:
                flush()
            group.append(nal)
            continue
        flush()
        if len(nal) <= max_size:
            out.append(nal)
            continue
        # FU-A (§5.8): FU indicator keeps F/NRI with type 28; FU header has S/E bits and the type.
        indicator = (nal[0] & 0xE0) | 28
        ntype = nal[0] & 0x1F
        body = nal[1:]
        chunk = max_size - 2
        for pos in range(0, len(body), chunk):
            start = 0x80 if pos == 0 else 0
            end = 0x40 if pos + chunk >= len(body) else 0
            out.append(bytes([indicator, start | end | ntype]) + body[pos : pos + chunk])
    flush()
    return out


def depacketize(packets: list[bytes]) -> list[bytes]:
    """NAL units from RTP payloads (single, STAP-A, FU-A): the inverse of :func:`payloads`."""
    nals: list[bytes] = []
    fu = bytearray()
    for p in packets:
        ntype = p[0] & 0x1F
        if ntype == 24:
            pos = 1
            while pos + 2 <= len(p):
                (size,) = struct.unpack_from(">H", p, pos)
                nals.append(p[pos + 2 : pos + 2 + size])
                pos += 2 + size
        elif ntype == 28:
            if p[1] & 0x80:
                fu = bytearray([(p[0] & 0xE0) | (p[1] & 0x1F)])
            fu += p[2:]
            if p[1] & 0x40:
                nals.append(bytes(fu))
        else:
            nals.append(p)
    return nals


def header(seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """RTP fixed header (RFC 3550 §5.1): V=2, no padding/extension/CSRC."""
    return struct.pack(
        ">BBHII", 0x80, (0x80 if marker else 0) | PAYLOAD_TYPE, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )


def ntp_timestamp(unix_s: float) -> int:
    return int((unix_s + _NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def sender_report(ssrc: int, unix_s: float, rtp_ts: int, packets: int, octets: int, cname: str) -> bytes:
    """Compound RTCP packet: SR (RFC 3550 §6.4.1) followed by SDES CNAME (§6.5, required by §6.1)."""
    sr = struct.pack(
        ">BBHIQIII",
        0x80,
        200,
        6,
        ssrc,
        ntp_timestamp(unix_s),
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    item = bytes([1, len(cname)]) + cname.encode()
    chunk = struct.pack(">I", ssrc) + item + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = struct.pack(">BBH", 0x81, 202, len(chunk) // 4) + chunk
    return sr + sdes
