"""Record a GStreamer rtsp-server camera (tests/interop/gst_camera.py) with the hub's own camera loop
(`hub.ingest.camera.CameraRuntime`: reconnects, probes, transport, audio), then print what happened
as one JSON line. A separate process so that a test can run it — camera included — inside a network
namespace with only loopback (`unshare -n`), which is where RTP over UDP is tested.

    python -m tests.interop.record_camera --out DIR --seconds 6 [--audio aac] [--video h265]
        [--auth digest] [--password-sent X] [--udp-only] [--transport auto]
        [--kill-after S --down-for D]

With --kill-after the camera process is killed S s after the first video packet, kept down D s
(long enough for the hub's backoff to grow), and started again on the same port; the JSON then
holds `returned_at` (when it served again) so the test can check how soon footage resumed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from hub import config as config_mod
from hub import redact
from hub.ingest.camera import CameraRuntime
from hub.ingest.relay import PacketRelay
from hub.ingest.whip import WhipIngest
from hub.store import Store
from hub.store import cameras as status_q
from hub.store import segments as segments_q

HERE = Path(__file__).resolve().parent
GST_PYTHON = "/usr/bin/python3"  # Debian's, with the GObject bindings (SERVER_NOTES)


def camera_args(args: argparse.Namespace, port: int) -> list[str]:
    cmd = [GST_PYTHON, str(HERE / "gst_camera.py"), "--port", str(port), "--video", args.video]
    if args.audio:
        cmd += ["--audio", args.audio]
    if args.auth:
        cmd += ["--auth", args.auth, "--user", "admin", "--password", args.camera_password]
    if args.udp_only:
        cmd.append("--udp-only")
    return cmd


def start_camera(args: argparse.Namespace, port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(camera_args(args, port), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready rtsp://127.0.0.1:PORT/cam" (blocks until it serves)
    if not line.startswith("ready "):
        proc.kill()
        raise SystemExit(f"camera did not start: {line!r}")
    return proc, line.split()[1]


async def until(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def main(args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    camera, url = start_camera(args, 0)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    table: dict[str, object] = {
        "id": "gst",
        "url": url,
        "rtsp_transport": args.transport,
        "rtsp_reader": args.reader,
        "audio": bool(args.audio) and not args.no_audio_setting,
        "read_timeout_s": args.read_timeout_s,
        "motion": {"enabled": False},
    }
    if args.auth:
        table |= {"username": "admin", "password": args.password_sent or args.camera_password}
    cfg = config_mod.parse({"hub": {"data_dir": str(out)}, "cameras": [table]})
    cam = cfg.cameras[0]
    store = await Store.open(out / "camhub.sqlite")
    runtime = CameraRuntime(cam, store, out / "segments", 2.0, PacketRelay(cam.id), WhipIngest(cfg))
    task = asyncio.create_task(runtime.run())
    result: dict[str, object] = {"url": url}
    try:
        got_video = await until(lambda: runtime.last_frame_at is not None, args.open_timeout_s)
        result["got_video"] = got_video
        if got_video and args.kill_after is not None:
            await asyncio.sleep(args.kill_after)
            camera.kill()
            camera.wait()
            result["killed_at"] = time.time()
            await asyncio.sleep(args.down_for)
            result["reconnects_while_down"] = runtime.reconnects
            camera, _ = start_camera(args, port)
            result["returned_at"] = time.time()
            returned = result["returned_at"]
            await until(lambda: (runtime.last_frame_at or 0) > returned, 15)  # type: ignore[operator]
        await asyncio.sleep(args.seconds)
    finally:
        await runtime.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        camera.terminate()
        camera.wait()
    result["transport"] = runtime.transport
    result["reader"] = runtime.reader  # the reader of RTP over TCP the camera's loop ended with
    result["reader_used"] = getattr(runtime._current, "reader_used", None)  # who read the last connection
    result["segments"] = [
        {"path": s.path, "start": s.start_at, "end": s.end_at, "codec": s.codec, "audio_codec": s.audio_codec}
        for s in await store.run(segments_q.segments_between, cam.id, 0, 1e12)
    ]
    result["gaps"] = [
        {"start": g.start_at, "end": g.end_at, "reason": g.reason}
        for g in await store.run(segments_q.gaps_between, cam.id, 0, 1e12)
    ]
    status = (await store.run(status_q.all_status)).get(cam.id)
    result["last_error"] = status.last_error if status else None
    await store.close()
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--video", default="h264")
    p.add_argument("--audio", help="what the camera sends besides video")
    p.add_argument("--no-audio-setting", action="store_true", help="the hub's audio setting stays off")
    p.add_argument("--auth", choices=("basic", "digest"))
    p.add_argument("--camera-password", default="s3cret-camera-pw")
    p.add_argument("--password-sent", help="what the hub is configured with (a wrong one, to test refusal)")
    p.add_argument("--udp-only", action="store_true")
    p.add_argument("--transport", default="auto")
    p.add_argument("--reader", default="camhub", help="the camera's rtsp_reader setting")
    p.add_argument("--read-timeout-s", type=float, default=2.0)
    p.add_argument("--open-timeout-s", type=float, default=20.0)
    p.add_argument("--kill-after", type=float)
    p.add_argument("--down-for", type=float, default=8.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse()
    # The daemon's logging set-up, redaction filter included: the test greps this output.
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact.install_log_filter()
    print(json.dumps(asyncio.run(main(ns))), flush=True)
