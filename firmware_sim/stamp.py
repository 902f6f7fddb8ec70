"""The pixel frame stamp: a row of black/white blocks drawn into every picture.

Layout (all sizes in units of ``b = block_size(height)``, 8 px per 360 lines of height):
a row starting at (x=b, y=b) of 2 marker blocks (white, black), then :data:`BITS` data
blocks, MSB first, white = 1. The blocks are macroblock-aligned at 360p/720p/1080p and big
enough to survive H.264 at any sane quantiser and a downscale to 360p.

Bits: ``clip`` (4) | ``frame`` (16) | ``ms`` (20) | CRC-8 (8) over the first 40 bits.
``frame`` is the frame index inside the pre-encoded clip and ``ms`` its capture offset in
milliseconds from the start of the clip (``frame * 1000 // fps``). Because clips are
encoded once and replayed, the pixel stamp repeats with every replay of a clip; the
per-camera global counter and real capture time are in the SEI stamp
(:mod:`firmware_sim.h264`). Within a replay a missing or duplicated frame shows up as a
gap or repeat in ``frame``.

The stamp band (top ``3 * b`` rows) and the overlay band (bottom ``4 * b`` rows) change
every frame; motion detectors should mask them (:func:`changing_regions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = 48
_MARKERS = 2


@dataclass(frozen=True, slots=True)
class Stamp:
    clip: int
    frame: int
    ms: int


def block_size(height: int) -> int:
    """Side of one stamp block in pixels: 8 per 360 lines, so the layout scales with the picture."""
    return 8 * round(height / 360) if height >= 360 else max(2, 8 * height // 360)


def _crc8(value: int, nbits: int) -> int:
    # CRC-8/ATM (poly 0x07) over the bits MSB first.
    crc = 0
    for i in range(nbits - 1, -1, -1):
        bit = (value >> i) & 1
        top = (crc >> 7) & 1
        crc = (crc << 1) & 0xFF
        if top ^ bit:
            crc ^= 0x07
    return crc


def _word(stamp: Stamp) -> int:
    if not (0 <= stamp.clip < 16 and 0 <= stamp.frame < 1 << 16 and 0 <= stamp.ms < 1 << 20):
        raise ValueError(f"stamp out of range: {stamp}")
    value = (stamp.clip << 36) | (stamp.frame << 20) | stamp.ms
    return (value << 8) | _crc8(value, 40)


def draw(img: np.ndarray, stamp: Stamp) -> None:
    """Draw ``stamp`` into a BGR image in place."""
    h, w = img.shape[:2]
    b = block_size(h)
    if (BITS + _MARKERS + 2) * b > w:
        raise ValueError(f"picture {w}x{h} too narrow for the frame stamp")
    word = _word(stamp)
    y0, y1 = b, 2 * b
    img[y0 - b // 2 : y1 + b // 2, b // 2 : (BITS + _MARKERS + 1) * b + b // 2] = 128
    bits = [1, 0] + [(word >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    for i, bit in enumerate(bits):
        x0 = (1 + i) * b
        img[y0:y1, x0 : x0 + b] = 255 if bit else 0


def decode(img: np.ndarray) -> Stamp | None:
    """Read the stamp from a decoded BGR (or gray) picture; None if absent or damaged."""
    h, w = img.shape[:2]
    b = block_size(h)
    if (BITS + _MARKERS + 2) * b > w:
        return None
    gray = img if img.ndim == 2 else img[..., 1]  # green ≈ luma for black/white blocks
    q = max(1, b // 4)
    y0, y1 = b + q, 2 * b - q
    levels = []
    for i in range(BITS + _MARKERS):
        x0 = (1 + i) * b
        levels.append(float(gray[y0:y1, x0 + q : x0 + b - q].mean()))
    if levels[0] < 160 or levels[1] > 96:
        return None
    word = 0
    for level in levels[_MARKERS:]:
        word = (word << 1) | (1 if level >= 128 else 0)
    value, crc = word >> 8, word & 0xFF
    if _crc8(value, 40) != crc:
        return None
    return Stamp(clip=value >> 36, frame=(value >> 20) & 0xFFFF, ms=value & 0xFFFFF)


def changing_regions(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) rectangles that change every frame even when nothing moves."""
    b = block_size(height)
    return [(0, 0, width, 3 * b), (0, height - 4 * b, width, 4 * b)]
