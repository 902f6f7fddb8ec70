"""`camhub ...`: the daemon and the admin commands, each a thin layer over the modules that do the work."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hub import config as config_mod
from hub import redact
from hub.config import Config, ConfigError

EXIT_CONFIG = 2

log = logging.getLogger("hub")
T = TypeVar("T")


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiortc/aioice/zeroconf are chatty at INFO; their warnings still show.
    for noisy in ("aioice", "aiortc", "zeroconf", "libav", "onvif", "zeep"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Camera credentials never reach a log line, whoever wrote it (hub/redact.py).
    redact.install_log_filter()


def _load_config(path: str) -> Config:
    try:
        return config_mod.load(Path(path))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _run_daemon(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for the long-running commands, with every thread named in the kernel
    (hub/threadname.py): the event loop's as the process, `camhub`; `to_thread` workers `aio_N`; and
    malloc set up before any of them allocates (daemon.tune_malloc)."""
    from hub.daemon import tune_malloc
    from hub.threadname import name_os_thread

    name_os_thread("camhub")
    tune_malloc()
    with asyncio.Runner() as runner:
        runner.get_loop().set_default_executor(
            ThreadPoolExecutor(thread_name_prefix="camhub-aio", initializer=name_os_thread)
        )
        return runner.run(main)


def cmd_run(args: argparse.Namespace) -> int:
    from hub import daemon

    cfg = _load_config(args.config)
    _setup_logging(cfg.hub.log_level)
    try:
        _run_daemon(daemon.serve(cfg))
    except daemon.StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    print(f"{args.config}: ok ({len(cfg.cameras)} cameras, data dir {cfg.hub.data_dir})")
    return 0


def cmd_pair(args: argparse.Namespace) -> int:
    """A fresh pairing code for someone with a shell on the box (PROTOCOL.md §1)."""
    from hub import datadir
    from hub.consent import pairing
    from hub.store import Store

    cfg = _load_config(args.config)
    datadir.become_data_dir_owner(cfg)

    async def issue() -> str:
        datadir.prepare(cfg)
        store = await Store.open(cfg.db_path)
        try:
            return await store.run(pairing.issue)
        finally:
            await store.close()

    code = asyncio.run(issue())
    print(f"pairing code: {code} (valid for {pairing.LIFETIME_SECONDS // 60} minutes, single use)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hub import demo

    _setup_logging("info")
    return _run_daemon(
        demo.run(data_dir=Path(args.data_dir).absolute(), port=args.port, cameras=args.cameras)
    )


def _time_arg(text: str) -> float:
    """RFC 3339 (`2026-11-20T18:00:00Z`) or unix seconds."""
    from camhub_protocol import rfc3339

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return rfc3339.parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time or unix seconds") from exc


def cmd_export(args: argparse.Namespace) -> int:
    """The owner's own local export on the box (sharing outward goes through consent, never here)."""
    from camhub_protocol import rfc3339
    from hub import datadir
    from hub.consent import audit
    from hub.record import clip, sealed
    from hub.store import Store
    from hub.store import exports as exports_q

    cfg = _load_config(args.config)
    if cfg.camera(args.camera) is None:
        print(
            f"unknown camera {args.camera!r} (configured: {', '.join(c.id for c in cfg.cameras)})",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    async def export() -> clip.Clip:
        datadir.prepare(cfg)
        # Sealed segments (`[storage] encrypt`) are opened with the storage key the hub key unwraps.
        at_rest = sealed.reader_at_rest(cfg.keys_dir, cfg.hub_key_path)
        store = await Store.open(cfg.db_path)
        try:
            made = await clip.export_clip(
                cfg.segments_dir, store, args.camera, args.start, args.end, Path(args.output), at_rest=at_rest
            )
            # Exports age out with the footage (PROTOCOL §3.2): the hub deletes this file once its
            # newest footage is older than the camera's max age, unless the owner holds it.
            await store.run(
                exports_q.record,
                str(made.path.resolve()),
                made.camera_id,
                made.start_at,
                made.end_at,
                time.time(),
            )
            # Who watched what (PROTOCOL §5): an export is a view, by whoever has a shell on the box.
            who = f"box:{getpass.getuser()}"
            await store.run(
                audit.append_sync, "view.export", who,
                {"camera": made.camera_id, "who": who, "start": rfc3339.format(made.start_at),
                 "end": rfc3339.format(made.end_at), "path": str(made.path.resolve())},
            )  # fmt: skip
            return made
        finally:
            await store.close()

    try:
        result = asyncio.run(export())
    except (clip.ClipError, sealed.SealedError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.path}: {result.camera_id} {result.duration_s:.2f} s "
        f"({result.codec} {result.width}x{result.height}, {len(result.segments)} segments, stream-copied)"
    )
    print(
        "note: the hub deletes this file with the footage when it passes max age, unless you hold it",
        file=sys.stderr,
    )
    if not result.covers_request:
        print("note: the recording does not cover the whole range (gap or not yet recorded)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camhub", description="Local-first camera hub with on-device consent."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the hub daemon")
    p.add_argument("--config", required=True, help="TOML config file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and exit")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("pair", help="make a fresh one-time pairing code for the first owner key")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("export", help="cut a stream-copied clip from local recordings (owner, on the box)")
    p.add_argument("camera")
    p.add_argument("start", type=_time_arg, help="RFC 3339 time or unix seconds")
    p.add_argument("end", type=_time_arg, help="RFC 3339 time or unix seconds")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="run the hub with simulated cameras on 127.0.0.1")
    p.add_argument("--data-dir", default="demo-data")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--cameras", type=int, default=2)
    p.set_defaults(func=cmd_demo)

    from hub.consent import commands as consent_commands

    consent_commands.add_parsers(sub)  # owner, agency, audit (PROTOCOL.md)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hub.consent.commands import join_id_options

    args = build_parser().parse_args(join_id_options(sys.argv[1:] if argv is None else argv))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
