"""Privacy masks on a clip delivery (PROTOCOL §2.3, §4.1), end to end through the real daemon.

The agency fetches and decrypts the delivery; the test decodes the clip and checks, in every frame,
that the masked area is black and the rest is the recorded picture (compared with the recorded
segments the manifest names, decoded). The recording itself stays untouched (its hashes still match).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from camhub_protocol import rfc3339
from tests.conftest import free_port
from tests.consent.flow_env import CAMERA, start_hub_env
from tests.egress.privacy_frames import PICTURE_MAD, Regions, black_inside, decode_file, mad_outside

# A neighbour's window (a rectangle) and a slanted street edge (a triangle).
MASKS = (
    ((0.1, 0.1), (0.45, 0.1), (0.45, 0.6), (0.1, 0.6)),
    ((0.6, 0.5), (0.95, 0.95), (0.6, 0.95)),
)


def _camera(masks: tuple[tuple[tuple[float, float], ...], ...]) -> str:
    # Never reachable: the footage was indexed before the daemon started (tests/consent/flow_env.py).
    polys = ", ".join("[" + ", ".join(f"[{x}, {y}]" for x, y in p) + "]" for p in masks)
    return (
        f'\n[[cameras]]\nid = "{CAMERA}"\nurl = "rtsp://127.0.0.1:{free_port()}/none"\nrecord = false\n'
        f"[cameras.privacy]\nmasks = [{polys}]\n"
    )


def _recorded_frames(data_dir: Path, manifest: dict[str, object]) -> list:
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in (data_dir / "segments").rglob("*.mp4")}
    frames = []
    for seg in manifest["segments"]:  # type: ignore[attr-defined]
        assert seg["sha256"] in by_hash, "the recording changed: a segment's hash no longer matches"
        frames += decode_file(by_hash[seg["sha256"]])
    return frames


def test_delivered_clip_is_black_in_the_masks_and_the_picture_elsewhere(tmp_path: Path) -> None:
    hub = start_hub_env(tmp_path, extra_config=_camera(MASKS))
    try:
        start, end = hub.t0 + 10, hub.t0 + 20
        rid, sha = hub.submit(start, end)
        assert hub.decide(hub.approval(rid, sha, start, end)).status == 201
        hub.wait_status(rid, "fulfilled")
        fetched = hub.client().fetch(rid, tmp_path / "case")
        assert len(fetched) == 1
        directory = Path(fetched[0]["directory"])
        manifest = json.loads((directory / "manifest.json").read_text())
        clip = directory / f"clip-{CAMERA}.mp4"

        frames = decode_file(clip)
        h, w = frames[0].y.shape
        red = manifest["redaction"]
        assert red == {
            "masks": [[[round(x * w), round(y * h)] for x, y in p] for p in MASKS],
            "width": w, "height": h, "fill": "black", "codec": "h264",
        }  # fmt: skip
        assert manifest["files"][0]["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
        assert manifest["start"] == rfc3339.format(start)

        recorded = _recorded_frames(hub.data_dir, manifest)
        regions = Regions.of(MASKS, w, h)
        # The recording is not black where the masks are (or the test could not fail).
        assert all(not black_inside(p, regions) for p in recorded)
        # The clip is a run of the recorded frames (cut at a keyframe): find where it starts.
        offset = min(
            range(len(recorded) - len(frames) + 1), key=lambda i: mad_outside(frames[0], recorded[i], regions)
        )
        assert len(frames) >= 10 * 15
        for i, p in enumerate(frames):
            assert black_inside(p, regions), f"frame {i}: a masked pixel is not black"
            assert mad_outside(p, recorded[offset + i], regions) <= PICTURE_MAD, (
                f"frame {i} is not the picture"
            )
        # The picture outside is not black either.
        assert all(float(np.mean(p.y[regions.outside])) > 30 for p in frames)

        built = [e for e in hub.audit_entries() if e["type"] == "delivery.built"]
        assert built[-1]["data"]["redaction"] == red
    finally:
        hub.stop()


def test_camera_without_masks_is_still_a_stream_copy(tmp_path: Path) -> None:
    hub = start_hub_env(tmp_path, extra_config=_camera(()).replace("[cameras.privacy]\nmasks = []\n", ""))
    try:
        start, end = hub.t0 + 10, hub.t0 + 14
        rid, sha = hub.submit(start, end)
        assert hub.decide(hub.approval(rid, sha, start, end)).status == 201
        hub.wait_status(rid, "fulfilled")
        fetched = hub.client().fetch(rid, tmp_path / "case")
        directory = Path(fetched[0]["directory"])
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["redaction"] is None
        recorded = _recorded_frames(hub.data_dir, manifest)
        frames = decode_file(directory / f"clip-{CAMERA}.mp4")
        regions = Regions.of(MASKS, frames[0].y.shape[1], frames[0].y.shape[0])
        assert not any(black_inside(p, regions) for p in frames)
        assert len(recorded) >= len(frames)
    finally:
        hub.stop()
