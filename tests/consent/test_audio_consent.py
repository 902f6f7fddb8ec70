"""Sound leaves only when the owner's grant says so (PROTOCOL §3 `scope.audio`, issue 16 item 3).

The footage here was recorded with sound (H.264 + AAC, as a camera whose sound the owner turned on).
Three approvals of the same range: one that says `"audio": false`, one from a client before the field
(no `audio`: the same as false), and one that says `"audio": true`. Each delivery is fetched and
decrypted as an agency would, its manifest verified, and its clip probed with ffprobe: no audio stream
unless the grant allowed it, the camera's AAC (stream-copied, decodable) when it did; the manifest says
which. A scope whose `audio` is not a boolean is refused with 400 `invalid_decision`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consent.flow_env import CAMERA, HubEnv, start_hub_env

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEnv]:
    env = start_hub_env(tmp_path, audio=True)
    try:
        yield env
    finally:
        env.stop()


def _streams(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_type,codec_name,nb_read_packets", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    streams: list[dict[str, Any]] = json.loads(proc.stdout)["streams"]
    return streams


def _decodes(path: Path) -> str:
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return proc.stderr if proc.returncode else proc.stderr.strip()


def _deliver(hub: HubEnv, tmp: Path, name: str, audio: bool | None) -> tuple[dict[str, Any], Path]:
    """Ask for 20 s, approve it with `audio` (None: no field), fetch: (manifest, clip)."""
    start, end = hub.t0 + 10, hub.t0 + 30
    rid, sha = hub.submit(start, end)
    r = hub.decide(hub.approval(rid, sha, start, end, audio=audio))
    assert r.status == 201, r.body
    hub.wait_status(rid, "fulfilled")
    (fetched,) = hub.client().fetch(rid, tmp / name)
    directory = Path(fetched["directory"])
    manifest = json.loads((directory / "manifest.json").read_text())
    return manifest, directory / f"clip-{CAMERA}.mp4"


def test_a_clip_carries_sound_only_under_a_grant_that_allows_it(hub: HubEnv, tmp_path: Path) -> None:
    # The recording has sound: otherwise this test could not tell "stripped" from "never there".
    seg = next(hub.data_dir.rglob("*.mp4"))  # a recorded segment (nothing was delivered yet)
    assert [s["codec_type"] for s in _streams(seg)] == ["video", "audio"], seg

    for name, audio in (("no", False), ("absent", None)):
        manifest, clip = _deliver(hub, tmp_path, name, audio)
        assert manifest["audio"] is False, manifest
        streams = _streams(clip)
        assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264")], (name, streams)
        assert _decodes(clip) == "", name

    manifest, clip = _deliver(hub, tmp_path, "yes", True)
    assert manifest["audio"] is True, manifest
    streams = _streams(clip)
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"), ("audio", "aac")]
    # 20 s (plus at most a GOP each end) of 16 kHz AAC is 1024 samples a packet: ~312 to ~344 packets.
    assert 300 <= int(streams[1]["nb_read_packets"]) <= 360, streams
    assert _decodes(clip) == ""

    # The audit entry of each build says what left with the video.
    built = [e["data"] for e in hub.audit_entries() if e["type"] == "delivery.built"]
    assert [b["audio_codec"] for b in built] == [None, None, "aac"]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_scope_audio_must_be_a_boolean(hub: HubEnv, bad: Any) -> None:
    start, end = hub.t0 + 10, hub.t0 + 20
    rid, sha = hub.submit(start, end)
    decision = hub.approval(rid, sha, start, end)
    decision["scope"]["audio"] = bad
    r = hub.decide(decision)
    assert r.status == 400 and r.json()["error"] == "invalid_decision", r.body
