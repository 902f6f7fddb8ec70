"""H.265 footage the owner can watch: Debian's Chromium cannot play H.265, so the timeline says so and
plays the H.264 copy the hub makes of the segment (GET /api/v1/owner/segments/{id}/h264.mp4); the
recording itself stays H.265."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hub.record.transcode import to_h264


def _hevc_segment(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "2",
         "-c:v", "libx265", "-x265-params", "log-level=none:keyint=10", "-tag:v", "hvc1", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def test_h264_copy_of_an_h265_segment_decodes_as_h264(tmp_path: Path) -> None:
    data = to_h264(str(_hevc_segment(tmp_path / "seg.mp4")))
    out = tmp_path / "copy.mp4"
    out.write_bytes(data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames",
         "-of", "json", str(out)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    (stream,) = json.loads(probe.stdout)["streams"]
    assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 20
