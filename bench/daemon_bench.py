"""The whole daemon against the floor: `camhub run` vs `ffmpeg -c copy -f segment`, side by side.

record_bench times the recorder component; what a user runs is the daemon (`python -m hub run`: the
recorders plus the web server, the consent service, the supervisor, retention, status writes...).
This starts, against one ``camhub-sim`` serving 1080p15 CBR 2048 kbit/s streams (GOP 2 s, the low end
of what cameras ship with), at the same time:

- one real daemon, `python -m hub run --config …`, recording N cameras (4 s segments, motion off),
  its data dir fresh;
- N reference processes ``ffmpeg -rtsp_transport tcp -i URL -c copy -f segment`` writing the same 4 s
  fragmented-MP4 segments, one per camera as an NVR script would;
- N ``python -m bench.pyav_floor URL`` processes: the same recording as the least a PyAV recorder
  does (bench/pyav_floor.py), so the ratio splits into what the library costs over ffmpeg's own loop
  and what camhub adds on top of it.

After a warm-up (daemon start, RTSP setup and probing are not recording) it reads both sides' CPU time
(every thread's schedstat) over three consecutive windows and samples RSS; the ratio is the median of
the windows' ratios (both sides share the two cores with each other and with the simulator: read the
ratio, not the absolute figures). Each window is a whole segment long (`--seconds` 12 = 3 x 4 s):
the daemon's work comes in lumps (a reader wakes every 0.4 s, the cameras' segments close
together every 4 s), and with the 2 s windows used before, one window in three held the segments'
close and the median picked the others (windows 0.8, 1.4, 0.8: x0.8). Side by side at 1, 4 and 8
cameras (target: daemon/ffmpeg CPU <= 1.2, issue 17).

Scaling: the daemon's CPU per camera (% of one core) and RSS at 1, 4, 8 cameras (the side-by-side
runs) and 16 (alone), so a Pi owner can read off how many cameras fit; ``--full`` adds 32 cameras and
longer windows (the machine is shared: the default run stays about a minute, `make bench` budget).

Run: ``.venv/bin/python -m bench.daemon_bench [--smoke | --full] [--cameras 1,4,8] [--scale 16,32] [--seconds S]``.
Prints a table and writes ``bench/results/daemon.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.record_bench import CAMERA_KBIT, FMP4, SEGMENT_S, cpu_seconds, rss_mib, start_sim, stop_process

RESULTS = results_dir() / "daemon.json"
TARGET_CPU_RATIO = 1.2  # issue 17: the whole daemon within 1.2x ffmpeg -c copy, at 1, 4 and 8 cameras
WINDOWS = 3
READY_RE = re.compile(r"camhub ready url=")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(workdir: Path, urls: list[str]) -> Path:
    cameras = "".join(
        f'\n[[cameras]]\nid = "cam{i}"\nurl = "{url}"\n[cameras.motion]\nenabled = false\n'
        for i, url in enumerate(urls)
    )
    path = workdir / "camhub.toml"
    path.write_text(
        f'[hub]\nname = "bench"\ndata_dir = "{workdir / "data"}"\nbind = "127.0.0.1"\nport = {_free_port()}\n'
        f"[discovery]\nenabled = false\n[storage]\nsegment_seconds = {SEGMENT_S:g}\n" + cameras
    )
    return path


async def _start_daemon(workdir: Path, urls: list[str]) -> asyncio.subprocess.Process:
    log = workdir / "daemon.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", "run", "--config", str(_config(workdir, urls)),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not READY_RE.search(log.read_text()):
        if proc.returncode is not None or time.monotonic() > deadline:
            await stop_process(proc)
            raise RuntimeError(f"camhub run did not get ready:\n{log.read_text()[-2000:]}")
        await asyncio.sleep(0.1)
    return proc


async def _start_ffmpeg(url: str, out: Path) -> asyncio.subprocess.Process:
    await asyncio.to_thread(out.mkdir, parents=True)
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
        "-c", "copy", "-f", "segment", "-segment_time", str(SEGMENT_S), "-segment_format", "mp4",
        "-segment_format_options", f"movflags={FMP4}", "-reset_timestamps", "1", str(out / "%05d.mp4"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _start_floor(url: str, out: Path) -> asyncio.subprocess.Process:
    """bench/pyav_floor.py: the least any PyAV recorder does, for the split of the ratio."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pyav_floor", url, str(out),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _measure(
    pids: dict[str, list[int]], measure_s: float
) -> tuple[list[dict[str, float]], dict[str, float], float]:
    """CPU seconds per side over WINDOWS consecutive windows, peak RSS (MiB, summed per side), total window."""
    peak = {k: 0.0 for k in pids}
    spent: list[dict[str, float]] = []
    window = 0.0
    for _ in range(WINDOWS):
        cpu0 = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < measure_s / WINDOWS:
            for k, v in pids.items():
                peak[k] = max(peak[k], sum(rss_mib(p) for p in v))
            await asyncio.sleep(min(0.5, measure_s / WINDOWS - elapsed))
        spent.append({k: sum(cpu_seconds(p) for p in v) - cpu0[k] for k, v in pids.items()})
        window += time.monotonic() - t0
    return spent, peak, window


