"""Small real fMP4 segments for owner-UI tests, written the way the recorder lays them out."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class WrittenSegment:
    path: str  # relative to the recordings directory
    start_at: float
    end_at: float
    bytes: int
    sha256: str


def fmp4_clip(
    seconds: float, fps: int = 15, width: int = 320, height: int = 180, shade: int = 0, codec: str = "h264"
) -> bytes:
    """H.264 (or H.265, `codec="hevc"`, tagged hvc1 as the recorder does) in fragmented MP4 with a
    moving bar (frames differ), keyframe every second."""
    buf = io.BytesIO()
    with av.open(
        buf, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    ) as out:
        if codec == "hevc":
            stream = out.add_stream("libx265", rate=fps)
            stream.codec_tag = "hvc1"
            stream.options = {"x265-params": f"log-level=none:keyint={fps}", "preset": "ultrafast"}
        else:
            stream = out.add_stream("libx264", rate=fps)
            stream.options = {"g": str(fps), "preset": "ultrafast", "tune": "zerolatency"}
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            img = np.full((height, width, 3), (40 + shade) % 256, dtype=np.uint8)
            x = (i * 7) % width
            img[:, x : x + 16] = (250, 200, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def write_segments(
    recordings: Path, camera: str, start_at: float, count: int, seconds: float = 2.0, codec: str = "h264"
) -> list[WrittenSegment]:
    """`count` back-to-back segments for `camera` starting at `start_at` (wall-clock unix seconds)."""
    out = []
    for i in range(count):
        data = fmp4_clip(seconds, shade=i * 50, codec=codec)
        s = start_at + i * seconds
        rel = f"{camera}/day/{int(s * 1000)}.mp4"
        path = recordings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append(WrittenSegment(rel, s, s + seconds, len(data), hashlib.sha256(data).hexdigest()))
    return out


def jpeg(variant: int, width: int = 320, height: int = 180) -> bytes:
    """A small JPEG thumbnail (a visitor-ish blob on a wall), different per variant."""
    img = np.full((height, width, 3), (180, 160, 120), dtype=np.uint8)
    x = 60 + variant * 120
    img[50:170, x : x + 50] = (40, 60, 160)
    img[20:60, x + 5 : x + 45] = (200, 170, 150)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
