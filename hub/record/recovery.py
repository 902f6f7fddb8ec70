"""Start-up recovery: salvage `.part` segments left by a crash, and reconcile the index with the disk.

Run it before any recorder starts (it renames files recorders would otherwise be writing next to).

Partial segments. A segment is fragmented MP4: `ftyp`, `moov` (written at open, `empty_moov`), then
one `moof`+`mdat` pair per GOP (ISO/IEC 14496-12 §8.8). A killed writer leaves a file whose last
fragment may be cut short. Recovery walks the top-level boxes, truncates the file after the last
complete `moof`+`mdat` pair — which is byte-for-byte what remuxing those fragments would produce, at
no copying cost — then checks the result demuxes and starts on a keyframe, fsyncs, renames and
indexes it (`recovered = 1`). A file with no complete fragment holds nothing playable and is removed.

Reconciliation. Media files are the truth: an index row whose file is gone is deleted (and recorded
as a gap, reason "missing"); a segment file with no row (a crash between rename and insert) is probed
and indexed.

Sealed partials (`[storage] encrypt`, sealed.py). A killed writer leaves a sealed `.part` without
its last-flagged record. Recovery opens every complete record (authenticated; it stops at the first
incomplete or failing one), finds the last complete fragment in that plaintext exactly as above, and
writes those bytes back sealed under a fresh file key (temp, fsync, rename) — plaintext never touches
the disk. A sealed file this hub has no key for is left alone and logged.

Every outcome is logged and returned, so the daemon can report it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Literal

import av
import av.error

from camhub_protocol.durable import fsync_dir
from hub.record.sealed import AtRest, SealedError
from hub.record.segmenter import PART_SUFFIX, finalize_file, start_from_name
from hub.store import Store
from hub.store import segments as q

log = logging.getLogger(__name__)

Action = Literal["recovered", "removed", "indexed", "missing"]


@dataclass(frozen=True)
class RecoveryOutcome:
    path: str  # relative to the recordings directory
    action: Action
    detail: str


@dataclass(frozen=True)
class ProbedSegment:
    codec: str
    width: int
    height: int
    duration_s: float
    packets: int


class RecoveryError(Exception):
    code = "recovery"


def complete_fragments_end(path: Path) -> tuple[int, int]:
    """(byte offset just after the last complete `moof`+`mdat` pair, number of such pairs).

    (0, 0) if the header (`ftyp` + `moov`) is incomplete.
    """
    with open(path, "rb") as f:
        return fragments_end(f, path.stat().st_size)


def fragments_end(f: BinaryIO, size: int) -> tuple[int, int]:
    """`complete_fragments_end` over an open file (or the plaintext of a sealed one) of `size` bytes."""
    offset = 0
    end = 0
    fragments = 0
    have_moov = False
    pending_moof = False
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if box_size == 1:  # 64-bit largesize follows the type (§4.2)
            if len(header) < 16:
                break
            box_size = struct.unpack(">Q", header[8:16])[0]
        if box_size < 8 or offset + box_size > size:
            break  # size 0 ("to end of file") or cut short: not complete
        offset += box_size
        if box_type == b"moov":
            have_moov = True
            end = offset
        elif box_type == b"moof":
            pending_moof = True
        elif box_type == b"mdat" and pending_moof and have_moov:
            pending_moof = False
            fragments += 1
            end = offset
        elif box_type == b"ftyp":
            end = offset
    return (end, fragments) if have_moov else (0, 0)


def probe_segment(path: Path, at_rest: AtRest | None = None, plaintext: bytes | None = None) -> ProbedSegment:
    """Demux every packet (no decoding): codec, size, duration. Raises RecoveryError if unusable.

    `plaintext`: probe these bytes (a salvaged sealed file) rather than the file at `path`."""
    try:
        if plaintext is not None:
            source: str | io.BytesIO = io.BytesIO(plaintext)
        else:
            source = (at_rest or AtRest()).media(path)
        with av.open(source) as container:
            stream = container.streams.video[0]
            tb = stream.time_base or Fraction(1, 90000)
            first_pts: int | None = None
            end_pts: int | None = None
            count = 0
            for p in container.demux(stream):
                if p.size == 0 or p.pts is None:
                    continue
                if first_pts is None:
                    if not p.is_keyframe:
                        raise RecoveryError(f"{path.name}: does not start with a keyframe")
                    first_pts = p.pts
                first_pts = min(first_pts, p.pts)
                stop = p.pts + (p.duration or 0)
                end_pts = stop if end_pts is None else max(end_pts, stop)
                count += 1
            if first_pts is None or end_pts is None:
                raise RecoveryError(f"{path.name}: no packets")
            cc = stream.codec_context
            return ProbedSegment(cc.name, cc.width, cc.height, float((end_pts - first_pts) * tb), count)
    except (av.error.FFmpegError, IndexError, SealedError) as exc:
        raise RecoveryError(f"{path.name}: unreadable: {exc}") from exc


def _camera_of(rel: Path) -> str:
    # <camera>/<YYYY-MM-DD>/<name>
    return rel.parts[0]


def recover_partials(
    recordings_dir: Path, store: Store, at_rest: AtRest | None = None
) -> list[RecoveryOutcome]:
    """Salvage or remove every `*.mp4.part`. Blocking: call from a worker thread."""
    at_rest = at_rest or AtRest()
    outcomes = []
    for tmp in recordings_dir.glob(f"*/*/*.mp4{PART_SUFFIX}.tmp"):
        tmp.unlink()  # a reseal (below) a crash interrupted; its `.part` is still there
    for part in sorted(recordings_dir.glob(f"*/*/*.mp4{PART_SUFFIX}")):
        outcome = recover_part(part, recordings_dir, store, at_rest)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def recover_part(
    part: Path, recordings_dir: Path, store: Store, at_rest: AtRest | None = None
) -> RecoveryOutcome | None:
    """Salvage one `.part` (keep its complete fragments, index them) or remove it; None when a sealed
    file is left alone. Blocking. Also used by the recorder right after a failed write (disk full), so
    the abandoned file's footage is kept and its unfinished tail frees its space at once."""
    at_rest = at_rest or AtRest()
    rel = part.relative_to(recordings_dir)
    final_rel = str(rel).removesuffix(PART_SUFFIX)
    start = start_from_name(part.name)
    plaintext: bytes | None = None
    if at_rest.is_sealed(part):
        try:
            plaintext = at_rest.salvage(part)
        except SealedError as exc:
            # No key or the wrong one: deleting would destroy footage the right key could open.
            log.error("recovery: cannot open sealed %s, left as it is: %s", rel, exc)
            return None
        end_offset, fragments = fragments_end(io.BytesIO(plaintext), len(plaintext))
    else:
        end_offset, fragments = complete_fragments_end(part)
    outcome: RecoveryOutcome
    if start is None or fragments == 0:
        why = "unparseable name" if start is None else "no complete fragment"
        part.unlink()
        fsync_dir(part.parent)
        outcome = RecoveryOutcome(final_rel, "removed", why)
    else:
        if plaintext is not None:
            cut = len(plaintext) - end_offset
            plaintext = plaintext[:end_offset]
        else:
            cut = part.stat().st_size - end_offset
            if cut:
                os.truncate(part, end_offset)
        try:
            probed = probe_segment(part, at_rest, plaintext)
        except RecoveryError as exc:
            part.unlink()
            fsync_dir(part.parent)
            outcome = RecoveryOutcome(final_rel, "removed", str(exc))
        else:
            if plaintext is not None:
                # The complete fragments, sealed again with a last-flagged record.
                at_rest.write_file(part, plaintext, sealed=True)
            _, size, sha = finalize_file(part, at_rest)
            store.run_sync(
                q.insert_segment,
                q.NewSegment(
                    _camera_of(rel),
                    start,
                    start + probed.duration_s,
                    size,
                    sha,
                    probed.codec,
                    probed.width,
                    probed.height,
                    final_rel,
                    recovered=True,
                ),
            )
            outcome = RecoveryOutcome(
                final_rel,
                "recovered",
                f"{fragments} fragments, {probed.packets} packets, {probed.duration_s:.3f} s;"
                f" dropped {cut} bytes of an unfinished fragment",
            )
    log.warning("recovery: %s %s (%s)", outcome.action, outcome.path, outcome.detail)
    return outcome


