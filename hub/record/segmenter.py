"""Stream-copy camera packets into keyframe-aligned fragmented MP4 segments, indexed in SQLite.

Never transcodes: packets go into the file as they came (`add_mux_stream`, not `add_stream("h264")`,
which would open an encoder whose SPS/PPS replace the camera's — MEDIA_NOTES). H.265 is tagged
`hvc1` (ISO/IEC 14496-15 §8.4.1), the sample entry Safari and Chromium's MSE accept (FFmpeg's default
`hev1` shows a black box in Chromium, issue 16). A camera's audio, when it records audio
(`CodecParams.audio`, hub/ingest/audio.py), is a second track in the same segment: its packets go
wait in a small queue and go into a segment once video has passed their time, so each lands in the
segment its time belongs to (cameras send audio ahead of video: muxed on arrival, a segment's audio
ran ~0.2 s past its video and the next one started without it — measured against gst-rtsp-server);
audio from before a segment's start, or that arrives after the segment of its time was closed, is
dropped and counted. Each segment:

1. is opened at a keyframe as `<recordings>/<camera>/<YYYY-MM-DD>/<start>.mp4.part` (UTC date and
   start time, e.g. `2026-11-23/20261123T091857.123456Z.mp4.part`);
2. is written as fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`: `ftyp`+`moov` up front,
   then a `moof`+`mdat` fragment at every keyframe and at least every `FRAGMENT_S` of media, so
   fragments need not start at a keyframe), each handed to the kernel as soon as the muxer completes
   it (`flush_packets`): a killed process loses at most the fragment being written (see recovery.py;
   README, "What a crash loses"). Fragments are not fsynced: a power cut loses what the kernel had not
   written back yet;
3. is cut at the first keyframe at least `segment_s` after its start, so its length is the target
   rounded up to whole GOPs;
4. on close: fsync the file, rename away `.part`, fsync the directory, then insert the index row —
   the file is the truth and the row an index over it (STYLE, "Storage"). With a `finalizer`
   executor this step runs there, so a slow fsync never holds up the thread reading the camera.

Wall-clock times. A run (the packets between two discontinuities) is anchored once: its first
keyframe's arrival time maps to its pts; every later time is anchor + (pts - anchor_pts) × time_base.
So a segment's end is exactly the next segment's start (contiguous to float precision), and the
timeline follows the camera's frame clock rather than network jitter. While a run's first segment is
open its anchor may still move earlier (`_refine_anchor`); its `.part` is renamed to follow, so the
start a crash leaves in the file name (what recovery indexes) is the refined one, not the arrival of a
cached keyframe (issue 17: recovered footage ran 1.4 s ahead of the wall clock). If that mapping drifts from the
arrival clock by more than `max_drift_s`, the run is re-anchored at the next segment boundary and the
unaccounted time is recorded as a gap.

A camera starts each new session with its cached GOP, so after a reconnect less than a GOP after a
drop the first packets replay frames the previous run already recorded. A run that follows earlier
footage is therefore held back (`HOLD_SETTLE_S` of arrivals) until packets come in real time; then each
held packet's capture time is estimated (arrival bounds capture from above, see `_refine_anchor`) and
the replay — packets captured before the previous footage's end, or a keyframe byte-identical to one
the previous run wrote — is dropped up to the first keyframe after it. The new run starts there, so no
frame is written twice, footage is never stamped later than it arrived, and the frames that cannot be
decoded without the replayed keyframe are part of the recorded gap.

Discontinuities — a reconnect (`finish()`), a flagged timestamp jump, dts going backwards, or new
codec parameters (resolution change) — close the current segment and record a **gap** row from the
last recorded instant to the next one, with the reason, never papering over it. After one, packets are
dropped until the next keyframe (nothing before it is decodable).

At rest (`[storage] encrypt`): with a sealing `AtRest` the muxer writes through a `SealedWriter`
(sealed.py), so the `.part` is sealed record by record from its first byte; the index row's sha256 is
of the plaintext and its size is the size on disk.

All methods are blocking (FFmpeg, fsync, hashing, the DB thread's queue): the recorder calls them from
its own worker thread, never from the event loop.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import sqlite3
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from camhub_protocol import durable
from hub.ingest.source import CodecParams, MediaPacket, has_parameter_sets, nal_type, nal_units
from hub.record.sealed import AtRest, SealedWriter, sha256_file
from hub.store import Store
from hub.store import segments as q

log = logging.getLogger(__name__)

FMP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# Longest fragment, in media time: the muxer writes a fragment once its first sample is this old, so a
# kill -9 loses at most this (plus the reader's batching, rtsp.MAX_BATCH_S) whatever the camera's GOP.
# Under a frame period at up to 20 fps, so a fragment a frame there (two at 30 fps): a fragment costs
# the muxer a moof and a write(), ~3 us here, where each 0.1 s of the reader's budget saves wake-ups
# that cost ~0.4 ms each (README, Benchmarks). Not less: the muxer applies it to each track, and
# with audio a smaller value ends a fragment at nearly every audio packet (AAC at 48 kHz: 21 ms).
FRAGMENT_S = 0.05
# Rename an open first segment when its refined start moved by more than this (name precision is 1 µs).
RENAME_AFTER_S = 0.001
PART_SUFFIX = ".part"
# A segment's index row waits out another process's write lock: each try already waits the store's
# busy_timeout (10 s), so this is about a minute before the row is given up to recovery.
INDEX_BUSY_TRIES = 6
_NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
# A run after earlier footage is held until its packets span this much arrival time: a GOP-cache burst
# arrives within milliseconds, so by then live packets have bounded the capture times (see _release).
# Held packets are in memory only, so this is part of what a kill -9 just after a reconnect loses: half
# a second (~7 live frames at 15 fps) rather than the second it was (issue 17's 1 s budget).
HOLD_SETTLE_S = 0.5
HOLD_MAX_PACKETS = 600  # ~40 s at 15 fps: a camera that never settles is released anyway
RECENT_KEYFRAMES = 4  # digests of the last run's keyframes, to recognise them when replayed
MAX_AUDIO_QUEUE = 500  # audio packets waiting for video (~30 s of AAC at 16 kHz): a camera without video
_HEVC_PARAM_SETS = {32, 33, 34}  # VPS, SPS, PPS (ITU-T H.265 §7.4.2.2)
_templates: dict[str, Any] = {}  # codec name -> a stream of a scratch container (see _template)


def _template(codec: str) -> Any:
    """A never-opened stream of `codec` to give `add_stream_from_template`: PyAV sets extradata
    and the codec tag only on streams with a codec context, which `add_mux_stream` streams lack;
    one made from a template is marked initialised, so no encoder is ever opened for it."""
    stream = _templates.get(codec)
    if stream is None:
        scratch = av.open(io.BytesIO(), "w", format="mp4")
        stream = scratch.add_stream(codec)
        _templates[codec] = stream  # the stream keeps its scratch container alive
    return stream


def segment_relpath(camera_id: str, start_at: float) -> str:
    """`<camera>/<YYYY-MM-DD>/<start>.mp4`, UTC, microseconds — sortable and parseable back."""
    t = datetime.fromtimestamp(start_at, UTC)
    return f"{camera_id}/{t:%Y-%m-%d}/{t.strftime(_NAME_FORMAT)}.mp4"


def start_from_name(name: str) -> float | None:
    """The start time encoded in a segment file name (`….mp4` or `….mp4.part`), or None."""
    stem = name.split(".mp4", 1)[0]
    try:
        return datetime.strptime(stem, _NAME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def finalize_file(part: str | Path, at_rest: AtRest | None = None) -> tuple[str, int, str]:
    """fsync `part`, hash it, rename it to its final name and fsync the directory.

    Returns (final path, size on disk, sha256 hex of the plaintext — see sealed.py).
    """
    part = os.fspath(part)
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    size, sha = (at_rest or AtRest()).digest(part)
    final = part.removesuffix(PART_SUFFIX)
    durable.replace(part, final)
    return final, size, sha


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read through one reused buffer (see sealed.sha256_file)."""
    with open(path, "rb") as f:
        digest = sha256_file(f)
        return f.tell(), digest.hexdigest()


