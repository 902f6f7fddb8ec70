"""The synthetic doorstep drawn with OpenCV: scene, visitor, clock overlay and frame stamp.

Clips are rendered frame by frame here and encoded once (:mod:`firmware_sim.encoder`):

- ``CLIP_IDLE``: the empty doorstep. Only the stamp band and the clock overlay change.
- ``CLIP_VISITOR``: a person walks in from the left, stands at the door (the bell button
  lights up in the middle third) and walks out to the right — real motion for detectors.

The clock overlay shows the time at which the clip was *rendered* plus the frame offset, so
it repeats with each replay of the clip; the frame's real capture time is in its SEI stamp.
"""

from __future__ import annotations

import time
from functools import lru_cache

import cv2
import numpy as np

from firmware_sim import stamp as pixel_stamp

CLIP_IDLE = 0
CLIP_VISITOR = 1
CLIP_NAMES = {CLIP_IDLE: "idle", CLIP_VISITOR: "visitor"}


@lru_cache(maxsize=8)
def _background(width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    # Wall: vertical gradient of warm beige; ground: grey paving.
    ground_y = int(height * 0.78)
    ramp = np.linspace(0.85, 1.0, ground_y)[:, None]
    img[:ground_y] = (np.array([150, 180, 205]) * ramp[..., None]).astype(np.uint8)
    img[ground_y:] = (110, 112, 115)
    for x in range(0, width, max(8, width // 12)):
        cv2.line(img, (x, ground_y), (x - width // 10, height), (95, 97, 100), max(1, width // 640))
    # Door with frame, panels and handle.
    dx0, dx1 = int(width * 0.42), int(width * 0.62)
    dy0 = int(height * 0.22)
    cv2.rectangle(
        img, (dx0 - width // 80, dy0 - height // 40), (dx1 + width // 80, ground_y), (60, 60, 70), -1
    )
    cv2.rectangle(img, (dx0, dy0), (dx1, ground_y), (40, 70, 120), -1)
    pw, ph = (dx1 - dx0) // 2, (ground_y - dy0) // 2
    for i in range(2):
        for j in range(2):
            x, y = dx0 + i * pw + pw // 6, dy0 + j * ph + ph // 8
            cv2.rectangle(
                img, (x, y), (x + pw * 2 // 3, y + ph * 3 // 4), (35, 60, 105), max(1, width // 480)
            )
    cv2.circle(img, (dx1 - pw // 4, dy0 + ph), max(2, width // 200), (60, 190, 220), -1)
    # Doormat, a plant, a house number.
    cv2.rectangle(
        img, (dx0 - width // 40, ground_y), (dx1 + width // 40, ground_y + height // 20), (40, 50, 70), -1
    )
    px, py = int(width * 0.8), int(height * 0.7)
    cv2.rectangle(img, (px - width // 40, py), (px + width // 40, ground_y), (50, 80, 150), -1)
    cv2.ellipse(img, (px, py), (width // 25, height // 10), 0, 180, 360, (40, 140, 60), -1)
    cv2.putText(
        img,
        "42",
        (int(width * 0.66), int(height * 0.3)),
        cv2.FONT_HERSHEY_SIMPLEX,
        height / 360,
        (40, 40, 40),
        max(1, height // 180),
        cv2.LINE_AA,
    )
    return img


def _bell(img: np.ndarray, lit: bool) -> None:
    h, w = img.shape[:2]
    center = (int(w * 0.66), int(h * 0.45))
    cv2.rectangle(
        img,
        (center[0] - w // 90, center[1] - h // 30),
        (center[0] + w // 90, center[1] + h // 30),
        (50, 50, 50),
        -1,
    )
    cv2.circle(img, center, max(2, w // 220), (80, 220, 255) if lit else (200, 200, 200), -1)


def _visitor(img: np.ndarray, progress: float) -> None:
    """Draw the visitor at ``progress`` in [0, 1] of the walk: in, stand, out."""
    h, w = img.shape[:2]
    door_x = int(w * 0.52)
    if progress < 1 / 3:
        x = int(-w * 0.1 + (door_x + w * 0.1) * progress * 3)
    elif progress < 2 / 3:
        x = door_x
    else:
        x = int(door_x + (w * 1.1 - door_x) * (progress - 2 / 3) * 3)
    feet = int(h * 0.9)
    body_h = int(h * 0.45)
    step = int(np.sin(progress * 40) * w * 0.01) if not 1 / 3 <= progress < 2 / 3 else 0
    bw = max(4, w // 22)
    cv2.line(
        img, (x - bw // 3, feet - body_h // 3), (x - bw // 3 + step, feet), (40, 40, 40), max(2, w // 90)
    )
    cv2.line(
        img, (x + bw // 3, feet - body_h // 3), (x + bw // 3 - step, feet), (40, 40, 40), max(2, w // 90)
    )
    cv2.rectangle(img, (x - bw // 2, feet - body_h), (x + bw // 2, feet - body_h // 3), (150, 60, 40), -1)
    cv2.circle(img, (x, feet - body_h - bw // 2), max(3, bw // 2), (120, 160, 210), -1)


def render(width: int, height: int, clip: int, frame: int, frames: int, fps: int, t0: float) -> np.ndarray:
    """Render frame ``frame`` of a ``frames``-long clip as a BGR picture."""
    img = _background(width, height).copy()
    progress = frame / max(1, frames - 1)
    if clip == CLIP_VISITOR:
        _bell(img, lit=1 / 3 <= progress < 2 / 3)
        _visitor(img, progress)
    else:
        _bell(img, lit=False)
    ms = frame * 1000 // fps
    pixel_stamp.draw(img, pixel_stamp.Stamp(clip=clip, frame=frame, ms=ms))
    b = pixel_stamp.block_size(height)
    when = t0 + ms / 1000
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when)) + f".{int(when * 10) % 10} UTC"
    text += f"  {CLIP_NAMES.get(clip, '?')} #{frame}"
    y = height - b
    cv2.rectangle(img, (0, height - 4 * b), (width, height), (20, 20, 20), -1)
    cv2.putText(
        img,
        text,
        (b, y - b // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        b / 14,
        (255, 255, 255),
        max(1, b // 6),
        cv2.LINE_AA,
    )
    return img
