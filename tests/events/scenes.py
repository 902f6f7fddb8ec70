"""Synthetic doorstep scenes for motion tests: numpy frames, deterministic given a seed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

W, H = 640, 360


def background(seed: int = 1) -> np.ndarray:
    """A textured static scene (wall gradient, door, some clutter), BGR uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = (60 + 0.12 * x + 0.08 * y).astype(np.float32)
    img = np.stack([base, base * 0.9, base * 0.8], axis=-1)
    img[40:300, 420:520] = (40, 60, 90)  # the door
    for _ in range(25):
        cx, cy = int(rng.integers(0, W)), int(rng.integers(0, H))
        img[max(0, cy - 6) : cy + 6, max(0, cx - 6) : cx + 6] = rng.integers(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def render(
    bg: np.ndarray,
    rng: np.random.Generator,
    blob: tuple[int, int, int, int] | None = None,
    gain: float = 1.0,
    noise: float = 2.0,
) -> np.ndarray:
    """One frame: `bg` times `gain`, a bright person-like box at (x, y, w, h) if any, sensor noise."""
    img = bg.astype(np.float32) * gain
    if blob is not None:
        x, y, w, h = blob
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        if x1 > x0 and y1 > y0:
            img[y0:y1, x0:x1] = (200, 180, 220)
    img += rng.standard_normal(img.shape, dtype=np.float32) * noise
    return np.clip(img, 0, 255).astype(np.uint8)


def walk(
    *,
    quiet_before: int = 10,
    steps: int = 30,
    pause: int = 0,
    quiet_after: int = 40,
    x_from: int = -80,
    x_to: int = W + 10,
    y: int = 120,
    size: tuple[int, int] = (70, 180),
    fps: float = 5.0,
    seed: int = 7,
) -> Iterator[tuple[float, np.ndarray, bool]]:
    """(time, frame, blob_visible) for a visitor walking across; `pause` frames standing mid-way."""
    rng = np.random.default_rng(seed)
    bg = background(seed)
    t = 0.0
    dt = 1.0 / fps
    for _ in range(quiet_before):
        yield t, render(bg, rng), False
        t += dt
    path = list(np.linspace(x_from, x_to, steps).astype(int))
    mid = len(path) // 2
    path = path[:mid] + [path[mid]] * pause + path[mid:]
    for x in path:
        yield t, render(bg, rng, (int(x), y, *size)), True
        t += dt
    for _ in range(quiet_after):
        yield t, render(bg, rng), False
        t += dt


def encode_walk(path: Path, *, fps: int = 15, quiet_before_s: float = 2.0, walk_s: float = 3.0) -> float:
    """Write an H.264 MP4 of a visitor walking across (then quiet for 1 s); returns its duration."""
    frames = list(
        walk(
            quiet_before=round(quiet_before_s * fps),
            steps=round(walk_s * fps),
            quiet_after=fps,
            fps=float(fps),
        )
    )
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for _t, image, _visible in frames:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return len(frames) / fps
