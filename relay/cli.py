"""`camhub-relay`: run one stateless gateway in front of a NATS JetStream cluster (PROTOCOL §7).

    camhub-relay --nats nats://127.0.0.1:4222 --bind 127.0.0.1 --port 8090 --public-url http://127.0.0.1:8090

prints `camhub-relay ready url=<public url>` once it serves, and stops within 5 s of SIGTERM. Run as
many side by side as you like (behind a load balancer): all state is in JetStream. `--replicas 3` on
a 3-node cluster replicates the queue on every node.

    camhub-relay hub-user --hub-id HUB_ID --nkey U… [--area CELL]

prints the NATS `authorization` user entry (JSON, which nats-server's config reads) that lets one
hub's nkey do what a hub does and nothing more (PROTOCOL §7.7).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from urllib.parse import urlsplit

from aiohttp import web

from camhub_protocol import relay_wire as wire
from relay.engine import Limits, connect, setup
from relay.gateway import Gateway, GatewayLimits

log = logging.getLogger("camhub.relay")

STOP_TIMEOUT_S = 3.0


def _positive(kind: type, lo: float, hi: float):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camhub-relay", description="A camhub relay gateway (PROTOCOL §7).")
    p.add_argument("--nats", action="append", required=True, help="NATS URL (repeat for every cluster node)")
    p.add_argument("--nkey-seed-file", help="NATS nkey seed file, when the NATS server asks for nkeys")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=_positive(int, 0, 65535), default=8090)
    p.add_argument("--public-url", required=True, help="the base URL agencies and hubs know the relay by")
    p.add_argument(
        "--replicas", type=_positive(int, 1, 5), default=1, help="JetStream replicas (3 in a cluster)"
    )
    p.add_argument("--queue-per-hub", type=_positive(int, 1, 100_000), default=100)
    p.add_argument("--queue-days", type=_positive(float, 0.001, 90), default=7.0)
    p.add_argument("--area-per-cell", type=_positive(int, 1, 1_000_000), default=1000)
    p.add_argument("--rate-per-s", type=_positive(float, 0.1, 100_000), default=20.0)
    p.add_argument("--burst", type=_positive(int, 1, 1_000_000), default=200)
    p.add_argument("--hub-rate-per-s", type=_positive(float, 0.1, 100_000), default=20.0)
    p.add_argument("--hub-burst", type=_positive(int, 1, 1_000_000), default=100)
    p.add_argument("--idle-timeout-s", type=_positive(float, 1, 3600), default=15.0)
    p.add_argument(
        "--write-timeout-s", type=_positive(float, 1, 300), default=30.0,
        help="cut a delivery the client has not read for this long",
    )  # fmt: skip
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return p


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    nc = await connect(args.nats, "camhub-relay", args.nkey_seed_file)
    try:
        limits = Limits(args.replicas, args.queue_per_hub, args.queue_days, args.area_per_cell)
        engine = await setup(nc, limits)
        gateway = Gateway(
            engine,
            args.public_url,
            GatewayLimits(
                args.rate_per_s,
                args.burst,
                args.hub_rate_per_s,
                args.hub_burst,
                write_timeout_s=args.write_timeout_s,
            ),
        )
        runner = web.AppRunner(
            gateway.app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=args.idle_timeout_s,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, args.bind, args.port).start()
            print(f"camhub-relay ready url={args.public_url.rstrip('/')}", flush=True)
            await stop.wait()
            log.info("camhub-relay stopping")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.cleanup(), STOP_TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)


def hub_user(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="camhub-relay hub-user", description="The NATS user entry for one hub's nkey (PROTOCOL §7.7)."
    )
    p.add_argument("--hub-id", required=True, help="the hub id (GET /api/v1/hub)")
    p.add_argument("--nkey", required=True, help="the hub's public user nkey (U…)")
    p.add_argument("--area", help="the hub's area cell, if it opted in (§7.4)")
    args = p.parse_args(argv)
    if not wire.HUB_ID_RE.fullmatch(args.hub_id):
        p.error("--hub-id must be a hub id (43 base64url characters)")
    if not (len(args.nkey) == 56 and args.nkey.startswith("U") and args.nkey.isalnum()):
        p.error("--nkey must be a public user nkey (56 characters starting with U)")
    if args.area is not None and not wire.CELL_RE.fullmatch(args.area):
        p.error("--area must be a 5-character geohash cell")
    entry = {"nkey": args.nkey, "permissions": wire.hub_permissions(args.hub_id, args.area)}
    print(json.dumps(entry, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hub-user"]:
        return hub_user(argv[1:])
    args = build_parser().parse_args(argv)
    parts = urlsplit(args.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        print("camhub-relay: --public-url must be an http(s):// URL without a query", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"camhub-relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
