"""bench/rtsp_floor.py records what the camera sent: its figures mean nothing if it records less.

It reads RTSP and depacketises H.264 itself (STAP-A parameter sets, FU-A slices, the marker bit),
so a slip there would make it cheap by dropping frames. Recorded from the simulator over Digest
auth, every complete segment must decode whole: one keyframe first, GOP-many frames, 4 s, the
camera's size; napping between bursts (as the hub's reader does) as well as not.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.camera import SimCamera

ROOT = Path(__file__).resolve().parents[1]
FPS = 15


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height,nb_read_frames:format=duration",
         "-show_frames", "-show_entries", "frame=key_frame,pict_type",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stderr == "", f"{path.name} does not decode cleanly: {out.stderr[-1000:]}"
    return json.loads(out.stdout)


@pytest.mark.parametrize("nap", ["0", "0.4"], ids=["reading-each-burst", "napping"])
async def test_every_frame_the_camera_sent_is_recorded_and_decodes(tmp_path: Path, nap: str) -> None:
    async with SimCamera("cam1", width=320, height=240, fps=FPS, gop=FPS * 2, control_port=None) as cam:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.rtsp_floor", cam.rtsp_url("main"), str(tmp_path / "out"), "--size", "320x240", "--nap", nap,
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # Three 4 s segments closed: the first starts at the first keyframe, within a GOP (2 s).
            for _ in range(200):
                if len(list((tmp_path / "out").glob("*.mp4"))) >= 4:
                    break
                assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    segments = sorted((tmp_path / "out").glob("*.mp4"))
    assert len(segments) >= 4
    for seg in segments[:3]:  # complete ones; the last was cut by the stop
        info = _probe(seg)
        stream = info["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
        assert int(stream["nb_read_frames"]) == 4 * FPS, seg.name
        assert float(info["format"]["duration"]) == pytest.approx(4.0, abs=0.01)
        keys = [f["key_frame"] for f in info["frames"]]
        assert keys[0] == 1 and sum(keys) == 2, keys  # GOP 2 s: keyframes at 0 s and 2 s
