"""Privacy masks burned into what leaves the house (PROTOCOL §4.1): clip deliveries and agency streams.

    recording (untouched) ──stream copy──▶ cut clip ──decode──▶ paint masks black ──libx264──▶ delivery
    camera relay ──RelayTrack (Annex B)──▶ RedactingTrack: decode ─▶ paint ─▶ av.VideoFrame ──▶ aiortc's
                                                                       H.264 encoder ──▶ agency (WHEP)

Only what leaves is re-encoded: a camera without masks keeps today's stream copy (deliveries) and
packet relay (live), so nothing pays for a feature it does not use.

Painting. Masks are polygons in 0..1 picture coordinates. For a W×H picture each point becomes the
integer pixel (round(x·W), round(y·H)), the polygon is rasterised once per (masks, size) with
OpenCV's `fillPoly` (pixels on the edge included), and every frame is painted in place in its
yuv420p planes: Y = 16 and Cb = Cr = 128 (black in BT.601 limited range, which is what the
cameras send). A chroma sample covers 2×2 luma pixels; it is blacked out if *any* of its four pixels
is masked, so no colour of a masked pixel survives subsampling. The painted polygons, in pixels, are
what the manifest lists (`Redaction.masks_px`).

Why the encoder never sees masked pixels: painting happens on the decoded frame before it is handed
to any encoder, so masked content cannot leak through motion prediction or deblocking; only the
unmasked neighbours of an edge can bleed a pixel or two into the black.

Cost (bench/privacy_bench.py): clip redaction uses libx264 `ultrafast` crf 20 (see DEFAULT_PRESET
for the measured reason), on one thread when asked (`threads=1`, how the bench measures "one core"); live redaction uses aiortc's own encoder
(libx264, zerolatency) and decodes in a worker thread so the event loop never decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hub.config import Polygon

log = logging.getLogger(__name__)

BLACK_Y = 16  # BT.601 limited range black
NEUTRAL_C = 128
# libx264 `ultrafast`: the budget is ≥ 4× realtime for 1080p15 on one core of a 2-core box.
# Measured there (bench/privacy_bench.py, CPU time on one core, a textured panning picture):
# ultrafast 4.5×, superfast 3.0×, veryfast 2.4×. The price is size (about 4× veryfast's bytes at the
# same crf), not fidelity: crf 20 keeps the picture's quality, and a delivery is one file, once.
DEFAULT_PRESET = "ultrafast"
DEFAULT_CRF = 20

Masks = tuple[Polygon, ...]


def pixel_polygons(masks: Masks, width: int, height: int) -> list[list[list[int]]]:
    """The masks as integer pixel polygons of a `width` × `height` picture (what the manifest lists)."""
    return [[[round(x * width), round(y * height)] for x, y in poly] for poly in masks]


@dataclass(frozen=True)
class Raster:
    """One mask set rasterised for one picture size: flat indices to paint in each plane."""

    width: int
    height: int
    luma: np.ndarray  # bool (height, width)
    chroma: np.ndarray  # bool (ceil(height/2), ceil(width/2))

    @classmethod
    def build(cls, masks: Masks, width: int, height: int) -> Raster:
        luma = np.zeros((height, width), np.uint8)
        polys = [np.array(p, np.int32).reshape(-1, 1, 2) for p in pixel_polygons(masks, width, height)]
        if polys:
            cv2.fillPoly(luma, polys, 1)
        ch, cw = (height + 1) // 2, (width + 1) // 2
        padded = np.zeros((ch * 2, cw * 2), np.uint8)
        padded[:height, :width] = luma
        # A chroma sample is black if any of the 2×2 luma pixels it covers is masked.
        chroma = padded.reshape(ch, 2, cw, 2).max(axis=(1, 3)).astype(bool)
        return cls(width, height, luma.astype(bool), chroma)

    @property
    def empty(self) -> bool:
        return not self.luma.any()


def _plane_view(plane: Any, rows: int, cols: int) -> np.ndarray:
    """A writable (rows, cols) numpy view of one frame plane (its stride may be wider)."""
    flat = np.frombuffer(plane, np.uint8)
    return flat.reshape(-1, plane.line_size)[:rows, :cols]


class MaskPainter:
    """Paints one camera's masks onto frames; caches the raster per picture size and mask set."""

    def __init__(self) -> None:
        self._raster: Raster | None = None
        self._key: tuple[Masks, int, int] | None = None

    def raster(self, masks: Masks, width: int, height: int) -> Raster:
        key = (masks, width, height)
        if self._raster is None or self._key != key:
            self._raster = Raster.build(masks, width, height)
            self._key = key
        return self._raster

    def paint(self, frame: av.VideoFrame, masks: Masks) -> av.VideoFrame:
        """`frame` (any format) as yuv420p with `masks` filled black; pts and time_base kept."""
        if frame.format.name != "yuv420p":
            converted = frame.reformat(format="yuv420p")
            converted.pts = frame.pts
            if frame.time_base is not None:
                converted.time_base = frame.time_base
            frame = converted
        if not masks:
            return frame
        r = self.raster(masks, frame.width, frame.height)
        y = _plane_view(frame.planes[0], r.height, r.width)
        y[r.luma] = BLACK_Y
        ch, cw = r.chroma.shape
        for plane in frame.planes[1:3]:
            _plane_view(plane, ch, cw)[r.chroma] = NEUTRAL_C
        return frame