# The daemon's threads by what they do, from their kernel names (hub/threadname.py).
THREAD_GROUPS = (
    (
        "reader",
        "rtsp-",
        "reading each camera and muxing on the same thread (PyAV/FFmpeg + camhub per packet)",
    ),
    ("finalize", "rec-", "closing segments: fsync, SHA-256, rename, index row handed to the DB"),
    ("db", "db_", "SQLite: segment index, camera status"),
    ("loop", "camhub", "the event loop: web server, consent service, supervisors, status"),
    ("aio", "aio_", "to_thread workers"),
    ("motion", "motion-", "motion detection (off in this bench)"),
)


def thread_group(comm: str) -> str:
    for group, prefix, _ in THREAD_GROUPS:
        if comm.startswith(prefix):
            return group
    return "other"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of `pid`'s live threads, summed by `THREAD_GROUPS`."""
    out: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                ns = int((task / "schedstat").read_text().split()[0])
                group = thread_group((task / "comm").read_text().strip())
                out[group] = out.get(group, 0.0) + ns / 1e9
    return out


def _segments(workdir: Path) -> int:
    return len(list((workdir / "data" / "segments").rglob("*.mp4")))


async def run_one(
    n: int, urls: list[str], tmp: Path, warmup_s: float, measure_s: float, reference: bool
) -> dict[str, Any]:
    workdir = tmp / f"daemon-{n}"
    workdir.mkdir()
    daemon = await _start_daemon(workdir, urls)
    ffmpegs, floors = [], []
    try:
        if reference:
            for i, u in enumerate(urls):
                ffmpegs.append(await _start_ffmpeg(u, tmp / f"ffmpeg-{n}" / f"cam{i}"))
                floors.append(await _start_floor(u, tmp / f"pyav-{n}" / f"cam{i}"))
        await asyncio.sleep(warmup_s)
        pids = {"daemon": [daemon.pid]}
        if reference:
            pids["ffmpeg"] = [p.pid for p in ffmpegs]
            pids["pyav_floor"] = [p.pid for p in floors]
        threads0 = thread_cpu(daemon.pid)
        spent, peak, window = await _measure(pids, measure_s)
        threads1 = thread_cpu(daemon.pid)
    finally:
        for p in ffmpegs + floors:
            await stop_process(p, signal.SIGINT)  # both finish their segment on SIGINT
        await stop_process(daemon)
    cam_s = n * window
    cpu_d = sum(w["daemon"] for w in spent)
    out: dict[str, Any] = {
        "cameras": n,
        "window_s": round(window, 2),
        "daemon": {
            "cpu_s_per_cam_s": round(cpu_d / cam_s, 5),
            "cpu_percent_per_camera": round(cpu_d / cam_s * 100, 2),
            "rss_mib": round(peak["daemon"], 1),
            "segments": _segments(workdir),
            # Where the daemon's CPU goes: ms of CPU per second of wall time, all cameras together.
            "threads_ms_per_s": {
                g: round((threads1[g] - threads0.get(g, 0.0)) / window * 1000, 2) for g in sorted(threads1)
            },
        },
    }
    if reference:
        cpu_f = sum(w["ffmpeg"] for w in spent)
        ratios = [round(w["daemon"] / w["ffmpeg"], 2) for w in spent if w["ffmpeg"] > 0]
        out["ffmpeg"] = {
            "cpu_s_per_cam_s": round(cpu_f / cam_s, 5),
            "cpu_percent_per_camera": round(cpu_f / cam_s * 100, 2),
            "rss_mib": round(peak["ffmpeg"], 1),
            "segments": len(list((tmp / f"ffmpeg-{n}").rglob("*.mp4"))),
        }
        out["cpu_ratio"] = round(statistics.median(ratios), 2) if ratios else None
        out["cpu_ratio_windows"] = ratios
        # daemon/ffmpeg = floor/ffmpeg x daemon/floor: what PyAV costs, and what camhub adds to it.
        floor_ratios = [w["pyav_floor"] / w["ffmpeg"] for w in spent if w["ffmpeg"] > 0]
        over_floor = [w["daemon"] / w["pyav_floor"] for w in spent if w["pyav_floor"] > 0]
        out["pyav_floor"] = {
            "cpu_percent_per_camera": round(sum(w["pyav_floor"] for w in spent) / cam_s * 100, 2),
            "segments": len(list((tmp / f"pyav-{n}").rglob("*.mp4"))),
            "ratio_to_ffmpeg": round(statistics.median(floor_ratios), 2) if floor_ratios else None,
            "daemon_over_floor": round(statistics.median(over_floor), 2) if over_floor else None,
        }
        out["rss_ratio"] = round(peak["daemon"] / peak["ffmpeg"], 2) if peak["ffmpeg"] else None
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(tmp / f"ffmpeg-{n}", ignore_errors=True)
    shutil.rmtree(tmp / f"pyav-{n}", ignore_errors=True)
    return out


