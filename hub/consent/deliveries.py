"""Clip deliveries (PROTOCOL.md §2.3): built once per approved camera, fetched through the gate.

Build (after an approval, and again at start for approvals whose deliveries are missing): for each
approved camera, `hub.record.clip.export_clip` cuts the approved range from the indexed segments by
stream copy at keyframes into a work directory; a camera with privacy masks (PROTOCOL §4.1) then has
that cut re-encoded with the masks painted black (`hub.egress.privacy.redact_clip`) and only the
re-encoded clip leaves, the manifest's `redaction` naming the painted polygons; a `delivery.built` audit entry records what was cut
(camera, range, clip and segment hashes) and a fresh checkpoint covers it; `delivery.build_delivery`
then writes the age-encrypted tar (clip, manifest.json/.jws, audit-proof.json with that entry's
inclusion proof) to `<data>/deliveries/<id>.age` in bounded memory in a worker thread. The database
row is inserted only after the file is complete (the file is the truth). A camera with no footage in
the range gets no delivery and nothing is recorded for the agency to see: the request stays
`pending` until `respond_by`, exactly like a decline (§2.2).

Fetch: the agency's signature is verified by the route; here the delivery must be the caller's (404
otherwise, like an unknown id), `gate.check` must allow it and count the fetch, an `egress.delivery`
entry is written before the first byte, the file streams in 1 MiB chunks with the gate re-checked
between chunks, and a checkpoint is signed after it (§5 "written after every egress").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from camhub_protocol import rfc3339
from camhub_protocol.delivery import build_delivery_async, clip_name
from camhub_protocol.errors import ConsentError
from hub.consent import gate
from hub.consent.requests import new_id
from hub.consent.service import ConsentService
from hub.egress import privacy
from hub.record import clip as clip_mod
from hub.store import consent as q

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
NOT_FOUND_DETAIL = "no such delivery"


async def resume(svc: ConsentService) -> None:
    """At start: build what an earlier run approved but did not finish (a crash mid-build)."""
    now = svc.now()

    def pending(conn: sqlite3.Connection) -> list[q.GrantRecord]:
        out = []
        for record in q.requests(conn, state="approved", limit=10_000):
            for g in q.grants_for_request(conn, record.id):
                if g.kind == "clip" and g.revoked_at is None and g.not_after > now:
                    out.append(g)
        return out

    # Files of builds a crash interrupted (no row was written for them) go first.
    known = {Path(p).name for p in await svc.store.run(q.delivery_paths)}

    def clean() -> None:
        for path in svc.deliveries_dir.iterdir():
            if path.name.startswith(".work-"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name not in known:
                path.unlink(missing_ok=True)

    async with svc.build_lock:  # never while a build (started by a fresh approval) writes its files
        await asyncio.to_thread(clean)
    for grant in await svc.store.run(pending):
        await build_for_grant(svc, grant)


async def build_for_grant(svc: ConsentService, grant: q.GrantRecord) -> list[q.DeliveryRecord]:
    """Build the deliveries of one clip grant (one per camera with footage).

    Their rows are inserted together once every camera is done, so the agency sees `fulfilled` with
    the complete list or not at all; after a crash mid-build the next start builds them all again.
    """
    built: list[q.DeliveryRecord] = []
    async with svc.build_lock:
        if await svc.store.run(q.deliveries_for_request, grant.request_id):
            return []
        for camera in grant.cameras:
            try:
                record = await _build_one(svc, grant, camera)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery for request %s camera %s failed", grant.request_id, camera)
                continue
            if record is not None:
                built.append(record)
        if built:
            await svc.store.run(q.insert_deliveries, built, svc.now())
    return built


async def _build_one(svc: ConsentService, grant: q.GrantRecord, camera: str) -> q.DeliveryRecord | None:
    assert grant.start_at is not None and grant.end_at is not None
    delivery_id = new_id()
    work = svc.deliveries_dir / f".work-{delivery_id}"
    await asyncio.to_thread(work.mkdir, mode=0o700)
    try:
        clip_path = work / clip_name(camera)
        # The masks in force now (PROTOCOL §4.1): with none, the cut clip is what leaves (stream copy).
        masks = svc.privacy_masks(camera)
        cut_path = work / "cut.mp4" if masks else clip_path
        try:
            clip = await clip_mod.export_clip(
                svc.config.segments_dir,
                svc.store,
                camera,
                grant.start_at,
                grant.end_at,
                cut_path,
                at_rest=svc.at_rest,
                audio=grant.audio,  # the camera's sound leaves only under a grant that says so (§3)
            )
        except clip_mod.NoFootage:
            log.info("request %s: no footage of %s in the approved range", grant.request_id, camera)
            return None
        redaction: dict[str, object] | None = None
        if masks:
            # Only what leaves is re-encoded; the recording and the cut stay as they were.
            painted = await privacy.redact_clip(cut_path, clip_path, masks)
            await asyncio.to_thread(cut_path.unlink)
            redaction = painted.manifest()
        request = await svc.store.run(q.request, grant.request_id)
        agency = await svc.store.run(q.agency, grant.recipient)
        if request is None or agency is None:
            return None
        segments = [
            {"start": rfc3339.format(s.start_at), "end": rfc3339.format(s.end_at), "sha256": s.sha256}
            for s in clip.segments
        ]
        seq, _ = await svc.record(
            "delivery.built",
            "hub",
            {
                "delivery_id": delivery_id,
                "request_id": request.id,
                "approval_id": grant.id,
                "recipient": grant.recipient,
                "camera": camera,
                "start": rfc3339.format(grant.start_at),
                "end": rfc3339.format(grant.end_at),
                "clip_start": rfc3339.format(clip.start_at),
                "clip_end": rfc3339.format(clip.end_at),
                # What left with the video, None when nothing (a masked clip is re-encoded without it).
                "audio_codec": None if masks else clip.audio_codec,
                "segments": segments,
                "redaction": redaction,
            },
        )
        await svc.audit.checkpoint()
        bundle = await svc.audit.proof_bundle(seq)
        out_path = svc.deliveries_dir / f"{delivery_id}.age"
        built = await build_delivery_async(
            clips={clip_name(camera): clip_path},
            manifest_fields={
                "request_id": request.id,
                "request_sha256": request.body_sha256,
                "approval_id": grant.id,
                "camera": camera,
                "start": rfc3339.format(grant.start_at),
                "end": rfc3339.format(grant.end_at),
                "audio": grant.audio,
                "segments": segments,
                "redaction": redaction,
            },
            audit_proof=bundle,
            hub_key=svc.hub_key,
            recipient=agency.recipient,
            out_path=out_path,
        )
        record = q.DeliveryRecord(
            delivery_id, grant.id, request.id, camera, grant.start_at, grant.end_at,
            str(out_path.relative_to(svc.config.hub.data_dir)), built.sha256, built.bytes, 0,
        )  # fmt: skip
        log.info(
            "delivery %s built: request %s camera %s, %d bytes", delivery_id, request.id, camera, built.bytes
        )
        return record
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def open_for_fetch(svc: ConsentService, keyid: str, delivery_id: str) -> tuple[q.DeliveryRecord, Path]:
    """Gate a fetch (counted) and audit it; returns the delivery and its file. Raises ConsentError."""
    record = await svc.store.run(q.delivery, delivery_id[:128])
    grant = None if record is None else await svc.store.run(q.grant, record.grant_id)
    if record is None or grant is None or grant.recipient != keyid:
        raise ConsentError("not_found", NOT_FOUND_DETAIL, 404)
    if await svc.store.run(q.delivery_expired, record.id):
        # Its footage passed the owner's max age and the file is gone (PROTOCOL §3.2).
        raise ConsentError("not_found", NOT_FOUND_DETAIL, 404)
    await gate.check(
        svc.store, keyid, record.camera_id, record.start_at, record.end_at,
        kind="clip", now=svc.now(), delivery_id=record.id, take_fetch=True, deadlines=svc.deadlines,
    )  # fmt: skip
    await svc.record(
        "egress.delivery",
        f"agency:{keyid}",
        {
            "delivery_id": record.id,
            "request_id": record.request_id,
            "approval_id": record.grant_id,
            "camera": record.camera_id,
            "sha256": record.sha256,
            "bytes": record.bytes,
            "fetch": record.fetch_count + 1,
        },
    )
    return record, svc.config.hub.data_dir / record.path


async def stream(
    svc: ConsentService, keyid: str, record: q.DeliveryRecord, path: Path
) -> AsyncIterator[bytes]:
    """The file in chunks, re-asking the gate before every chunk after the first (revoke = stop)."""
    f = await asyncio.to_thread(path.open, "rb")
    try:
        first = True
        while True:
            chunk = await asyncio.to_thread(f.read, CHUNK)
            if not chunk:
                return
            if not first:
                await gate.check(
                    svc.store, keyid, record.camera_id, record.start_at, record.end_at,
                    kind="clip", now=svc.now(), delivery_id=record.id, deadlines=svc.deadlines,
                )  # fmt: skip
            first = False
            yield chunk
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(f.close)