def reconcile(recordings_dir: Path, store: Store, at_rest: AtRest | None = None) -> list[RecoveryOutcome]:
    """Make the index match the files. Blocking: call from a worker thread."""
    at_rest = at_rest or AtRest()
    outcomes = []
    indexed = store.run_sync(q.all_paths)
    on_disk = {str(p.relative_to(recordings_dir)) for p in recordings_dir.glob("*/*/*.mp4")}
    for rel in sorted(set(indexed) - on_disk):
        seg = store.run_sync(q.segment_by_path, rel)
        if seg is None:
            continue
        store.run_sync(q.delete_segments, [seg.id])
        store.run_sync(q.insert_gap, seg.camera_id, seg.start_at, seg.end_at, "missing")
        outcomes.append(RecoveryOutcome(rel, "missing", "indexed file is gone; row deleted, gap recorded"))
    for rel in sorted(on_disk - set(indexed)):
        path = recordings_dir / rel
        start = start_from_name(path.name)
        try:
            if start is None:
                raise RecoveryError(f"{path.name}: unparseable name")
            probed = probe_segment(path, at_rest)
            size, sha = at_rest.digest(path)
        except (RecoveryError, SealedError) as exc:
            # Not ours or unreadable: leave the file alone, an operator may want it.
            log.error("recovery: cannot index %s: %s", rel, exc)
            continue
        store.run_sync(
            q.insert_segment,
            q.NewSegment(
                _camera_of(Path(rel)),
                start,
                start + probed.duration_s,
                size,
                sha,
                probed.codec,
                probed.width,
                probed.height,
                rel,
                recovered=True,
            ),
        )
        outcomes.append(RecoveryOutcome(rel, "indexed", "file had no index row"))
    for o in outcomes:
        log.warning("recovery: %s %s (%s)", o.action, o.path, o.detail)
    return outcomes


def recover_sync(recordings_dir: Path, store: Store, at_rest: AtRest | None = None) -> list[RecoveryOutcome]:
    """Partials first (they become files), then reconciliation. Blocking."""
    recordings_dir = Path(recordings_dir)
    if not recordings_dir.exists():
        return []
    return recover_partials(recordings_dir, store, at_rest) + reconcile(recordings_dir, store, at_rest)


async def recover(recordings_dir: Path, store: Store, at_rest: AtRest | None = None) -> list[RecoveryOutcome]:
    """Run recovery in a worker thread. Call once at start, before any recorder runs."""
    return await asyncio.to_thread(recover_sync, Path(recordings_dir), store, at_rest)