async def drive(compare: list[int], scale: list[int], warmup_s: float, measure_s: float) -> dict[str, Any]:
    sim, cameras = await start_sim(max(compare + scale), CAMERA_KBIT)
    side_by_side, alone = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="camhub-daemon-bench-") as tmp:
            for n in compare:
                urls = [str(c["rtsp_main"]) for c in cameras[:n]]
                side_by_side.append(await run_one(n, urls, Path(tmp), warmup_s + n / 8, measure_s, True))
            for n in scale:
                urls = [str(c["rtsp_main"]) for c in cameras[:n]]
                alone.append(await run_one(n, urls, Path(tmp), warmup_s + n / 8, measure_s, False))
    finally:
        await stop_process(sim)
    scaling = [
        {
            "cameras": r["cameras"],
            "cpu_percent_per_camera": r["daemon"]["cpu_percent_per_camera"],
            "cpu_percent_total": round(r["daemon"]["cpu_percent_per_camera"] * r["cameras"], 1),
            "rss_mib": r["daemon"]["rss_mib"],
            "measured": "beside ffmpeg" if "ffmpeg" in r else "alone",
        }
        for r in sorted(side_by_side + alone, key=lambda r: r["cameras"])
    ]
    return {
        "what": "camhub run (whole daemon, motion off) vs ffmpeg -c copy -f segment, sim 1080p15 CBR "
        f"{CAMERA_KBIT} kbit/s, {SEGMENT_S:g} s segments",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "side_by_side": side_by_side,
        "alone": alone,
        "scaling": scaling,
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        "cams | daemon CPU %/cam | ffmpeg CPU %/cam | ratio (windows) | PyAV floor/ffmpeg | daemon/floor"
        " | daemon RSS MiB | ffmpeg RSS MiB (sum)",
        "---: | ---: | ---: | --- | ---: | ---: | ---: | ---:",
    ]
    for s in result["side_by_side"]:
        d, f, fl = s["daemon"], s["ffmpeg"], s["pyav_floor"]
        rows.append(
            f"{s['cameras']} | {d['cpu_percent_per_camera']} | {f['cpu_percent_per_camera']} | "
            f"x{s['cpu_ratio']} ({', '.join(str(r) for r in s['cpu_ratio_windows'])}) | "
            f"x{fl['ratio_to_ffmpeg']} | x{fl['daemon_over_floor']} | {d['rss_mib']} | {f['rss_mib']}"
        )
    rows += [
        "",
        "cams | daemon CPU %/cam | daemon CPU % total | daemon RSS MiB | measured",
        "---: | ---: | ---: | ---: | ---",
    ]
    for s in result["scaling"]:
        rows.append(
            f"{s['cameras']} | {s['cpu_percent_per_camera']} | {s['cpu_percent_total']} | {s['rss_mib']} | {s['measured']}"
        )
    groups = [g for g, _, _ in THREAD_GROUPS] + ["other"]
    runs = result["side_by_side"] + result.get("alone", [])
    rows += [
        "",
        "where the daemon's CPU goes, ms per second (all cameras; ffmpeg = the whole reference process(es))",
        "cams | " + " | ".join(groups) + " | ffmpeg",
        "---: | " + " | ".join("---:" for _ in groups) + " | ---:",
    ]
    for r in sorted(runs, key=lambda r: r["cameras"]):
        t = r["daemon"].get("threads_ms_per_s", {})
        ff = r.get("ffmpeg")
        ff_ms = f"{ff['cpu_s_per_cam_s'] * r['cameras'] * 1000:.2f}" if ff else ""
        rows.append(f"{r['cameras']} | " + " | ".join(f"{t.get(g, 0.0):.2f}" for g in groups) + f" | {ff_ms}")
    rows += [f"{g}: {what}" for g, _, what in THREAD_GROUPS[:4]]
    return "\n".join(rows)


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.daemon_bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--smoke", action="store_true", help="1 camera, short windows (CI)")
    p.add_argument("--full", action="store_true", help="scaling up to 32 cameras, longer windows")
    p.add_argument("--cameras", type=_counts, help="side-by-side camera counts (default 1,4,8)")
    p.add_argument("--scale", type=_counts, help="daemon-alone camera counts (default 16; --full 16,32)")
    p.add_argument(
        "--seconds", type=float, help="measured seconds per camera count (3 windows; best whole segments)"
    )
    args = p.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("daemon_bench: ffmpeg not found", file=sys.stderr)
        return 1
    if args.smoke:
        compare, scale, warmup_s, measure_s = [1], [], 4.0, 3.0
    elif args.full:
        compare, scale, warmup_s, measure_s = [1, 4, 8], [16, 32], 6.0, WINDOWS * 2 * SEGMENT_S
    else:
        compare, scale, warmup_s, measure_s = [1, 4, 8], [16], 4.0, WINDOWS * SEGMENT_S
    compare = args.cameras if args.cameras is not None else compare
    scale = args.scale if args.scale is not None else scale
    measure_s = args.seconds if args.seconds is not None else measure_s
    result = asyncio.run(drive(compare, scale, warmup_s, measure_s))
    result["smoke"] = args.smoke
    ratios = [s["cpu_ratio"] for s in result["side_by_side"] if s["cpu_ratio"] is not None]
    worst = max(ratios, default=None)
    result["target"] = f"camhub run/ffmpeg CPU <= {TARGET_CPU_RATIO} (CBR {CAMERA_KBIT} kbit/s)"
    result["meets_target"] = worst is not None and worst <= TARGET_CPU_RATIO
    result["summary"] = (
        "camhub run/ffmpeg copy CPU "
        + ", ".join(f"{s['cameras']} cam x{s['cpu_ratio']}" for s in result["side_by_side"])
        + "; bare PyAV remux/ffmpeg "
        + ", ".join(f"x{s['pyav_floor']['ratio_to_ffmpeg']}" for s in result["side_by_side"])
        + "; per camera "
        + ", ".join(
            f"{s['cameras']}: {s['cpu_percent_per_camera']}% of a core, {s['rss_mib']} MiB"
            for s in result["scaling"]
        )
    )
    print(table(result))
    print(result["summary"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
