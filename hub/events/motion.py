"""Motion detection on a camera's low-resolution stream.

Three layers, each testable alone:

- `MotionDetector` (pure, numpy in, score out): grey + downscale to `analysis_width`, blank the
  privacy masks, compare with a running-average background after fitting out the frame's global
  gain and offset (flicker, auto exposure; a jump over 30% relearns the background), threshold,
  open/dilate, and measure the moving fraction of the zones. A pixel that differs from the
  background but has not changed itself for `still_absorb_s` is background the model got wrong — an
  object that was in the first analysed frame and left ("ghost"), or one that arrived and stays (a
  parked car) — and is learnt at once; without this a ghost faded at alpha/8 and kept its event open
  for ~65 s (issue 16). It also blacks the privacy masks out
  of the frames kept for thumbnails (the recording itself is a stream copy and is not redacted).
- `MotionHysteresis` (pure, score + time in, transitions out): an event starts when motion lasts
  `start_frames` analysed frames in a row and ends after `end_quiet_s` without motion, so one
  visitor walking in is one event, not one per step. It keeps the frame with the highest score for
  the thumbnail.
- `MotionRunner`: decodes a stream with PyAV (RTSP sub-stream, or a main stream downscaled) in a
  named thread at a reduced analysis rate, a live stream in batches of `BATCH_S`, reconnects with
  capped backoff and jitter, and hands transitions to the event loop. The event loop never runs
  FFmpeg or OpenCV.

Zones and masks are polygons in normalised coordinates (x, y in 0..1 of the picture), so they
survive a resolution change of the camera.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from hub.redact import redact
from hub.threadname import name_os_thread

log = logging.getLogger(__name__)

# A global brightness change larger than this (30%) makes the detector relearn its background.
RELEARN_GAIN_CHANGE = 0.3
# At most this many zone pixels feed the global gain/offset medians. The median of n samples is
# off by ~1.25 sigma/sqrt(n): under 3% of the spread for 2048, and the fitted offset moves by a
# fraction of a grey level; gathering and sorting the 11,360 samples (one pixel in four) of a
# 320x180 picture cost ~0.1 ms a frame.
MEDIAN_SAMPLES = 2048

# A live stream's packets are decoded and analysed once this much video has arrived (or
# BATCH_MAX_PACKETS have), not one by one as they come (issue 17). The thread then runs its Python,
# the decoder and the detector back to back instead of waking cold for each packet. Measured on
# 2026-12-05 (1 camera, `bench.motion_bench`, CPU against `ffmpeg -threads 1 -f null` on the same
# sub-stream): x1.59-1.78 packet by packet, x1.52-1.61 in batches of 0.5 s, x1.24-1.40 of 1 s. The
# price is latency, not accuracy: frames keep the wall-clock time their packet arrived, so events
# are timed as before, but are seen up to BATCH_S later (a motion notification a second later; a
# press is a separate event and is not delayed). A stream that stalls leaves its last batch for the
# read timeout, after which the event it was in ends at its last motion, as before.
BATCH_S = 1.0
BATCH_MAX_PACKETS = 64

Point = tuple[float, float]
Polygon = Sequence[Point]


@dataclass(frozen=True)
class MotionConfig:
    """Per-camera motion settings. Units are in the names; areas are fractions of the zone area."""

    zones: tuple[Polygon, ...] = ()
    """Only motion inside these polygons counts; empty means the whole picture."""
    masks: tuple[Polygon, ...] = ()
    """Privacy masks: blanked before analysis, never looked at."""
    analysis_width: int = 320
    pixel_threshold: int = 25
    """Grey-level difference from the background (after removing the global offset) that is motion."""
    min_area: float = 0.005
    """Moving fraction of the zone area needed for a frame to count as motion."""
    background_alpha: float = 0.05
    """Learning rate of the running-average background for still pixels (moving ones learn 8x slower)."""
    start_frames: int = 3
    end_quiet_s: float = 5.0
    analysis_fps: float = 5.0
    still_absorb_s: float = 3.0
    """A difference from the background that stays unchanged this long is learnt as background."""

    def __post_init__(self) -> None:
        for name, polys in (("zones", self.zones), ("masks", self.masks)):
            for poly in polys:
                if len(poly) < 3:
                    raise ValueError(f"motion.{name}: a polygon needs at least 3 points, got {poly!r}")
                for x, y in poly:
                    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                        raise ValueError(f"motion.{name}: point {(x, y)!r} is outside 0..1")
        if not 16 <= self.analysis_width <= 1920:
            raise ValueError(f"motion.analysis_width must be in 16..1920, got {self.analysis_width}")
        if not 0 < self.pixel_threshold < 255:
            raise ValueError(f"motion.pixel_threshold must be in 1..254, got {self.pixel_threshold}")
        if not 0.0 < self.min_area <= 1.0:
            raise ValueError(f"motion.min_area must be in (0, 1], got {self.min_area}")
        if not 0.0 < self.background_alpha < 1.0:
            raise ValueError(f"motion.background_alpha must be in (0, 1), got {self.background_alpha}")
        if self.start_frames < 1:
            raise ValueError(f"motion.start_frames must be >= 1, got {self.start_frames}")
        if self.end_quiet_s < 0:
            raise ValueError(f"motion.end_quiet_s must be >= 0, got {self.end_quiet_s}")
        if not 0.1 <= self.analysis_fps <= 30:
            raise ValueError(f"motion.analysis_fps must be in 0.1..30, got {self.analysis_fps}")
        if not 0.5 <= self.still_absorb_s <= 600:
            raise ValueError(f"motion.still_absorb_s must be in 0.5..600, got {self.still_absorb_s}")


def _median(values: np.ndarray) -> float:
    """np.median of a 1-D scratch array, partitioned in place (np.median copies it first)."""
    n = values.size
    k = n // 2
    if n % 2:
        values.partition(k)
        return float(values[k])
    values.partition((k - 1, k))
    return (float(values[k - 1]) + float(values[k])) / 2


def polygon_mask(polys: Sequence[Polygon], width: int, height: int) -> np.ndarray:
    """A uint8 mask (255 inside any polygon) at `width`x`height` from normalised polygons."""
    mask = np.zeros((height, width), np.uint8)
    if polys:
        pts = [
            np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly], np.int32)
            for poly in polys
        ]
        cv2.fillPoly(mask, pts, 255)
    return mask


class MotionDetector:
    """Scores each frame by the moving fraction of the zones. Not thread-safe; one per camera.

    Cost (issue 17): the runner analyses 5 frames a second per camera, and that cost about 3/4 of
    the CPU of decoding every frame. Every image lives in a buffer allocated once per resolution
    and written with `dst=`; grey levels stay uint8 where the arithmetic is exact (the picture, the
    previous frame, the masks) and only the background model is float; the gain/offset medians use
    at most MEDIAN_SAMPLES samples; a limited-range picture is stretched in the blur's pass, after
    the downscale; a frame with no foreground at all takes a short path. In the runner a frame
    costs several times what it does in a tight loop, so passes and calls count more than pixels.
    """

    idle_fast_path = True
    """Take the short path for a frame the background explains entirely (same result; tests turn
    it off to check that)."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._size: tuple[int, int] | None = None
        self._source_size: tuple[int, int] | None = None
        self._background: np.ndarray | None = None  # float32 running average
        self._has_previous = False  # whether `_previous` holds the last analysed frame
        self._still: np.ndarray | None = None  # per pixel: analysed frames foreground and unchanged
        self._absorb_after = max(1, math.ceil(config.still_absorb_s * config.analysis_fps))
        self._zone: np.ndarray | None = None  # uint8 255 where counted
        self._sample_index: np.ndarray | None = None
        self._privacy: np.ndarray | None = None  # uint8 255 inside the privacy masks; None: no masks
        self._redaction: tuple[tuple[int, ...], np.ndarray] | None = None  # (shape, 255 where kept)
        self._zone_px = 0
        # Scratch images at analysis size, allocated in `_prepare`.
        self._small = self._current = self._previous = np.empty((0, 0), np.uint8)
        self._moving = self._mask = self._explained = np.empty((0, 0), np.uint8)
        self._black_full = self._black_limited = np.empty((0, 0), np.uint8)
        self._diff = np.empty((0, 0), np.float32)
        self._open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._dilate_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def reset(self) -> None:
        """Forget the background (after a reconnect the picture may have changed)."""
        self._background = None
        self._has_previous = False
        self._still = None

    def redact(self, image: np.ndarray) -> np.ndarray:
        """Black out the privacy masks in `image` (in place) so thumbnails never show them."""
        if not self.config.masks:
            return image
        h, w = image.shape[:2]
        if self._redaction is None or self._redaction[0] != image.shape:
            keep = cv2.bitwise_not(polygon_mask(self.config.masks, w, h))
            if image.ndim == 3:
                keep = cv2.merge([keep] * image.shape[2])
            self._redaction = (image.shape, keep)
        # One SIMD AND with a 0/255 mask: boolean fancy indexing (image[mask] = 0) cost ~2 ms per
        # 640x360 frame, more than decoding it (issue 17).
        cv2.bitwise_and(image, self._redaction[1], dst=image)
        return image

    def _prepare(self, width: int, height: int) -> None:
        cfg = self.config
        aw = cfg.analysis_width
        ah = max(1, round(height * aw / width))
        self._size = (aw, ah)
        privacy = polygon_mask(cfg.masks, aw, ah)
        zone = polygon_mask(cfg.zones, aw, ah) if cfg.zones else np.full((ah, aw), 255, np.uint8)
        cv2.bitwise_and(zone, cv2.bitwise_not(privacy), dst=zone)
        self._zone = zone
        # The global gain/offset medians need a sample of the zone, not all of it: whole rows
        # spread over its height, about MEDIAN_SAMPLES pixels. Rows, not a grid: gathering them
        # reads a few contiguous runs of the background instead of one cache line per sample (in
        # the runner, 170 -> 125 us a frame for the fit, issue 17).
        rows = np.zeros((ah, aw), np.uint8)
        rows[:: max(1, math.ceil(int(np.count_nonzero(zone)) / MEDIAN_SAMPLES)), :] = 1
        index = np.flatnonzero(rows & zone)  # flat indices: `take` gathers faster than a mask
        if index.size == 0:  # thin zones that fall between the rows: all of them
            index = np.flatnonzero(zone)
        self._sample_index = index[:: max(1, math.ceil(index.size / MEDIAN_SAMPLES))]
        self._privacy = privacy if privacy.any() else None
        self._black_full = np.zeros((ah, aw), np.uint8)
        self._black_limited = np.full((ah, aw), 16, np.uint8)
        self._zone_px = int(np.count_nonzero(zone))
        for name in ("_small", "_current", "_previous", "_moving", "_mask", "_explained"):
            setattr(self, name, np.empty((ah, aw), np.uint8))
        self._diff = np.empty((ah, aw), np.float32)
        self.reset()

    def _relearn(self, current: np.ndarray) -> None:
        """Take `current` as the background and the previous frame; nothing is still yet."""
        self._background = current.astype(np.float32)
        # A uint8 counter is enough below 255 frames (the default is 15) and costs fewer passes.
        self._still = np.zeros(current.shape, np.uint8 if self._absorb_after < 255 else np.uint16)
        self._keep_as_previous()

    def _keep_as_previous(self) -> None:
        # Swap instead of copying: the next frame is written into the old previous one's buffer.
        self._previous, self._current = self._current, self._previous
        self._has_previous = True

    def score(self, frame: np.ndarray, *, limited_range: bool = False) -> float:
        """Moving fraction (0..1) of the zone area in `frame` (BGR or grey), then learn the frame.

        `limited_range`: `frame` is video-range luma (16..235, e.g. a decoder's Y plane); it is
        stretched to 0..255 (see `frame_gray`) after the downscale, so `pixel_threshold` keeps its
        meaning at a quarter of the cost of stretching the whole frame.
        """
        if frame.ndim == 3:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        else:
            gray = frame
        h, w = gray.shape[:2]
        if (w, h) != self._source_size:
            # First frame, or the camera changed resolution: masks at the new aspect ratio.
            self._prepare(w, h)
            self._source_size = (w, h)
        assert self._size is not None and self._zone is not None and self._sample_index is not None
        cfg = self.config
        small = self._downscale(gray)
        if limited_range:
            if self._privacy is not None:  # blank the privacy masks to black (16 in video range)
                cv2.copyTo(self._black_limited, self._privacy, dst=small)
            # Blur and stretch 16..235 to 0..255 in one separable pass: 255/219 * (blur - 16),
            # rounded and clipped like frame_gray's table, one pass fewer than LUT then blur.
            current = cv2.sepFilter2D(
                small, cv2.CV_8U, _BLUR_STRETCH, _BLUR, dst=self._current, delta=-16 * _STRETCH
            )
        else:
            if self._privacy is not None:  # blank the privacy masks (fancy indexing costs more)
                cv2.copyTo(self._black_full, self._privacy, dst=small)
            current = cv2.GaussianBlur(small, (5, 5), 0, dst=self._current)
        bg = self._background
        if bg is None or not self._has_previous:
            self._relearn(current)
            return 0.0
        if self._zone_px == 0:
            return 0.0
        # A global brightness change (lights, auto exposure, flicker) scales and shifts every pixel
        # alike: fit gain and offset with medians over the zone (a visitor is a minority of it, so
        # the medians ignore them) and keep only what the global change does not explain.
        zone_cur, zone_bg = current.take(self._sample_index), bg.take(self._sample_index)
        gain = _median(zone_cur / np.maximum(zone_bg, np.float32(8.0)))
        if abs(gain - 1.0) > RELEARN_GAIN_CHANGE:
            # Lights switched or the camera changed exposure: clipped highlights and colour shifts
            # make the old background useless. Learn the new picture; a visitor is seen next frame.
            self._relearn(current)
            return 0.0
        offset = _median(zone_cur - zone_bg * np.float32(gain))
        # Foreground: |current - (gain * background + offset)| > threshold. `explained` is its
        # complement, 255 where the fitted background explains the pixel (masks are 0/255).
        diff = cv2.addWeighted(current, 1.0, bg, -gain, -offset, dst=self._diff, dtype=cv2.CV_32F)
        np.abs(diff, out=diff)  # cv2.inRange(diff, -t, t) is exact too but 2x slower (27 us)
        explained = cv2.compare(diff, float(cfg.pixel_threshold), cv2.CMP_LE, dst=self._explained)
        if self.idle_fast_path and cv2.countNonZero(explained) == explained.size:
            # The background explains every pixel (a quiet scene, most of a doorbell's day). What
            # the general path below would do then, in 2 calls instead of ~15: no pixel is still
            # foreground, so every counter is 0; nothing moves, so all learn at full alpha.
            self._still.fill(0)
            cv2.accumulateWeighted(current, bg, cfg.background_alpha)
            self._keep_as_previous()
            return 0.0
        self._absorb_still(current, explained)
        # Moving: in the zone, not saturated (>= 250 cannot be compared after a gain change) and
        # not explained; a saturating subtract of 0/255 masks is "and not".
        moving = cv2.compare(current, 249, cv2.CMP_LE, dst=self._moving)
        cv2.bitwise_and(moving, self._zone, dst=moving)
        cv2.subtract(moving, explained, dst=moving)
        moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, self._open_kernel)
        moving = cv2.dilate(moving, self._dilate_kernel, dst=self._moving)
        cv2.bitwise_and(moving, self._zone, dst=moving)
        alpha = cfg.background_alpha
        still = cv2.bitwise_not(moving, dst=self._mask)
        cv2.accumulateWeighted(current, bg, alpha, mask=still)
        cv2.accumulateWeighted(current, bg, alpha / 8, mask=moving)
        self._keep_as_previous()
        return cv2.countNonZero(moving) / self._zone_px

    def _downscale(self, gray: np.ndarray) -> np.ndarray:
        """`gray` box-averaged to the analysis size, into `_small`.

        Halving steps first: OpenCV's INTER_AREA has a fast path for an exact 2x that the general
        one lacks (640x360 to 160x90 in one step: ~170 us; in two halvings: ~23 us; 1920x1080 to
        320x180: ~1 ms against ~0.3 ms). A mean of 2x2 means is the 4x4 mean, give or take the
        rounding of the middle step (1 grey level at most).
        """
        assert self._size is not None
        aw, ah = self._size
        src = gray
        while src.shape[1] >= 4 * aw and src.shape[0] >= 4 * ah:
            src = cv2.resize(src, (src.shape[1] // 2, src.shape[0] // 2), interpolation=cv2.INTER_AREA)
        return cv2.resize(src, self._size, dst=self._small, interpolation=cv2.INTER_AREA)

    def _absorb_still(self, current: np.ndarray, explained: np.ndarray) -> None:
        """Learn at once the foreground pixels that have not changed for `still_absorb_s` (see the
        module docstring); they are marked `explained` (0/255, the complement of the foreground)
        so this frame already counts them as still."""
        assert self._still is not None and self._background is not None
        # Grey levels are whole numbers here, so the uint8 difference is exact.
        unchanged = cv2.absdiff(current, self._previous, dst=self._mask)
        cv2.compare(unchanged, self.config.pixel_threshold, cv2.CMP_LE, dst=unchanged)
        still = cv2.subtract(unchanged, explained, dst=unchanged)  # foreground and unchanged
        # Count the frames a pixel stayed still, 0 where it did not (adds saturate, never wrap).
        if self._still.dtype == np.uint8:
            cv2.add(self._still, 1, dst=self._still)
            cv2.bitwise_and(self._still, still, dst=self._still)
        else:  # more than 254 frames: a masked add into a new array leaves 0 outside the mask
            self._still = cv2.add(self._still, 1, mask=still)
        absorb = cv2.compare(self._still, self._absorb_after, cv2.CMP_GE, dst=still)
        if cv2.countNonZero(absorb):
            cv2.accumulateWeighted(current, self._background, 1.0, mask=absorb)  # background := current
            self._still[absorb > 0] = 0  # rare: an object arrived or left and stayed for seconds
            cv2.bitwise_or(explained, absorb, dst=explained)


@dataclass
class MotionEvent:
    """A motion event as the hysteresis sees it; `end` is None while it lasts."""

    start: float
    end: float | None = None
    score: float = 0.0
    best_frame: np.ndarray | None = field(default=None, repr=False)
    best_time: float | None = None


@dataclass(frozen=True)
class Transition:
    """`kind` is "start" or "end"; the event object is shared between the two."""

    kind: str
    event: MotionEvent


class MotionHysteresis:
    """Turns per-frame scores into events: start after `start_frames` in a row, end after quiet."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._run = 0
        self._run_start = 0.0
        self._run_best: tuple[float, float, np.ndarray | None] = (0.0, 0.0, None)
        self._last_motion = 0.0
        self.current: MotionEvent | None = None

    def keeps(self, score: float) -> bool:
        """Whether `update` with this score would keep its frame for the thumbnail: the runner
        holds on to that decoded frame and converts it to BGR only when the event ends (issue 17)."""
        if score < self.config.min_area:
            return False
        best = self.current.score if self.current is not None else self._run_best[0] if self._run else 0.0
        return score > best

    def update(self, t: float, score: float, frame: np.ndarray | None = None) -> Transition | None:
        """Feed one analysed frame at time `t` (seconds); returns a transition when one happens.

        `frame` is kept (copied) if it has the best score so far, for the thumbnail.
        """
        cfg = self.config
        motion = score >= cfg.min_area
        event = self.current
        if event is not None:
            if motion:
                self._last_motion = t
                if score > event.score:
                    event.score = score
                    event.best_time = t
                    event.best_frame = None if frame is None else frame.copy()
                return None
            if t - self._last_motion >= cfg.end_quiet_s:
                event.end = self._last_motion
                self.current = None
                self._run = 0
                return Transition("end", event)
            return None
        if not motion:
            self._run = 0
            return None
        if self._run == 0:
            self._run_start = t
            self._run_best = (0.0, t, None)
        self._run += 1
        if score > self._run_best[0]:
            self._run_best = (score, t, None if frame is None else frame.copy())
        if self._run < cfg.start_frames:
            return None
        best_score, best_t, best_frame = self._run_best
        self.current = MotionEvent(
            start=self._run_start, score=best_score, best_frame=best_frame, best_time=best_t
        )
        self._last_motion = t
        self._run_best = (0.0, 0.0, None)
        return Transition("start", self.current)

    def flush(self) -> Transition | None:
        """End the current event now (stream lost or stopping); its end is the last motion seen."""
        event = self.current
        self._run = 0
        if event is None:
            return None
        event.end = self._last_motion
        self.current = None
        return Transition("end", event)


@dataclass(frozen=True)
class AnalysedFrame:
    """The latest frame the runner looked at, for press thumbnails.

    The picture is converted to BGR (privacy masks blacked out) only when `image()` is called, in
    the caller's thread: nearly every analysed frame is replaced before anyone asks for it, and the
    conversion cost more CPU than decoding (issue 17).
    """

    time: float
    render: Callable[[], np.ndarray] = field(repr=False)

    def image(self) -> np.ndarray:
        """The frame as BGR with the privacy masks blacked out (a swscale conversion: call it off
        the event loop)."""
        return self.render()


# Decoded formats whose first plane is the luma (Y) plane, 8 bits per sample.
_LUMA_FIRST = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)
_FULL_RANGE = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "gray"})
_COLOR_RANGE_JPEG = 2  # AVCOL_RANGE_JPEG: full range 0..255
# BT.601 limited range (Y 16..235) stretched to 0..255: the grey level a yuv->bgr24 conversion
# followed by cvtColor(BGR2GRAY) gave before, so pixel_threshold keeps its meaning.
_STRETCH = 255.0 / 219.0
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * _STRETCH), 0, 255).astype(np.uint8)
# The detector's 5x5 Gaussian (what cv2.GaussianBlur uses for ksize 5, sigma 0) as separable
# taps, and the same with the limited->full stretch folded in (MotionDetector.score).
_BLUR = cv2.getGaussianKernel(5, 0)
_BLUR_STRETCH = _BLUR * _STRETCH


def frame_luma(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> tuple[np.ndarray, bool]:
    """The frame's luma at its own size and whether it is limited (video) range, 16..235.

    A view of the decoder's Y plane, no copy: the detector only looks at luma, and stretches a
    limited-range picture itself after downscaling it (`MotionDetector.score`).
    """
    name = frame.format.name
    if name not in _LUMA_FIRST:
        gray = (reformatter or VideoReformatter()).reformat(frame, format="gray", threads=1)
        return gray.to_ndarray(), False
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return luma, not (name in _FULL_RANGE or frame.color_range == _COLOR_RANGE_JPEG)


def frame_gray(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """The frame's grey levels (0..255) at its own size, read from the decoder's luma plane.

    A view of the Y plane plus a 256-entry lookup replaces a full yuv->bgr24 conversion and a
    BGR->grey pass; the runner does not call it (it passes `frame_luma` to the detector).
    """
    luma, limited = frame_luma(frame, reformatter)
    return cv2.LUT(luma, _LIMITED_TO_FULL) if limited else luma


def frame_bgr(
    frame: av.VideoFrame, max_width: int, reformatter: VideoReformatter | None = None
) -> np.ndarray:
    """The frame as BGR, downscaled by swscale to at most `max_width` (a main stream without a
    sub-stream).

    One swscale context on one thread: PyAV's default makes a context per frame with a slice thread
    per CPU, and starting and joining those threads cost more than the conversion (issue 17). Pass
    the runner's `reformatter` to reuse its context; it is not thread-safe.
    """
    width, height = frame.width, frame.height
    if width > max_width:
        width, height = max_width, max(2, round(frame.height * max_width / frame.width / 2) * 2)
    reformatter = reformatter or VideoReformatter()
    return reformatter.reformat(frame, width, height, "bgr24", threads=1).to_ndarray()


def _thumbnail_renderer(
    frame: av.VideoFrame, max_width: int, config: MotionConfig
) -> Callable[[], np.ndarray]:
    # A detector and a swscale context of their own: the render may run in another thread.
    return lambda: MotionDetector(config).redact(frame_bgr(frame, max_width))


class MotionRunner:
    """Decode a stream in a named thread, analyse at most `analysis_fps`, report transitions.

    `stop()` returns within one open or read timeout (FFmpeg calls cannot be interrupted sooner).

    `on_transition` is called on the event loop (via `call_soon_threadsafe`). With
    `reconnect=False` the runner stops at end of input (files, benchmarks); otherwise it reconnects
    with capped exponential backoff and jitter. Timestamps are the wall-clock time each packet
    arrived for live streams (`clock="wall"`, decoded in batches of `BATCH_S`) or the stream's own
    presentation time plus `clock_base` for files (`clock="stream"`, packet by packet).
    """

    def __init__(
        self,
        camera_id: str,
        url: str,
        config: MotionConfig,
        on_transition: Callable[[Transition], None],
        *,
        max_width: int = 640,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        reconnect: bool = True,
        clock: str = "wall",
        clock_base: float = 0.0,
        rtsp_transport: str = "tcp",
    ) -> None:
        if clock not in ("wall", "stream"):
            raise ValueError(f"clock must be 'wall' or 'stream', got {clock!r}")
        self.camera_id = camera_id
        self.url = url
        self.config = config
        self._on_transition = on_transition
        self._max_width = max_width
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._reconnect = reconnect
        self._clock = clock
        self._clock_base = clock_base
        # "auto" starts with TCP and moves to UDP for good when the camera answers 461.
        self._transport = "tcp" if rtsp_transport == "auto" else rtsp_transport
        self._may_fall_back = rtsp_transport == "auto"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self.latest: AnalysedFrame | None = None
        self.frames_analysed = 0
        self.frames_decoded = 0
        self.reconnects = 0
        self.last_error: str | None = None
        # (time, decoded frame) of the current run's or event's best score: its thumbnail.
        self._best: tuple[float, av.VideoFrame] | None = None

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("MotionRunner already started")
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._stop.clear()
        # Each camera has its own analysis thread; OpenCV's worker pool on top only adds hand-offs
        # and spinning for 320x180 images (measured: ~1/4 of the analysis CPU with 1 camera on 2
        # cores, issue 17). Process-wide; nothing else in camhub wants OpenCV's threads.
        cv2.setNumThreads(1)
        self._thread = threading.Thread(
            target=self._main, name=f"camhub-motion-{self.camera_id}", daemon=True
        )
        self._thread.start()

    async def wait_finished(self) -> None:
        """Return when the decode thread has exited (end of input with `reconnect=False`, or stop)."""
        assert self._done is not None, "not started"
        await self._done.wait()

    async def stop(self) -> None:
        """Ask the thread to stop and wait for it; at most one read timeout. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        assert self._done is not None
        await self._done.wait()
        await asyncio.to_thread(thread.join)
        self._thread = None

    def _emit(self, transition: Transition | None) -> None:
        if transition is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_transition, transition)

    def _main(self) -> None:
        name_os_thread()
        detector = MotionDetector(self.config)
        hysteresis = MotionHysteresis(self.config)
        failures = 0
        try:
            while not self._stop.is_set():
                analysed_before = self.frames_analysed
                try:
                    self._decode(detector, hysteresis)
                    self.last_error = None
                except Exception as exc:  # FFmpeg errors, timeouts, refused connections
                    # FFmpeg quotes the URL, credentials included (hub/redact.py).
                    self.last_error = redact(f"{type(exc).__name__}: {exc}")
                    log.warning("motion %s: stream error: %s", self.camera_id, self.last_error)
                    if self._may_fall_back and ("461" in str(exc) or "Protocol not supported" in str(exc)):
                        self._transport, self._may_fall_back = "udp", False
                        log.info("motion %s: the camera refuses RTP over TCP; using UDP", self.camera_id)
                # A lost stream ends the current event: its end is the last motion seen.
                self._emit(self._with_thumbnail(hysteresis.flush(), detector, None))
                self._best = None  # a run that had not become an event: its frame is not needed
                detector.reset()
                if not self._reconnect or self._stop.is_set():
                    break
                failures = 0 if self.frames_analysed > analysed_before else failures + 1
                initial, cap = self._backoff
                delay = min(cap, initial * 2 ** min(failures, 16)) * random.uniform(0.5, 1.0)
                self.reconnects += 1
                log.info("motion %s: reconnecting in %.1f s", self.camera_id, delay)
                self._stop.wait(delay)
        except Exception:
            log.exception("motion %s: runner crashed", self.camera_id)
        finally:
            if self._loop is not None and self._done is not None:
                try:
                    self._loop.call_soon_threadsafe(self._done.set)
                except RuntimeError:  # the loop is already closed
                    pass

    def _decode(self, detector: MotionDetector, hysteresis: MotionHysteresis) -> None:
        options = {}
        if self.url.startswith("rtsp://"):
            options = {"rtsp_transport": self._transport, "timeout": str(int(self._timeouts[1] * 1_000_000))}
        with av.open(self.url, options=options, timeout=self._timeouts) as container:
            stream = container.streams.video[0]
            # A sub-stream decodes fastest in CPU time on one thread (frame threads cost ~2x for
            # 640x360); a main stream used as fallback needs the threads to keep up.
            if stream.codec_context.width > 1280:
                stream.thread_type = "AUTO"
            else:
                stream.codec_context.thread_count = 1
            reformatter = VideoReformatter()  # one swscale context for this stream (frame_bgr)
            period = 1.0 / self.config.analysis_fps
            next_at: float | None = None

            def analyse(packet: av.Packet, arrived: float) -> None:
                nonlocal next_at
                for frame in packet.decode():
                    self.frames_decoded += 1
                    if self._clock == "wall":
                        t = arrived  # when the picture reached the hub, not when a batch got to it
                    else:
                        # FFmpeg's RTSP demuxer may give the first frame no pts (MEDIA_NOTES).
                        ft = frame.time
                        t = self._clock_base + (ft if ft is not None else 0.0)
                    # Analyse at most analysis_fps; a small slack keeps a 15 fps stream at 5 fps.
                    if next_at is not None and t < next_at - period * 0.1:
                        continue
                    next_at = t + period if next_at is None or t - next_at > period else next_at + period
                    # The detector blanks the masks itself at analysis size; the picture is
                    # converted to BGR only for an ending event's thumbnail (issue 17).
                    luma, limited = frame_luma(frame, reformatter)
                    score = detector.score(luma, limited_range=limited)
                    self.frames_analysed += 1
                    self.latest = AnalysedFrame(t, _thumbnail_renderer(frame, self._max_width, self.config))
                    if hysteresis.keeps(score):  # a new best frame of the event: its thumbnail
                        self._best = (t, frame)
                    transition = hysteresis.update(t, score)
                    self._emit(self._with_thumbnail(transition, detector, reformatter))

            # A live stream is decoded and analysed in batches (see BATCH_S); a file, which arrives
            # as fast as it is read, one packet at a time (a batch of no time).
            batch_s = BATCH_S if self._clock == "wall" else 0.0
            pending: list[tuple[av.Packet, float]] = []

            def analyse_pending() -> bool:
                """Analyse the held batch; False once the runner is stopping."""
                for held, at in pending:
                    if self._stop.is_set():
                        return False
                    analyse(held, at)
                pending.clear()
                return True

            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                arrived = time.time()
                pending.append((packet, arrived))
                if arrived - pending[0][1] < batch_s and len(pending) < BATCH_MAX_PACKETS:
                    continue
                if not analyse_pending():
                    return
            analyse_pending()  # end of input: the last partial batch

    def _with_thumbnail(
        self, transition: Transition | None, detector: MotionDetector, reformatter: VideoReformatter | None
    ) -> Transition | None:
        """Give an ending event its thumbnail (only the end's is stored): the best frame, converted
        to BGR and redacted now, once per event. Converting every new best as it came cost ~1 ms of
        CPU each, several times per visitor (issue 17)."""
        if transition is None or transition.kind != "end":
            return transition
        best, self._best = self._best, None
        event = transition.event
        if best is not None and best[0] == event.best_time:
            event.best_frame = detector.redact(frame_bgr(best[1], self._max_width, reformatter))
        return transition
