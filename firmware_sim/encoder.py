"""Encode each clip once with libx264 (PyAV) and keep its packets for replay.

Encoding 1080p with libx264 costs ~40x a stream copy (MEDIA_NOTES), so every clip is
encoded once per process (and optionally once per machine, in a cache directory) and the
RTSP/WHIP paths only replay its NAL units. Settings, chosen for what cameras send:

- closed GOPs of exactly ``gop`` frames (``keyint=min-keyint=gop``, ``scenecut=0``), clips
  are a whole number of GOPs, so clips can be switched and looped at any GOP boundary;
- no B-frames (``tune=zerolatency``): decode order = presentation order, pts = dts;
- SPS/PPS repeated before every IDR (``repeat-headers=1``): a viewer can join at any IDR
  and a mid-stream resolution change carries its own parameter sets;
- constrained-baseline-like stream (``profile=baseline``) that browsers and aiortc accept;
- constant quality by default (a few hundred kbit/s at 1080p for this simple scene), or CBR at
  ``bitrate_kbit`` with filler data for a camera-like byte rate.

x264's own SEI (its version banner) and AUD NAL units are removed; the sim adds its SEI
stamp to every frame when it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from firmware_sim import h264, picture

_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ClipSpec:
    width: int
    height: int
    fps: int
    gop: int
    clip: int
    frames: int
    bitrate_kbit: int = 0  # 0: constant quality (CRF 23); else CBR with filler data, like many cameras

    def cache_name(self) -> str:
        key = (
            f"v{_FORMAT_VERSION}-{self.width}x{self.height}-{self.fps}-{self.gop}-{self.clip}-{self.frames}-"
            f"{self.bitrate_kbit}"
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16] + ".clip"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    index: int  # frame index in the clip == pixel stamp frame number
    idr: bool
    nals: tuple[bytes, ...]  # without start codes; SPS+PPS precede the slice of an IDR


@dataclass(frozen=True, slots=True)
class Clip:
    spec: ClipSpec
    frames: tuple[EncodedFrame, ...]
    sps: bytes
    pps: bytes


def encode_clip(spec: ClipSpec) -> Clip:
    """Render and encode one clip (blocking: run it in a thread)."""
    if spec.frames % spec.gop:
        raise ValueError("a clip must be a whole number of GOPs")
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = spec.width, spec.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, spec.fps)
    ctx.framerate = Fraction(spec.fps)
    ctx.gop_size = spec.gop
    params = f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:repeat-headers=1:bframes=0:sliced-threads=0:aud=0"
    if spec.bitrate_kbit:
        # A synthetic scene compresses far better than a sensor's picture; CBR with filler NAL
        # units (type 12) gives the hub a camera-like byte rate at no extra encoding cost.
        rate = spec.bitrate_kbit
        params += f":nal-hrd=cbr:bitrate={rate}:vbv-maxrate={rate}:vbv-bufsize={rate}"
    ctx.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "x264-params": params}
    t0 = time.time()
    frames: list[EncodedFrame] = []
    sps = pps = b""

    def take(packets: list[av.Packet]) -> None:
        nonlocal sps, pps
        for packet in packets:
            nals = [
                n
                for n in h264.split_annexb(bytes(packet))
                if h264.nal_type(n) not in (h264.NAL_SEI, h264.NAL_AUD)
            ]
            idr = any(h264.nal_type(n) == h264.NAL_IDR for n in nals)
            for n in nals:
                if h264.nal_type(n) == h264.NAL_SPS and not sps:
                    sps = n
                elif h264.nal_type(n) == h264.NAL_PPS and not pps:
                    pps = n
            frames.append(EncodedFrame(index=len(frames), idr=idr, nals=tuple(nals)))

    for i in range(spec.frames):
        img = picture.render(spec.width, spec.height, spec.clip, i, spec.frames, spec.fps, t0)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        take(ctx.encode(frame))
    take(ctx.encode(None))
    if len(frames) != spec.frames or not all(f.idr == (f.index % spec.gop == 0) for f in frames):
        raise RuntimeError(f"encoder did not produce {spec.frames} frames with IDRs every {spec.gop}")
    return Clip(spec=spec, frames=tuple(frames), sps=sps, pps=pps)


def _dump(clip: Clip) -> bytes:
    out = [struct.pack(">4sII", b"CHSC", _FORMAT_VERSION, len(clip.frames))]
    for f in clip.frames:
        out.append(struct.pack(">BH", f.idr, len(f.nals)))
        for n in f.nals:
            out.append(struct.pack(">I", len(n)) + n)
    return b"".join(out)


def _load(spec: ClipSpec, data: bytes) -> Clip:
    magic, version, count = struct.unpack_from(">4sII", data)
    if magic != b"CHSC" or version != _FORMAT_VERSION or count != spec.frames:
        raise ValueError("stale clip cache")
    pos = 12
    frames = []
    for i in range(count):
        idr, n = struct.unpack_from(">BH", data, pos)
        pos += 3
        nals = []
        for _ in range(n):
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4
            nals.append(data[pos : pos + size])
            pos += size
        frames.append(EncodedFrame(index=i, idr=bool(idr), nals=tuple(nals)))
    sps = next(n for n in frames[0].nals if h264.nal_type(n) == h264.NAL_SPS)
    pps = next(n for n in frames[0].nals if h264.nal_type(n) == h264.NAL_PPS)
    return Clip(spec=spec, frames=tuple(frames), sps=sps, pps=pps)


class ClipCache:
    """Clips encoded at most once per process; optionally persisted under ``cache_dir``."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._clips: dict[ClipSpec, Clip] = {}
        self._pending: dict[ClipSpec, asyncio.Future[Clip]] = {}

    async def get(self, spec: ClipSpec) -> Clip:
        if spec in self._clips:
            return self._clips[spec]
        if spec in self._pending:
            return await asyncio.shield(self._pending[spec])
        fut: asyncio.Future[Clip] = asyncio.get_running_loop().create_future()
        self._pending[spec] = fut
        try:
            clip = await asyncio.to_thread(self._load_or_encode, spec)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: the caller sees the exception below
            raise
        finally:
            self._pending.pop(spec, None)
        self._clips[spec] = clip
        fut.set_result(clip)
        return clip

    def _load_or_encode(self, spec: ClipSpec) -> Clip:
        path = self.cache_dir / spec.cache_name() if self.cache_dir else None
        if path is not None and path.exists():
            try:
                return _load(spec, path.read_bytes())
            except (ValueError, struct.error, StopIteration):
                path.unlink(missing_ok=True)
        clip = encode_clip(spec)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own: two cameras (or two sim processes) sharing a cache dir may encode the
            # same clip at once, and a shared ".part" was renamed away under the other's feet (the
            # first `make demo` on a fresh machine died of it). The rename is atomic; the last wins.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_dump(clip))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return clip


# One cache per process, shared by every camera: all sims in a process replay the same clips.
PROCESS_CACHE = ClipCache()
_DIR_CACHES: dict[Path, ClipCache] = {}


def cache_for(cache_dir: Path | None) -> ClipCache:
    """The process's cache for `cache_dir` (the in-memory one for None): cameras sharing a directory
    share one cache, so a clip they all replay is encoded once, not once per camera."""
    if cache_dir is None:
        return PROCESS_CACHE
    return _DIR_CACHES.setdefault(cache_dir.resolve(), ClipCache(cache_dir))
