"""The hub's WHIP endpoint and camera loop, and GStreamer's webrtcbin pushing to it; prints one JSON
line. A separate process so that a test runs both inside a network namespace of their own
(`unshare -n`) where nothing leaves the box: loopback, and one dummy interface with a test address
(`--ice-address`), because libnice never offers loopback candidates and gathers nothing without
another interface. The hub pins its ICE host addresses to that address (hub/egress/ice.py).

    python -m tests.interop.whip_session --out DIR [--profile high] [--codec vp8] [--seconds 5]
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

from aiohttp import web

from hub import config as config_mod
from hub import redact
from hub.egress.ice import host_addresses
from hub.ingest import whip
from hub.ingest.camera import CameraRuntime
from hub.ingest.relay import PacketRelay
from hub.store import Store
from hub.store import segments as segments_q

HERE = Path(__file__).resolve().parent
TOKEN = "gst-whip-token-0123456789"


async def main(args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.parse(
        {"hub": {"data_dir": str(out)}, "cameras": [{"id": "gst", "url": "whip", "whip_token": TOKEN}]}
    )
    ingest = whip.WhipIngest(cfg)
    app = web.Application()
    whip.setup(app, ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    store = await Store.open(out / "camhub.sqlite")
    cam = cfg.cameras[0]
    runtime = CameraRuntime(cam, store, out / "segments", 2.0, PacketRelay(cam.id), ingest)
    result: dict[str, object] = {}
    with host_addresses([args.ice_address]):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/cameras/gst/whip"
        task = asyncio.create_task(runtime.run())
        cmd = ["/usr/bin/python3", str(HERE / "gst_whip_client.py"), url, TOKEN, "--seconds", str(args.seconds),
               "--profile", args.profile, "--codec", args.codec]  # fmt: skip
        client = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
        started = time.monotonic()
        stdout, _ = await client.communicate()
        result["client"] = stdout.decode().splitlines()
        result["client_rc"] = client.returncode
        result["client_s"] = time.monotonic() - started
        await runtime.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ingest.close()
        await runner.cleanup()
    result["segments"] = [
        {"path": s.path, "start": s.start_at, "end": s.end_at, "codec": s.codec}
        for s in await store.run(segments_q.segments_between, cam.id, 0, 1e12)
    ]
    await store.close()
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--profile", default="baseline")
    p.add_argument("--codec", default="h264")
    p.add_argument("--ice-address", default="127.0.0.1")
    ns = p.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redact.install_log_filter()
    print(json.dumps(asyncio.run(main(ns))), flush=True)
