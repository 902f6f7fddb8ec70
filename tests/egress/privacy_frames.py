"""Checking pictures against privacy masks: decode, and compare masked and unmasked areas.

Shared by the delivery test (a decoded clip) and the live test (frames an agency received over WebRTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from hub.egress.privacy import Masks, Raster

# Encoded black comes back within a few levels of Y=16 / C=128; the picture around it within a few more.
BLACK_TOLERANCE = 6
PICTURE_MAD = 6.0
# Quantisation ringing of the unmasked neighbour bleeds this far into the black (measured: ≤ 4.1 luma
# px and ≤ 3.9 chroma px at crf 20); it carries nothing of the masked picture, which no encoder saw.
EDGE_PX = 6
EDGE_CHROMA_PX = 5


@dataclass
class Planes:
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


def planes(frame: av.VideoFrame) -> Planes:
    yuv = frame.to_ndarray(format="yuv420p")
    h, w = frame.height, frame.width
    return Planes(
        yuv[:h].copy(),
        yuv[h : h + h // 4].reshape(h // 2, w // 2).copy(),
        yuv[h + h // 4 :].reshape(h // 2, w // 2).copy(),
    )


def decode_file(path: Path) -> list[Planes]:
    with av.open(str(path)) as c:
        return [planes(f) for f in c.decode(c.streams.video[0])]


@dataclass(frozen=True)
class Regions:
    """Where a picture must be black (well inside a mask) and where it must be the picture (well outside)."""

    inside: np.ndarray
    inside_chroma: np.ndarray
    outside: np.ndarray

    @classmethod
    def of(cls, masks: Masks, width: int, height: int) -> Regions:
        r = Raster.build(masks, width, height)
        k = np.ones((2 * EDGE_PX + 1, 2 * EDGE_PX + 1), np.uint8)
        inside = cv2.erode(r.luma.astype(np.uint8), k).astype(bool)
        kc = np.ones((2 * EDGE_CHROMA_PX + 1, 2 * EDGE_CHROMA_PX + 1), np.uint8)
        inside_c = cv2.erode(r.chroma.astype(np.uint8), kc).astype(bool)
        outside = ~cv2.dilate(r.luma.astype(np.uint8), k).astype(bool)
        assert inside.any() and inside_c.any() and outside.any()
        return cls(inside, inside_c, outside)


def black_inside(p: Planes, regions: Regions) -> bool:
    y = p.y[regions.inside].astype(int)
    u = p.u[regions.inside_chroma].astype(int)
    v = p.v[regions.inside_chroma].astype(int)
    return bool(
        (np.abs(y - 16) <= BLACK_TOLERANCE).all()
        and (np.abs(u - 128) <= BLACK_TOLERANCE).all()
        and (np.abs(v - 128) <= BLACK_TOLERANCE).all()
    )


def mad_outside(p: Planes, reference: Planes, regions: Regions) -> float:
    return float(np.abs(p.y[regions.outside].astype(int) - reference.y[regions.outside].astype(int)).mean())
