"""The hub against a camera stack nobody here wrote: GStreamer's rtsp-server (gst-rtsp-server, inside
many IP cameras), one per test, recorded by the hub's own camera loop (tests/interop/record_camera.py).

Every recorded segment is checked with ffprobe (an independent reader): the streams and codecs it
holds, the sample entry tag, a clean decode of every frame, and a duration that matches the index.
UDP runs inside a network namespace with only loopback (`unshare -n`), so no RTP can leave the box.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hub.ingest.rtsp_client import ReaderAudioPacket, RtspTcpReader

ROOT = Path(__file__).resolve().parents[2]


def _gst_ready() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3"
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else probe.stderr.strip()[-300:]


@pytest.fixture(scope="module", autouse=True)
def gstreamer() -> None:
    problem = _gst_ready()
    # Not a skip: CI installs these (Makefile SYSTEM_PACKAGES); a missing camera stack is a failure.
    assert problem is None, f"GStreamer's RTSP server bindings are missing (make sysdeps): {problem}"


def record(tmp_path: Path, *args: str, netns: bool = False) -> tuple[dict[str, Any], str]:
    """Run the recorder against a fresh GStreamer camera; (its JSON result, its log)."""
    out = tmp_path / "rec"
    cmd = [sys.executable, "-m", "tests.interop.record_camera", "--out", str(out), *args]
    if netns:
        # A private network namespace with only `lo` (up): RTP over UDP stays on loopback.
        assert shutil.which("unshare"), "unshare (util-linux) is needed for the UDP test"
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def probe(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,codec_tag_string,sample_rate,nb_read_frames,duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and not proc.stderr.strip(), f"{path}: {proc.stderr}"
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert decode.returncode == 0 and not decode.stderr.strip(), f"{path} does not decode: {decode.stderr}"
    return {s["codec_type"]: s for s in json.loads(proc.stdout)["streams"]}


def check_segments(
    tmp_path: Path, result: dict[str, Any], video: str, tag: str, audio: str | None, *, slack_s: float = 0.15
) -> list[dict[str, Any]]:
    segments = result["segments"]
    assert len(segments) >= 2, result
    for i, seg in enumerate(segments):
        streams = probe(tmp_path / "rec" / "segments" / seg["path"])
        assert seg["codec"] == video and seg["audio_codec"] == audio, seg
        v = streams["video"]
        assert (v["codec_name"], v["codec_tag_string"]) == (video, tag), v
        assert int(v["nb_read_frames"]) > 0
        # The index and the file agree on how long the segment is (within a frame at 10 fps).
        assert abs(float(v["duration"]) - (seg["end"] - seg["start"])) <= slack_s, (v, seg)
        if audio is None:
            assert "audio" not in streams, streams
        elif i == len(segments) - 1 and seg["end"] - seg["start"] < 0.5:
            # The run stopped within half a second of a cut: G.711 comes in 128 ms packets and the
            # AAC encoder holds ~1024 samples, so this stub may hold no sound yet (camhub's reader
            # records from the first packet, where FFmpeg's probe made every run ~3 s longer).
            assert streams["audio"]["codec_name"] == audio, streams
        else:
            a = streams["audio"]
            assert a["codec_name"] == audio and int(a["nb_read_frames"]) > 0, a
            # Audio covers the segment but for what was dropped at its boundaries (≤ 2 frames).
            assert float(v["duration"]) - 0.2 <= float(a["duration"]) <= float(v["duration"]) + 0.2, (a, v)
    return segments


def test_h264_with_aac_and_basic_auth(tmp_path: Path) -> None:
    result, _ = record(tmp_path, "--audio", "aac", "--auth", "basic", "--seconds", "4")
    check_segments(tmp_path, result, "h264", "avc1", "aac")
    assert result["transport"] == "auto" and result["gaps"] == []
    assert result["reader_used"] == "camhub", result  # video and AAC through camhub's own reader


def test_h264_with_g711_and_digest_auth_records_aac(tmp_path: Path) -> None:
    # G.711 cannot go in MP4: the hub transcodes it to AAC (and says so in its log).
    result, log = record(tmp_path, "--audio", "pcma", "--auth", "digest", "--seconds", "4")
    check_segments(tmp_path, result, "h264", "avc1", "aac")
    assert "pcm_alaw 8000 Hz (transcoded to AAC" in log
    assert result["reader_used"] == "camhub", result


def test_audio_off_records_video_only(tmp_path: Path) -> None:
    # The owner did not turn audio on (the default): the camera's AAC is not recorded at all.
    result, _ = record(tmp_path, "--audio", "aac", "--no-audio-setting", "--seconds", "3")
    check_segments(tmp_path, result, "h264", "avc1", None)
    # Read by camhub's own reader, which sets up the video track alone.
    assert result["reader_used"] == "camhub", result


def test_h265_is_tagged_hvc1_with_opus_copied(tmp_path: Path) -> None:
    result, _ = record(tmp_path, "--video", "h265", "--audio", "opus", "--seconds", "4")
    check_segments(tmp_path, result, "hevc", "hvc1", "opus")
    assert result["reader_used"] == "camhub", result


def test_h265_video_only_is_read_by_camhubs_own_reader(tmp_path: Path) -> None:
    # Audio off: camhub reads RTP over TCP itself (hub/ingest/rtsp_client.py), FU and AP packets of
    # H.265 as x265 + rtph265pay send them, SPS/PPS/VPS repeated before every keyframe.
    result, _ = record(tmp_path, "--video", "h265", "--auth", "digest", "--seconds", "4")
    check_segments(tmp_path, result, "hevc", "hvc1", None)
    assert result["reader"] == result["reader_used"] == "camhub", result
    assert result["gaps"] == [], result


def test_h264_with_b_frames_is_handed_to_ffmpeg_and_recorded(tmp_path: Path) -> None:
    # RTP carries presentation times only; camhub's reader sees them step back and hands the camera
    # to FFmpeg's reader for good, which records it (decode order intact).
    # 8 s: x264 without zerolatency buffers ~2 s before the new connection's first frame.
    result, log = record(tmp_path, "--video", "h264b", "--seconds", "8")
    # ffprobe's duration leaves out the two B-frames' reorder delay (0.2 s at 10 fps) the index counts.
    check_segments(tmp_path, result, "h264", "avc1", None, slack_s=0.25)
    assert result["reader"] == result["reader_used"] == "ffmpeg", result
    assert "B-frames" in log and "reading it with FFmpeg from now on" in log


def test_udp_only_camera_in_a_loopback_namespace(tmp_path: Path) -> None:
    # Like VLC's server: TCP SETUP gets 461. "auto" moves to UDP, and keeps it for reconnects.
    result, log = record(tmp_path, "--udp-only", "--audio", "aac", "--seconds", "4", netns=True)
    check_segments(tmp_path, result, "h264", "avc1", "aac")
    assert result["transport"] == "udp"
    assert "refused this RTP transport (461)" in log


def test_udp_only_camera_with_tcp_forced_records_nothing_and_says_why(tmp_path: Path) -> None:
    result, _ = record(
        tmp_path, "--udp-only", "--transport", "tcp", "--seconds", "1", "--open-timeout-s", "6", netns=True
    )
    assert result["got_video"] is False and result["segments"] == []
    assert "461" in (result["last_error"] or ""), result


def test_camera_that_returns_is_recorded_within_2_s_whatever_the_backoff(tmp_path: Path) -> None:
    result, log = record(tmp_path, "--kill-after", "2", "--down-for", "9", "--seconds", "3")
    # The backoff had grown past the 2 s the footage may lose after the camera's return...
    assert result["reconnects_while_down"] >= 3, result
    assert "reconnecting in" in log
    returned = result["returned_at"]
    after = [s for s in result["segments"] if s["start"] > result["killed_at"]]
    assert after, result
    # ...and the recording still starts again within 2 s of it, after a gap the index records.
    assert after[0]["start"] - returned <= 2.0, (after[0], returned)
    assert any(g["reason"] == "ended" and g["end"] >= result["killed_at"] for g in result["gaps"]), result
    check_segments(tmp_path, result, "h264", "avc1", None)


def test_wrong_password_never_reaches_logs_database_or_errors(tmp_path: Path) -> None:
    right, wrong = "s3cret-camera-pw", "wrong-password-7f3a"
    result, log = record(
        tmp_path, "--auth", "digest", "--password-sent", wrong, "--seconds", "4", "--open-timeout-s", "4"
    )
    assert result["segments"] == [] and result["got_video"] is False
    error = result["last_error"] or ""
    assert "credentials" in error, error
    assert log.count("reconnecting in") >= 2, log  # it did fail and retry, quoting FFmpeg's errors
    for secret in (wrong, right, "wrong-password"):
        assert secret not in log
        assert secret not in json.dumps(result)
        for f in (tmp_path / "rec").glob("camhub.sqlite*"):
            assert secret.encode() not in f.read_bytes(), f


@pytest.mark.parametrize("audio", ["aac", "pcma", "opus"])
def test_audio_is_placed_alike_by_rtp_info_and_by_sender_reports(audio: str) -> None:
    """Two independent statements of where audio sits against video: PLAY's RTP-Info (the RTSP
    server's) and the RTCP sender reports (rtpbin's). camhub's reader places audio by the first from
    its first packet and by the second once both tracks sent one; they must agree."""
    camera = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests/interop/gst_camera.py"), "--port", "0", "--video", "h264",
         "--audio", audio],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader: RtspTcpReader | None = None
    try:
        assert camera.stdout is not None
        line = camera.stdout.readline()
        assert line.startswith("ready "), line
        reader = RtspTcpReader(line.split()[1], open_timeout_s=10.0, read_timeout_s=5.0, audio=True)
        reader.open()
        sound = reader._sound
        assert sound is not None and sound.play_times is not None, "gst-rtsp-server sends RTP-Info"
        first: tuple[str, int] | None = None
        audio_packets = 0
        deadline = time.monotonic() + 15
        for pkt in reader.demux():
            if isinstance(pkt, ReaderAudioPacket):
                audio_packets += 1
                if first is None:
                    first = (sound.placed_by, sound.offset)  # type: ignore[assignment]
            if sound.by_reports or time.monotonic() > deadline:
                break
    finally:
        if reader is not None:
            reader.close()
        camera.kill()
        camera.wait()
    assert first is not None and first[0] == "rtp-info", first
    assert sound.by_reports, "no sender report from both tracks within 15 s"
    assert sound.offset is not None
    apart_ms = abs(sound.offset - first[1]) * 1000 / sound.track.clock_rate
    assert apart_ms <= 5, (audio, apart_ms)