@dataclass
class SegmenterStats:
    segments: int = 0
    bytes: int = 0
    packets: int = 0
    dropped_packets: int = 0  # waiting for a keyframe after a discontinuity (includes replayed)
    audio_packets: int = 0
    audio_dropped: int = 0  # audio with no segment open, or from before the open segment's start
    replayed_packets: int = 0  # the camera's cache replaying footage already recorded
    gaps: int = 0
    last_frame_at: float | None = None  # arrival time of the last packet written


class _OpenSegment:
    """The segment being written: its muxer and the timestamps needed to close it."""

    def __init__(
        self,
        path: str,
        relpath: str,
        params: CodecParams,
        start_at: float,
        first: MediaPacket,
        at_rest: AtRest | None = None,
    ) -> None:
        self.path = path
        self.relpath = relpath
        self.params = params
        self.start_at = start_at
        self.named_start = start_at  # the start the file name says (what recovery would index)
        self.start_pts = first.pts
        self.base_dts = first.dts  # timestamps in the file start at 0
        self.end_pts = first.pts  # max(pts + duration) so far
        self.last_dts = first.dts
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Sealed at rest: the muxer writes through a SealedWriter (one record per write), so the
        # `.part` is never plaintext on disk (sealed.py).
        self.sink: SealedWriter | None = (
            at_rest.writer(path) if at_rest is not None and at_rest.seal else None
        )
        # flush_packets: hand each finished fragment to the kernel at once, and frag_duration: finish
        # one every FRAGMENT_S even inside a long GOP, so a killed process loses at most the fragment
        # in progress (what recovery can salvage is what reached the file).
        try:
            self.container: Any = av.open(
                self.sink if self.sink is not None else path,
                "w",
                format="mp4",
                options={
                    "movflags": FMP4_MOVFLAGS,
                    "flush_packets": "1",
                    "frag_duration": str(round(FRAGMENT_S * 1_000_000)),
                },
            )
        except BaseException:
            if self.sink is not None:
                self.sink.close()
            raise
        self.audio_stream: Any = None
        self.last_audio_dts = -1
        try:
            if params.codec == "hevc":
                # `hvc1` needs the parameter sets in the sample entry up front (and a stream made from
                # a template gets no hvcC from in-band sets): from the SDP, else this keyframe.
                sets = params.extradata or b"".join(
                    b"\x00\x00\x00\x01" + nal
                    for nal in dict.fromkeys(nal_units(first.data))
                    if nal_type(nal[0], "hevc") in _HEVC_PARAM_SETS
                )
                self.stream = self.container.add_stream_from_template(
                    _template("hevc"),
                    width=params.width,
                    height=params.height,
                    codec_tag="hvc1",
                    extradata=sets,
                )
            else:
                self.stream = self.container.add_mux_stream(
                    params.codec, width=params.width, height=params.height
                )
            self.stream.time_base = params.time_base
            audio = params.audio
            if audio is not None:
                self.audio_stream = self.container.add_stream_from_template(
                    _template(audio.codec),
                    extradata=audio.extradata,
                    sample_rate=audio.sample_rate,
                    layout="mono" if audio.channels == 1 else "stereo",
                )
                self.audio_stream.time_base = audio.time_base
        except BaseException:
            self.close()
            raise

    def mux(self, pkt: MediaPacket, duration: int, data: bytes) -> None:
        out = pkt.av_packet
        if out is None or data is not pkt.data or out.size != len(data):
            out = av.Packet(data)  # bytes of our own (parameter sets put in front), or no demuxer packet
        out.pts = pkt.pts - self.base_dts
        out.dts = pkt.dts - self.base_dts
        out.duration = duration
        out.time_base = pkt.time_base
        out.is_keyframe = pkt.is_keyframe
        out.stream = self.stream
        self.container.mux(out)
        self.end_pts = max(self.end_pts, pkt.pts + duration)
        self.last_dts = pkt.dts

    def mux_audio(self, pkt: MediaPacket) -> bool:
        """Mux one audio packet on the video's clock; False if it belongs before this segment."""
        tb = pkt.time_base
        rel = round((pkt.pts * tb - self.base_dts * self.params.time_base) / tb)
        if rel < 0 or rel <= self.last_audio_dts:
            return False
        out = av.Packet(pkt.data)
        out.pts = out.dts = rel
        out.duration = pkt.duration
        out.time_base = tb
        out.stream = self.audio_stream
        self.container.mux(out)
        self.last_audio_dts = rel
        return True

    def rename(self, path: str, relpath: str, start_at: float) -> None:
        """Move the open `.part` to the name of its refined start (the muxer's fd stays valid)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.rename(self.path, path)
        self.path, self.relpath, self.named_start = path, relpath, start_at
        if self.sink is not None:
            self.sink.path = path

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            if self.sink is not None:
                self.sink.close()  # the last-flagged record: the file is complete


class Segmenter:
    """One camera's segment writer. Not thread-safe: call it from one worker thread."""

    def __init__(
        self,
        camera_id: str,
        recordings_dir: Path,
        store: Store,
        *,
        segment_s: float = 4.0,
        max_drift_s: float = 2.0,
        finalizer: Executor | None = None,
        at_rest: AtRest | None = None,
    ) -> None:
        """`finalizer`: where closed segments are fsynced, hashed, renamed and indexed (in order, so
        give a single-worker executor); None does it inline, before `write`/`finish` return.
        `at_rest`: seal segments on disk (sealed.py); None writes plain files."""
        self.camera_id = camera_id
        self.at_rest = at_rest or AtRest()
        self._finalizer = finalizer
        self.finalize_error: Exception | None = None
        self.recordings_dir = Path(recordings_dir)
        # Per-segment paths are built as str: pathlib (3.11) interns every component it parses, and
        # every segment name is new, so a Path per segment churns CPython's interned-strings table
        # (the 2-hour soak saw it grow by 3.7 MB in one step).
        self._root = os.fspath(self.recordings_dir)
        self.store = store
        self.segment_s = segment_s
        self.max_drift_s = max_drift_s
        self.stats = SegmenterStats()
        self._seg: _OpenSegment | None = None
        self._anchor: tuple[float, int, Fraction] | None = None  # (wall, pts, time_base) of this run
        # While a run's first segment is open its anchor may move earlier (see _refine_anchor), down
        # to `floor` (where the previous footage ended); the run's gap row is written when it closes.
        self._refining = False
        self._floor = float("-inf")
        self._run_gap: tuple[float, str] | None = None
        self._period = 0  # last dts step, to estimate the last packet's duration
        # Where the footage last stopped and why, until the next segment records the gap.
        self._pending_gap: tuple[float, str] | None = None
        self._checked_previous = False
        self._warned_no_params = False
        # A new run's first packets, held until capture times can be told from a cache burst
        # (see _release), with the previous footage's end they are compared with.
        self._held: list[tuple[MediaPacket, CodecParams]] | None = None
        self._held_floor = float("-inf")
        # This session's capture-time estimate (wall, pts, time_base), set when the hold is released;
        # keyframes estimated before `_replay_floor` (or byte-identical to a recent one) are replayed.
        self._estimate: tuple[float, int, Fraction] | None = None
        self._replay_floor = float("-inf")
        self._replay_slack = 0.0
        self._recent_keys: deque[bytes] = deque(maxlen=RECENT_KEYFRAMES)
        self._inline_cuts = False
        self._audio: deque[MediaPacket] = deque()  # audio waiting for video to pass its time
        # The last video packet's arrival when it also bounds the next one's capture (`bounds_next`).
        self._bounding_arrival: float | None = None

    # --- public, blocking -------------------------------------------------------------------

    def write(self, pkt: MediaPacket, params: CodecParams) -> None:
        """Add one packet (decode order). Cuts, closes and indexes segments as needed."""
        if pkt.audio:
            if self._seg is None and self._held is None:
                self.stats.audio_dropped += 1  # no video run to put it in yet
                return
            self._audio.append(pkt)
            if len(self._audio) > MAX_AUDIO_QUEUE:
                self._audio.popleft()
                self.stats.audio_dropped += 1
            return
        if self._held is not None:
            if self._continues_hold(pkt, params):
                self._held.append((pkt, params))
                if (
                    pkt.arrival - self._held[0][0].arrival >= HOLD_SETTLE_S
                    or len(self._held) >= HOLD_MAX_PACKETS
                ):
                    self._release()
                return
            # A break in the held packets: decide on them with what we have; `pkt` starts afresh.
            self._release()
            self._estimate = None
            self._replay_floor = float("-inf")
        seg = self._seg
        if seg is not None:
            reason = None
            if pkt.discontinuity:
                reason = "timestamp_jump"
            elif params is not seg.params and not params.same_stream(seg.params):
                reason = "codec_change"
            elif pkt.dts <= seg.last_dts:
                reason = "timestamp_backwards"
            if reason is not None:
                log.info("%s: discontinuity (%s); starting a new segment", self.camera_id, reason)
                self._end_run(reason, inline=False)
                seg = None
            else:
                step = pkt.dts - seg.last_dts
                if step > 0:
                    self._period = step
        data = pkt.data
        if seg is None:
            if not pkt.is_keyframe:
                self.stats.dropped_packets += 1
                return
            if self._estimate is None:
                previous = self._previous()
                if previous is not None:
                    self._held = [(pkt, params)]
                    self._held_floor = previous[0]
                    return
            elif self._is_replay(pkt):
                self.stats.dropped_packets += 1
                self.stats.replayed_packets += 1
                return
            started = self._start_segment(pkt, params)
            if started is None:
                return
            seg, data = started
        elif pkt.is_keyframe and (pkt.pts - seg.start_pts) * pkt.time_base >= self._cut_after(pkt.time_base):
            boundary = self._wall(pkt.pts)
            self._flush_audio(seg, pkt.pts * pkt.time_base)
            self._close_segment(boundary, inline=self._inline_cuts)
            started = self._start_segment(pkt, params, boundary)
            if started is None:
                self._pending_gap = (boundary, "missing_parameter_sets")
                self._anchor = None
                return
            seg, data = started
        if self._audio:  # a Fraction product per frame otherwise, for nothing: most cameras send no audio
            self._flush_audio(seg, pkt.pts * pkt.time_base)
        seg.mux(pkt, pkt.duration or self._period, data)
        if pkt.is_keyframe:
            self._recent_keys.append(_digest(pkt.data))
        if self._refining:
            self._refine_anchor(pkt, seg)
        self._bounding_arrival = pkt.arrival if pkt.bounds_next else None
        self.stats.packets += 1
        self.stats.last_frame_at = pkt.arrival

    def finish(self, reason: str = "stopped") -> None:
        """Close and index the current segment (before returning, even with a `finalizer`: call it
        on the finalizer's thread, after the jobs queued there); the next packet starts a new run
        after a gap."""
        self._end_run(reason, inline=True)

    def _refine_anchor(self, pkt: MediaPacket, seg: _OpenSegment) -> None:
        """A run is anchored at the arrival of its first keyframe, but a camera starts a new viewer
        with its cached GOP (and the demuxer probes before the first packet is handed over): those
        packets arrive in a burst, up to a GOP or more after they were captured. A packet can never
        arrive before its capture, so `arrival - (pts - anchor_pts)` bounds the anchor from above;
        once packets come in real time that bound shows how late the first one was. Move the anchor
        (and the open first segment) back to it, never before the previous footage's end. Without
        this the timeline runs ahead of the wall clock and each reconnect adds to it (the next run
        starts at the previous end: the outage is a zero-length gap). With a `bounds_next` source
        (RTSP) the previous packet's arrival bounds this one's capture too, a frame tighter."""
        assert self._anchor is not None
        wall, anchor_pts, tb = self._anchor
        bound = pkt.arrival - float((pkt.pts - anchor_pts) * tb)
        prev = self._bounding_arrival
        if prev is not None:
            bound = min(bound, prev - float((pkt.pts - anchor_pts) * tb))
        if bound >= wall:
            return
        new_wall = max(bound, self._floor)
        if new_wall < wall:
            self._anchor = (new_wall, anchor_pts, tb)
            seg.start_at -= wall - new_wall
            if seg.named_start - seg.start_at > RENAME_AFTER_S:
                # A crash now must leave the refined start in the name: recovery indexes by it.
                path, relpath, named = self._free_path(seg.start_at)
                seg.rename(path, relpath, named)

    def _continues_hold(self, pkt: MediaPacket, params: CodecParams) -> bool:
        assert self._held is not None
        last, last_params = self._held[-1]
        return (
            not pkt.discontinuity
            and pkt.dts > last.dts
            and (params is last_params or params.same_stream(last_params))
        )

    def _release(self) -> None:
        """Decide on the held start of a run: estimate capture times, drop the replay, write the rest.

        Capture time is estimated as for the anchor (`_refine_anchor`): the smallest
        `arrival - (pts - base)` over the held packets, which live packets make tight once the burst
        is over. If live packets arrive after the previous footage ended, anything estimated to be
        captured before that end is the camera's cache replaying it; the run starts at the first
        keyframe after it (frames between need the replayed keyframe: they are in the gap). If every
        arrival is before that end by more than `max_drift_s`, our clock is behind the footage on disk
        (not a replay): nothing is dropped and the run starts at the previous end, as `_start_run`
        does for any run."""
        held, self._held = self._held, None
        assert held
        first = held[0][0]
        base, tb = first.pts, first.time_base
        wall = min(p.arrival - float((p.pts - base) * tb) for p, _ in held)
        for (a, _), (b, _) in itertools.pairwise(held):
            if a.bounds_next:  # a was read after b began arriving, so after b's capture
                wall = min(wall, a.arrival - float((b.pts - base) * tb))
        self._estimate = (wall, base, tb)
        begin = 0
        # The previous run's end is an estimate too (up to its anchor's error ahead of the truth):
        # only arrivals before it by more than the clock tolerance mean our clock is behind.
        if held[-1][0].arrival >= self._held_floor - self.max_drift_s:
            steps = [b.dts - a.dts for (a, _), (b, _) in itertools.pairwise(held)]
            half_frame = float(min(steps) * tb) / 2 if steps else 0.0
            # Half a frame of slack: both ends are estimates, and the next frame after the previous
            # end is estimated about one period later than it.
            self._replay_floor = self._held_floor - half_frame
            # A source that hands each frame on as it arrives (not `bounds_next`: camhub's RTSP
            # reader) bounds the newest frame of a burst only by its own arrival, which can be up to
            # a frame after its capture: a run cut off inside the camera's replay (rapid flaps) is
            # then estimated a frame late. A keyframe byte-identical to one just written is the
            # replay that much further on too (tests/faults/test_flapping.py, 1 run in 3 without).
            self._replay_slack = (2 if first.bounds_next else 4) * half_frame
            begin = next(
                (i for i, (p, _) in enumerate(held) if p.is_keyframe and not self._is_replay(p)), len(held)
            )
        log.debug(
            "%s: released %d held packets (previous end %.3f, estimate %.3f), dropping %d",
            self.camera_id,
            len(held),
            self._held_floor,
            wall,
            begin,
        )
        if begin:
            self.stats.dropped_packets += begin
            self.stats.replayed_packets += begin
            log.info(
                "%s: dropped %d packets the camera replayed from before the reconnect", self.camera_id, begin
            )
        for p, params in held[begin:]:
            self.write(p, params)

    def _is_replay(self, pkt: MediaPacket) -> bool:
        """A keyframe of the replay: estimated before the previous footage's end; or, within a frame
        of that end (where the two estimates' errors could hide a replay), byte-identical to a
        keyframe the previous run wrote. Only there: a static scene can encode identical keyframes,
        and a live one must not be mistaken for a replay."""
        if self._replay_floor == float("-inf"):
            return False
        assert self._estimate is not None
        wall, base, tb = self._estimate
        captured = wall + float((pkt.pts - base) * tb)
        if captured < self._replay_floor:
            return True
        return captured < self._replay_floor + self._replay_slack and _digest(pkt.data) in self._recent_keys

    def _write_run_gap(self, start_at: float) -> None:
        """The gap before this run, now that its first segment's start is final."""
        self._refining = False
        if self._run_gap is not None:
            prev_end, reason = self._run_gap
            self._run_gap = None
            self._record_gap(prev_end, max(prev_end, start_at), reason)

    def _end_run(self, reason: str, inline: bool) -> None:
        if self._held is not None:
            self._inline_cuts = inline
            try:
                self._release()
            finally:
                self._inline_cuts = False
        self._estimate = None
        self._replay_floor = float("-inf")
        seg = self._seg
        if seg is not None:
            self._flush_audio(seg, float("inf"))
        self.stats.audio_dropped += len(self._audio)
        self._audio.clear()
        if seg is not None:
            end = self._wall(seg.end_pts)
            self._close_segment(end, inline)
            self._pending_gap = (end, reason)
        elif self._pending_gap is None and self._anchor is not None:
            self._pending_gap = (self._anchor[0], reason)
        self._anchor = None
        self._period = 0
        self._bounding_arrival = None

    def abandon(self) -> str | None:
        """Drop the current segment without indexing it; returns its `.part` (left for recovery)."""
        self._held = None  # never written: lost with the segment's unfinished tail
        self._audio.clear()
        seg, self._seg = self._seg, None
        if seg is None:
            return None
        try:
            seg.close()
        except Exception as exc:
            # Expected after the write error that made us abandon it (e.g. the disk is still full).
            log.warning("%s: closing an abandoned segment failed: %s", self.camera_id, exc)
        if self._refining:
            self._write_run_gap(seg.start_at)
        return seg.path

    # --- internals ----------------------------------------------------------------------------

    def _flush_audio(self, seg: _OpenSegment, until: Fraction | float) -> None:
        """Mux the queued audio whose time (s, the video's clock) is before `until` into `seg`."""
        queue = self._audio
        while queue and queue[0].pts * queue[0].time_base < until:
            pkt = queue.popleft()
            if seg.audio_stream is not None and seg.mux_audio(pkt):
                self.stats.audio_packets += 1
            else:
                self.stats.audio_dropped += 1

    def _cut_after(self, time_base: Fraction) -> float:
        # Cut at the first keyframe at or after the target, allowing half a frame of rounding.
        return self.segment_s - float(self._period * time_base) / 2

    def _wall(self, pts: int) -> float:
        assert self._anchor is not None
        wall, anchor_pts, tb = self._anchor
        return wall + float((pts - anchor_pts) * tb)

    def _start_segment(
        self, pkt: MediaPacket, params: CodecParams, start: float | None = None
    ) -> tuple[_OpenSegment, bytes] | None:
        """Open a segment at keyframe `pkt`; returns it with the bytes to mux for `pkt`."""
        data = pkt.data
        if not has_parameter_sets(data, params.codec):
            if not params.extradata:
                # Without SPS/PPS the file could not be decoded; wait for a keyframe that has them.
                if not self._warned_no_params:
                    log.warning("%s: keyframe without parameter sets; waiting for one", self.camera_id)
                    self._warned_no_params = True
                self.stats.dropped_packets += 1
                return None
            # Parameter sets only out of band (SDP): put them in front of the first keyframe, where the
            # muxer's extract_extradata filter builds the avcC/hvcC box from them.
            data = params.extradata + data
        if start is None:
            start = self._start_run(pkt)
        elif abs(pkt.arrival - start) > self.max_drift_s:
            # The camera's clock and ours disagree by more than the tolerance: re-anchor here.
            drift_to = max(pkt.arrival, start)
            if drift_to > start:
                self._record_gap(start, drift_to, "clock_drift")
            log.log(
                logging.INFO if drift_to > start else logging.DEBUG,
                "%s: re-anchoring timeline (drift %.3f s)",
                self.camera_id,
                pkt.arrival - start,
            )
            start = drift_to
            self._anchor = (start, pkt.pts, pkt.time_base)
        path, relpath, start = self._free_path(start)
        seg = _OpenSegment(path, relpath, params, start, pkt, self.at_rest)
        self._seg = seg
        return seg, data

    def _free_path(self, start: float) -> tuple[str, str, float]:
        """`.part` path, final relpath and start (nudged) of a segment starting at `start`, never an
        existing file's."""
        while True:
            relpath = segment_relpath(self.camera_id, start)
            final = os.path.join(self._root, relpath)
            if not (os.path.exists(final + PART_SUFFIX) or os.path.exists(final)):
                return final + PART_SUFFIX, relpath, start
            start += 1e-6  # same microsecond as an existing file: nudge the name, never overwrite

    def _start_run(self, pkt: MediaPacket) -> float:
        """Anchor a new run at this keyframe and record the gap since the previous footage."""
        start = pkt.arrival
        if self._estimate is not None:
            # Estimated capture time (≤ arrival): a held run's first keyframe may have come in a burst.
            wall, base, tb = self._estimate
            start = min(start, wall + float((pkt.pts - base) * tb))
        self._replay_floor = float("-inf")
        self._recent_keys.clear()
        previous = self._previous()
        self._floor = float("-inf")
        if previous is not None:
            prev_end, reason = previous
            start = max(start, prev_end)  # never overlap footage already on disk
            self._floor = prev_end
            self._run_gap = (prev_end, reason)  # written once the first segment's start is final
            self._pending_gap = None
        self._refining = True
        self._anchor = (start, pkt.pts, pkt.time_base)
        return start

    def _previous(self) -> tuple[float, str] | None:
        """Where the previous footage ended and why (the gap to record), from the database once."""
        if self._pending_gap is None and not self._checked_previous:
            last = self.store.run_sync(q.last_segment, self.camera_id)
            if last is not None:
                self._pending_gap = (last.end_at, "restart")
        self._checked_previous = True
        return self._pending_gap

    def _record_gap(self, start: float, end: float, reason: str) -> None:
        self.store.run_sync(q.insert_gap, self.camera_id, start, end, reason)
        self.stats.gaps += 1
        log.info("%s: gap %.3f s (%s)", self.camera_id, end - start, reason)

    def _close_segment(self, end: float, inline: bool) -> None:
        seg, self._seg = self._seg, None
        assert seg is not None
        if self._refining:
            self._write_run_gap(seg.start_at)
        seg.close()  # writes the last fragment: page cache only, quick
        if inline or self._finalizer is None:
            self._finalize_segment(seg, end)
        else:
            # fsync can take hundreds of ms on an SD card: never on the thread reading the camera.
            self._finalizer.submit(self._finalize_segment, seg, end)

    def _finalize_segment(self, seg: _OpenSegment, end: float) -> None:
        try:
            final, size, sha = finalize_file(seg.path, self.at_rest)
            row = q.NewSegment(
                self.camera_id,
                seg.start_at,
                max(end, seg.start_at),
                size,
                sha,
                seg.params.codec,
                seg.params.width,
                seg.params.height,
                seg.relpath,
                audio_codec=seg.params.audio.codec
                if seg.audio_stream is not None and seg.params.audio
                else None,
            )
            for attempt in range(1, INDEX_BUSY_TRIES + 1):
                try:
                    self.store.run_sync(q.insert_segment, row)
                    break
                except sqlite3.OperationalError as exc:
                    # Locked by another process (a backup, a sqlite3 shell): the file is safe on
                    # disk, so wait for the lock rather than leave it unindexed until the next start.
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == INDEX_BUSY_TRIES:
                        raise
                    log.warning("%s: index busy for %s (%s); retrying", self.camera_id, seg.relpath, exc)
        except Exception as exc:
            # The `.part` (or an unindexed file) stays on disk; recovery picks it up at next start.
            log.exception("%s: finalizing %s failed", self.camera_id, seg.relpath)
            self.finalize_error = exc
            if self._finalizer is None:
                raise
            return
        self.stats.segments += 1
        self.stats.bytes += size
        log.debug(
            "%s: segment %s %.3f s %d bytes",
            self.camera_id,
            os.path.basename(final),
            end - seg.start_at,
            size,
        )


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