# --- clips ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redaction:
    """What was painted on a delivered clip: the manifest's `redaction` (PROTOCOL §2.3)."""

    masks_px: list[list[list[int]]]
    width: int
    height: int
    frames: int

    def manifest(self) -> dict[str, Any]:
        return {
            "masks": self.masks_px,
            "width": self.width,
            "height": self.height,
            "fill": "black",
            "codec": "h264",
        }


def redact_clip_sync(
    src: Path,
    dst: Path,
    masks: Masks,
    *,
    preset: str = DEFAULT_PRESET,
    crf: int = DEFAULT_CRF,
    threads: int = 0,
) -> Redaction:
    """Re-encode `src`'s video with `masks` painted black into `dst` (progressive MP4, faststart).

    Blocking; run it in a worker thread (`redact_clip`). Timestamps are the source's, so the clip
    keeps its timeline (and its gaps). `threads=1` keeps decoder and encoder on one core."""
    if not masks:
        raise ValueError("no masks: deliver the stream copy instead")
    tmp = dst.with_name(dst.name + ".part")
    painter = MaskPainter()
    frames = 0
    width = height = 0
    try:
        with (
            av.open(str(src)) as inp,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            ins = inp.streams.video[0]
            ins.thread_type = "SLICE" if threads == 1 else "AUTO"
            ins.codec_context.thread_count = threads
            width, height = ins.codec_context.width, ins.codec_context.height
            tb = Fraction(ins.time_base.numerator, ins.time_base.denominator)
            rate = ins.average_rate or ins.guessed_rate or Fraction(15)
            outs = out.add_stream("libx264", rate=rate)
            outs.width, outs.height, outs.pix_fmt = width, height, "yuv420p"
            outs.time_base = tb
            outs.codec_context.time_base = tb
            outs.codec_context.thread_count = threads
            outs.codec_context.options = {"preset": preset, "crf": str(crf)}
            for packet in inp.demux(ins):
                for frame in packet.decode():
                    frame = painter.paint(frame, masks)
                    frame.time_base = tb
                    frame.pict_type = av.video.frame.PictureType.NONE
                    for p in outs.encode(frame):
                        out.mux(p)
                    frames += 1
            for p in outs.encode(None):
                out.mux(p)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return Redaction(pixel_polygons(masks, width, height), width, height, frames)


async def redact_clip(src: Path, dst: Path, masks: Masks, **kwargs: Any) -> Redaction:
    return await asyncio.to_thread(redact_clip_sync, src, dst, masks, **kwargs)


def masked_still(jpeg: bytes, masks: Masks) -> bytes:
    """A JPEG still with `masks` painted exactly as on a delivery: the approval screen's preview."""
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise ValueError("not a JPEG")
    frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
    painted = MaskPainter().paint(frame, masks)
    ok, out = cv2.imencode(".jpg", painted.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return out.tobytes()


# --- live -----------------------------------------------------------------------------------------


class RedactingTrack(MediaStreamTrack):
    """A video track that decodes an encoded track's packets, paints the masks, and returns frames.

    aiortc then encodes the frames itself (its H.264 encoder, libx264) — and, unlike the pass-through
    relay, honours the viewer's keyframe requests. `masks()` is asked for every frame, so a change in
    Settings applies to a running stream. Decoding runs in a worker thread, one frame at a time.
    The inner track (a `RelayTrack`, which enforces `may_send` and the grant's end) is stopped with
    this one.
    """

    kind = "video"

    def __init__(self, inner: MediaStreamTrack, masks: Callable[[], Masks]) -> None:
        super().__init__()
        self.inner = inner
        self._masks = masks
        self._painter = MaskPainter()
        self._decoder = av.CodecContext.create("h264", "r")
        self._lock = threading.Lock()  # the decoder is used by one worker thread at a time
        self.frames_sent = 0
        inner.on("ended", self.stop)

    def _decode(self, packet: av.Packet, masks: Masks) -> list[av.VideoFrame]:
        with self._lock:
            try:
                frames = self._decoder.decode(packet)
            except av.error.InvalidDataError:
                return []  # a viewer joined mid-GOP: the relay starts at a keyframe, this is rare
            out = []
            for frame in frames:
                painted = self._painter.paint(frame, masks)
                painted.pts, painted.time_base = packet.pts, packet.time_base
                out.append(painted)
            return out

    async def recv(self) -> av.VideoFrame:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            packet = await self.inner.recv()
            frames = await asyncio.to_thread(self._decode, packet, self._masks())
            if self.readyState != "live":
                raise MediaStreamError
            if frames:
                self.frames_sent += 1
                return frames[-1]

    def stop(self) -> None:
        if self.inner.readyState == "live":
            self.inner.stop()
        super().stop()


def redacting(inner: MediaStreamTrack, masks: Callable[[], Masks]) -> MediaStreamTrack:
    """`inner` itself while the camera has no masks at session start, else a `RedactingTrack`."""
    return RedactingTrack(inner, masks) if masks() else inner


def masks_of(config_lookup: Callable[[str], Any], camera_id: str) -> Masks:
    """The masks in force for `camera_id` in the effective config (`Config.camera`)."""
    cam = config_lookup(camera_id)
    return () if cam is None else tuple(cam.privacy.masks)
