"""Test media: small H.264 files made with PyAV/libx264, and readers for what the hub wrote."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hub.ingest.rtsp import FileSource
from hub.ingest.source import CodecParams, MediaPacket


def make_h264(
    path: Path,
    *,
    seconds: float = 4.0,
    fps: int = 15,
    gop: int = 15,
    width: int = 320,
    height: int = 240,
    noise: bool = False,
) -> Path:
    """An MP4 with a moving bar, keyframe every `gop` frames, no B-frames (like a camera). With
    `noise`, every frame is random pixels: about 1 MB/s that no encoder can shrink (big deliveries)."""
    rng = np.random.default_rng(7)
    frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "bf": "0",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "sc_threshold": "0",
        }
        for i in range(frames):
            img = (
                rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                if noise
                else np.full((height, width, 3), 40, np.uint8)
            )
            x = (i * 7) % max(1, width - 16)
            img[:, x : x + 16] = (255, 200, 0)
            img[(i * 3) % height, :] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


async def read_packets(path: Path, count: int) -> tuple[CodecParams, list[MediaPacket]]:
    """The first `count` packets of a (looped) file, as a source would deliver them, at full speed."""
    src = FileSource("test", path, realtime=False, loop_input=True)
    params = await src.open()
    out: list[MediaPacket] = []
    try:
        async for pkt in src.packets():
            out.append(pkt)
            if len(out) >= count:
                break
    finally:
        await src.close()
    return params, out


@dataclass(frozen=True)
class Probe:
    ok: bool
    stderr: str
    frames: int
    duration: float
    width: int
    height: int
    codec: str


def ffprobe(path: Path) -> Probe:
    proc = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return Probe(False, proc.stderr, 0, 0.0, 0, 0, "")
    data = json.loads(proc.stdout)
    st = data["streams"][0]
    return Probe(
        proc.stderr.strip() == "",
        proc.stderr,
        int(st.get("nb_read_frames", 0)),
        float(data["format"].get("duration", 0.0)),
        st["width"],
        st["height"],
        st["codec_name"],
    )


@dataclass(frozen=True)
class FilePacket:
    data: bytes
    pts: int
    dts: int
    is_keyframe: bool
    duration: int
    time_base: Fraction


def file_packets(path: Path) -> list[FilePacket]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        tb = Fraction(st.time_base.numerator, st.time_base.denominator)
        return [
            FilePacket(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration or 0, tb)
            for p in c.demux(st)
            if p.size
        ]


def fragments_per_gop(fps: int, gop: int) -> int:
    """How many fragments the segmenter writes per GOP: one at each keyframe, then one whenever the
    open one holds FRAGMENT_S of media (whole frames)."""
    from hub.record.segmenter import FRAGMENT_S

    frames = max(1, math.ceil(round(FRAGMENT_S * fps, 6)))
    return math.ceil(gop / frames)
