"""WHIP from GStreamer's webrtcbin (libnice ICE, DTLS with an RSA certificate, its own H.264
packetiser): the hub answers as the DTLS server and records what it sent; an offer it cannot take
gets a 400 that names what it takes. Both peers run inside a network namespace of their own
(loopback and a veth pair with a test address: libnice offers no loopback candidates), so no packet
leaves the box. Every recorded segment is checked with ffprobe and decoded by ffmpeg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.interop.test_rtsp_cameras import gstreamer, probe  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[2]
ICE_ADDRESS = "10.255.16.1"  # only inside the test's own network namespace
NETNS = (
    "ip link set lo up && ip link add v0 type veth peer name v1 && "
    f'ip addr add {ICE_ADDRESS}/24 dev v0 && ip link set v0 up && ip link set v1 up && exec "$@"'
)


def push(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "whip"
    cmd = ["unshare", "-n", "sh", "-c", NETNS, "sh", sys.executable, "-m", "tests.interop.whip_session",
           "--out", str(out), "--ice-address", ICE_ADDRESS, *args]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = proc.stderr
    return result


def test_webrtcbin_publishes_and_is_recorded(tmp_path: Path) -> None:
    result = push(tmp_path, "--seconds", "5")
    assert result["client"][:2] == ["answer 201", "connected"], result["client"]
    assert result["client"][-1] == "deleted" and result["client_rc"] == 0
    segments = result["segments"]
    assert len(segments) >= 2, result
    for seg in segments:
        streams = probe(tmp_path / "whip" / "segments" / seg["path"])
        assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) > 0
        assert abs(float(streams["video"]["duration"]) - (seg["end"] - seg["start"])) <= 0.15


def test_webrtcbin_vp8_offer_gets_400_naming_what_the_hub_takes(tmp_path: Path) -> None:
    result = push(tmp_path, "--codec", "vp8", "--seconds", "1")
    first = result["client"][0]
    assert first.startswith("answer 400"), result["client"]
    body = json.loads(first.split(" ", 2)[2])
    assert body["error"] == "unsupported_offer"
    assert "H.264 Constrained Baseline" in body["detail"] and "VP8" in body["detail"], body
    assert result["segments"] == [] and "Traceback" not in result["log"]
