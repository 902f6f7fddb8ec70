"""What an SDP offer's video is, in words, for the 4xx answer to an offer the hub cannot take.

The hub receives (WHIP) and sends (WHEP) H.264 only, without re-encoding, through aiortc, which
negotiates H.264 by profile (RFC 6184 §8.1 `profile-level-id`): Constrained Baseline and Baseline,
`packetization-mode=1`. An offer with only High profile made aiortc raise `OperationError` inside
`setRemoteDescription`, which reached the client as HTTP 500 (issue 16); a VP8-only offer was even
answered 201 and failed later. `unsupported()` names what the offer has and what the hub takes, so
the client gets a 400 it can act on.
"""

from __future__ import annotations

import re

SUPPORTED = "H.264 Constrained Baseline or Baseline (profile-level-id 42e0xx or 4200xx), packetization-mode=1"
# RFC 6184 §8.1: profile_idc (first byte of profile-level-id) and, for Baseline, constraint_set1.
_PROFILES = {0x42: "Baseline", 0x4D: "Main", 0x58: "Extended", 0x64: "High", 0x6E: "High 10",
             0x7A: "High 4:2:2", 0xF4: "High 4:4:4"}  # fmt: skip
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$", re.IGNORECASE)


def video_codecs(sdp: str) -> list[str]:
    """The codecs of the offer's video m-lines, e.g. ["H.264 High (640c1f)", "VP8"]; RTX and
    FEC payloads left out."""
    names: dict[str, str] = {}
    fmtp: dict[str, str] = {}
    in_video = False
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            continue
        if not in_video:
            continue
        if m := _RTPMAP.match(line):
            names[m.group(1)] = m.group(2)
        elif m := _FMTP.match(line):
            fmtp[m.group(1)] = m.group(2)
    out: list[str] = []
    for pt, name in names.items():
        upper = name.upper()
        if upper in ("RTX", "RED", "ULPFEC", "FLEXFEC-03"):
            continue
        if upper == "H264":
            out.append(_h264(fmtp.get(pt, "")))
        else:
            out.append(name)
    return list(dict.fromkeys(out))


def _h264(params: str) -> str:
    fields = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
    plid = fields.get("profile-level-id", "42000a").lower()
    mode = fields.get("packetization-mode", "0")
    try:
        idc, constraints = int(plid[0:2], 16), int(plid[2:4], 16)
    except ValueError:
        return f"H.264 (profile-level-id {plid})"
    profile = _PROFILES.get(idc, f"profile {idc}")
    if idc == 0x42 and constraints & 0x40:
        profile = "Constrained Baseline"
    return f"H.264 {profile} ({plid}, packetization-mode={mode})"


def has_h264(sdp: str) -> bool:
    return any(c.startswith("H.264") for c in video_codecs(sdp))


def unsupported(sdp: str, role: str) -> str:
    """The detail of a 400: what the hub `role`s ("receives"/"sends") and what the offer has."""
    offered = ", ".join(video_codecs(sdp)) or "no video"
    return f"the hub {role} {SUPPORTED}; the offer has: {offered}"


def receives_opus(sdp: str) -> bool:
    """True if the offer has an audio m-line the viewer receives on (`recvonly`/`sendrecv`, the
    default when none is given; RFC 3264 §5.1) with Opus in it: only then can the hub send sound
    (PROTOCOL §2.4). A rejected m-line (port 0) does not count."""
    sections = ("\n" + sdp.replace("\r\n", "\n")).split("\nm=")[1:]
    for section in sections:
        lines = [ln.strip() for ln in section.split("\n")]
        fields = lines[0].split()
        if not fields or fields[0] != "audio" or (len(fields) > 1 and fields[1] == "0"):
            continue
        directions = {
            ln[2:] for ln in lines if ln in ("a=sendrecv", "a=recvonly", "a=sendonly", "a=inactive")
        }
        if directions & {"sendonly", "inactive"}:
            continue
        if any((m := _RTPMAP.match(ln)) and m.group(2).lower() == "opus" for ln in lines):
            return True
    return False
