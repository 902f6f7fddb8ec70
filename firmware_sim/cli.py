"""``camhub-sim``: run N simulated doorbell cameras until interrupted.

Prints one JSON line per camera (its URLs) and then ``ready`` on stdout, so scripts can
wait for it; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from firmware_sim.fleet import SimFleet, default_cache_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="camhub-sim", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--cameras", type=int, default=1, help="number of cameras, named sim-1 … sim-N")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--rtsp-port", type=int, default=8554, help="RTSP port, 0 = any free port")
    p.add_argument("--control-port", type=int, default=8555, help="HTTP control/events port, 0 = any")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--sub-width", type=int, default=640)
    p.add_argument("--sub-height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--gop", type=int, default=30, help="frames per GOP (IDR interval)")
    p.add_argument(
        "--bitrate-kbit",
        type=int,
        default=0,
        help="CBR bit rate of the main stream (filler data); 0 = constant quality (default)",
    )
    p.add_argument("--loop-s", type=float, default=4.0, help="length of the idle loop in seconds")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="camhub")
    p.add_argument("--session-timeout-s", type=float, default=60.0)
    p.add_argument("--no-mdns", action="store_true", help="do not advertise on mDNS")
    p.add_argument(
        "--onvif-port",
        type=int,
        default=None,
        help="serve ONVIF (device/media/events) on this port, +1 for each further camera; 0 = any",
    )
    p.add_argument(
        "--wsd-port",
        type=int,
        default=None,
        help="answer WS-Discovery probes on this UDP port (3702 is ONVIF's); needs --onvif-port",
    )
    p.add_argument(
        "--wsd-multicast",
        action="store_true",
        help="also join 239.255.255.250 on --host's interface (binds the group address and --wsd-port)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where encoded clips are kept between runs",
    )
    p.add_argument("--no-cache", action="store_true", help="encode in memory only")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    fleet = SimFleet(
        args.cameras,
        host=args.host,
        rtsp_port=args.rtsp_port,
        control_port=args.control_port,
        user=args.user,
        password=args.password,
        mdns=not args.no_mdns,
        session_timeout_s=args.session_timeout_s,
        onvif=args.onvif_port is not None,
        onvif_port=args.onvif_port or 0,
        wsd_port=args.wsd_port,
        wsd_multicast=args.wsd_multicast,
        width=args.width,
        height=args.height,
        sub_width=args.sub_width,
        sub_height=args.sub_height,
        fps=args.fps,
        gop=args.gop,
        loop_s=args.loop_s,
        bitrate_kbit=args.bitrate_kbit,
        cache_dir=None if args.no_cache else args.cache_dir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        for info in fleet.describe():
            print(json.dumps(info), flush=True)
        print("ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(run(args))
    except OSError as exc:
        print(f"camhub-sim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
