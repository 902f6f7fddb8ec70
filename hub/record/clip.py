"""Keyframe-cut clip export: the indexed segments covering [start, end] → one stream-copied MP4.

Cut points. Stream copy can only start on a keyframe, so the clip starts at the last keyframe at or
before `start` and ends just before the first keyframe at or after `end`: it covers at least
[start, end] and at most one GOP more at each end. Nothing is decoded or re-encoded; packets are
copied as they are (their bytes are identical to the recording's), only their timestamps are shifted
onto one timeline that starts at 0 at the first kept keyframe.

Container: **progressive MP4 with `+faststart`** (one `moov` at the front, then `mdat`), not
fragmented. A clip is a finished file handed to a person — an owner's player, an agency's evidence
tool — and progressive MP4 is what every player and forensic tool accepts, shows a duration for and can
seek without scanning; `faststart` makes it playable while it downloads. Memory stays bounded: packets
stream from segment to output one at a time; the muxer keeps only the sample table (~30 bytes per
frame, about 1.6 MB for an hour at 15 fps); `faststart` moves the `moov` in a second pass with a fixed
buffer.

Sound. Segments may carry the camera's audio beside the video (when the owner turned it on for that
camera). A clip carries it only when the caller asks (`audio=True`: the approval's `scope.audio`,
PROTOCOL §3); otherwise the audio stream is simply not copied, so the clip has none. When it is
copied, its packets keep their bytes and are placed on the clip's timeline by the same wall clock as
the video (the segmenter muxed them on the video's clock); audio from before the first kept keyframe
or after the clip's end is left out. The audio track's format comes from the first segment: a
segment whose audio differs (or has none) contributes no audio, so the sound has a gap there.

Integrity. Each segment's SHA-256 is checked against the index before it is used, and the clip result
lists the segments used (start, end, sha256) for the consent manifest. A gap inside the range stays a
gap (the timeline jumps; no frames are invented), and the result lists the gaps.

Sealed segments (`[storage] encrypt`) are opened through `AtRest` (sealed.py): decrypted whole into
memory one segment at a time (a few seconds each), hashed there, and demuxed from memory; the index
sha256 is of the plaintext, so the check is the same for plain and sealed files.

Blocking (FFmpeg, file I/O): `export_clip()` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from hub.record.sealed import AtRest, SealedError
from hub.record.segmenter import hash_file
from hub.store import Store
from hub.store import segments as q

log = logging.getLogger(__name__)


class ClipError(Exception):
    """A clip could not be exported; `code` is stable for the CLI and API."""

    code = "clip"


class NoFootage(ClipError):
    code = "no_footage"


class SegmentCorrupt(ClipError):
    code = "segment_corrupt"


class StreamChanged(ClipError):
    code = "stream_changed"


@dataclass(frozen=True)
class ClipSegment:
    """A source segment as recorded in the consent manifest."""

    path: str
    start_at: float
    end_at: float
    sha256: str


@dataclass(frozen=True)
class Clip:
    path: Path
    camera_id: str
    requested: tuple[float, float]
    start_at: float  # wall-clock time of the first kept keyframe (≤ requested start when covered)
    end_at: float  # wall-clock end of the last kept frame (≥ requested end when covered)
    duration_s: float
    packets: int
    codec: str
    width: int
    height: int
    segments: list[ClipSegment]
    gaps: list[q.Gap]
    audio_codec: str | None = None  # the audio stream the clip carries, None when it has none

    @property
    def covers_request(self) -> bool:
        return self.start_at <= self.requested[0] + 1e-6 and self.end_at >= self.requested[1] - 1e-6


def export_clip_sync(
    recordings_dir: Path,
    store: Store,
    camera_id: str,
    start: float,
    end: float,
    out_path: Path,
    *,
    verify: bool = True,
    at_rest: AtRest | None = None,
    audio: bool = False,
) -> Clip:
    """Blocking; call from a worker thread (uses `store.run_sync`). `audio`: copy the sound too."""
    at_rest = at_rest or AtRest()
    if end <= start:
        raise ClipError(f"end ({end}) must be after start ({start})")
    segs = store.run_sync(q.segments_between, camera_id, start, end)
    if not segs:
        raise NoFootage(f"{camera_id}: no footage between {start} and {end}")
    gaps = store.run_sync(q.gaps_between, camera_id, segs[0].start_at, segs[-1].end_at)
    first = segs[0]
    if any((s.codec, s.width, s.height) != (first.codec, first.width, first.height) for s in segs):
        raise StreamChanged(f"{camera_id}: the stream changes format inside the range; export it in parts")

    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".part")
    used: list[ClipSegment] = []
    writer: _ClipWriter | None = None
    try:
        for seg in segs:
            source = _segment_source(at_rest, Path(recordings_dir), seg, verify)
            with av.open(source) as container:
                stream = container.streams.video[0]
                sound = container.streams.audio[0] if audio and container.streams.audio else None
                if writer is None:
                    cut = _last_keyframe_at_or_before(container, stream, seg.start_at, start)
                    writer = _ClipWriter(tmp, stream, seg.start_at + cut, sound)
                elif writer.extradata != bytes(stream.codec_context.extradata or b""):
                    raise StreamChanged(f"{seg.path}: parameter sets differ from the clip's")
                if writer.add_segment(container, stream, sound, seg.start_at, start, end):
                    used.append(ClipSegment(seg.path, seg.start_at, seg.end_at, seg.sha256))
            if writer.done:
                break
        assert writer is not None
        if writer.packets == 0:
            raise NoFootage(f"{camera_id}: no frames between {start} and {end}")
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        if writer is not None:
            writer.abort()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    clip = Clip(
        out_path,
        camera_id,
        (start, end),
        writer.start_wall,
        writer.end_wall,
        writer.end_wall - writer.start_wall,
        writer.packets,
        first.codec,
        first.width,
        first.height,
        used,
        [g for g in gaps if g.end_at >= writer.start_wall and g.start_at <= writer.end_wall],
        writer.audio_codec if writer.audio_packets else None,
    )
    log.info(
        "clip %s: %s %.3f–%.3f (%d segments, %d packets, audio %s)",
        out_path,
        camera_id,
        clip.start_at,
        clip.end_at,
        len(used),
        clip.packets,
        f"{clip.audio_codec} ({writer.audio_packets} packets)" if clip.audio_codec else "none",
    )
    return clip


async def export_clip(
    recordings_dir: Path,
    store: Store,
    camera_id: str,
    start: float,
    end: float,
    out_path: Path,
    *,
    verify: bool = True,
    at_rest: AtRest | None = None,
    audio: bool = False,
) -> Clip:
    """Export [start, end] of `camera_id` to `out_path` (see module docstring), in a worker thread."""
    return await asyncio.to_thread(
        export_clip_sync,
        Path(recordings_dir),
        store,
        camera_id,
        start,
        end,
        Path(out_path),
        verify=verify,
        at_rest=at_rest,
        audio=audio,
    )


def _segment_source(at_rest: AtRest, recordings_dir: Path, seg: q.Segment, verify: bool) -> str | io.BytesIO:
    """What to demux for `seg`, its sha256 checked against the index when `verify`."""
    path = os.path.join(recordings_dir, seg.path)  # str: see Segmenter._root
    try:
        if at_rest.is_sealed(path):
            data = at_rest.read_file(path)  # authenticated record by record
            if verify and hashlib.sha256(data).hexdigest() != seg.sha256:
                raise SegmentCorrupt(f"{seg.path}: sha256 does not match the index")
            return io.BytesIO(data)
        if verify and hash_file(path)[1] != seg.sha256:
            raise SegmentCorrupt(f"{seg.path}: sha256 does not match the index")
        return path
    except FileNotFoundError as exc:
        raise SegmentCorrupt(f"{seg.path}: file missing") from exc
    except SealedError as exc:
        raise SegmentCorrupt(f"{seg.path}: {exc} ({exc.code})") from exc


def _last_keyframe_at_or_before(container: Any, stream: Any, seg_start: float, start: float) -> float:
    """Offset (s, from the segment start) of the last keyframe at or before `start`; 0 if none."""
    tb = stream.time_base
    first_pts: int | None = None
    best = 0.0
    for p in container.demux(stream):
        if p.size == 0 or p.pts is None:
            continue
        if first_pts is None:
            first_pts = p.pts
        offset = float((p.pts - first_pts) * tb)
        if seg_start + offset > start + 1e-6:
            break
        if p.is_keyframe:
            best = offset
    container.seek(0)
    return best


class _ClipWriter:
    """The output file and the one timeline all kept packets are shifted onto."""

    def __init__(self, path: Path, template: Any, start_wall: float, audio_template: Any = None) -> None:
        self.path = path
        self.time_base = Fraction(template.time_base.numerator, template.time_base.denominator)
        self.extradata = bytes(template.codec_context.extradata or b"")
        self.start_wall = start_wall
        self.end_wall = start_wall
        self.packets = 0
        self.done = False
        self._last_dts: int | None = None
        self._started = False
        self.container: Any = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        # A stream from the recording's own parameters: no encoder is opened (MEDIA_NOTES).
        self.stream = self.container.add_stream_from_template(template)
        self.stream.time_base = self.time_base
        # The sound, when it may leave: a second stream copied the same way, or none at all.
        self.audio_stream: Any = None
        self.audio_codec: str | None = None
        self.audio_extradata = b""
        self.audio_packets = 0
        self._last_audio_pts: int | None = None
        if audio_template is not None:
            self.audio_stream = self.container.add_stream_from_template(audio_template)
            self.audio_stream.time_base = audio_template.time_base
            self.audio_codec = audio_template.codec_context.name
            self.audio_extradata = bytes(audio_template.codec_context.extradata or b"")

    def add_segment(
        self, container: Any, stream: Any, sound: Any, seg_start: float, start: float, end: float
    ) -> bool:
        """Copy the packets of one segment that belong in the clip; True if any video did."""
        tb = self.time_base
        first_pts: int | None = None
        shift = 0
        used = False
        if sound is not None and (
            self.audio_stream is None
            or sound.codec_context.name != self.audio_codec
            or bytes(sound.codec_context.extradata or b"") != self.audio_extradata
        ):
            sound = None  # no audio track in the clip, or this segment's differs: a gap in the sound
        early: list[Any] = []
        for p in container.demux(stream) if sound is None else container.demux(stream, sound):
            if p.size == 0 or p.pts is None or p.dts is None:
                continue
            if p.stream is not stream:
                if first_pts is None:
                    early.append(p)  # placed once the video's first time is known
                else:
                    self._add_audio(p, seg_start + float(p.pts * p.time_base - first_pts * tb))
                continue
            if first_pts is None:
                first_pts = p.pts
                for a in early:
                    self._add_audio(a, seg_start + float(a.pts * a.time_base - first_pts * tb))
                # This segment's timeline placed on the clip's: t_clip = seg_start + (pts - first) - start_wall.
                shift = round((seg_start - self.start_wall) / tb) - first_pts
            wall = seg_start + float((p.pts - first_pts) * tb)
            if not self._started:
                if not p.is_keyframe or wall < self.start_wall - 1e-6:
                    continue
                self._started = True
            if p.is_keyframe and wall >= end - 1e-6 and self.packets:
                self.done = True
                break
            pts, dts = p.pts + shift, p.dts + shift
            if self._last_dts is not None and dts <= self._last_dts:
                # Rounding where two segments meet: keep decode order strictly increasing.
                bump = self._last_dts + 1 - dts
                pts, dts = pts + bump, dts + bump
            duration = p.duration or 0
            p.pts, p.dts = pts, dts
            p.time_base = tb
            p.stream = self.stream
            self.container.mux(p)
            self._last_dts = dts
            self.packets += 1
            used = True
            self.end_wall = max(self.end_wall, self.start_wall + float((pts + duration) * tb))
        return used

    def _add_audio(self, p: Any, wall: float) -> None:
        """One audio packet at `wall` (s), on the clip's timeline; none from before its first frame."""
        if wall < self.start_wall - 1e-6:
            return
        atb = p.time_base
        pts = round((wall - self.start_wall) / atb)
        if self._last_audio_pts is not None and pts <= self._last_audio_pts:
            return  # overlaps what the previous segment gave (rounding at the seam)
        p.pts = p.dts = pts
        p.stream = self.audio_stream
        self.container.mux(p)
        self._last_audio_pts = pts
        self.audio_packets += 1

    def close(self) -> None:
        self.container.close()
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
