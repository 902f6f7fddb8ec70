"""Simulator cost: CPU seconds per camera-second while serving N 1080p15 streams.

For each N (4 and 8; 1 with ``--smoke``) this starts ``camhub-sim`` with N cameras in its
own process, connects one ``ffmpeg -rtsp_transport tcp -i URL -c copy -f null -`` client per
camera (main stream), lets them warm up, then measures the sim process's CPU time
(every thread's /proc/PID/task/TID/schedstat, ns) over 3 consecutive windows (2 with ``--smoke``);
the figure is the median window, with min/max. Clients' frame counts are
reported to show they were really served (sampled from ``ffmpeg -progress`` every 0.5 s,
so short windows read a little high or low), with the bit rate of the idle loop they were sent. Encoded clips come from the sim's disk cache, so
encoding is not measured (it happens once, before "ready").

Each N runs twice: the sim's default constant-quality stream (a few hundred kbit/s: the
synthetic scene compresses well) and a camera-like 3 Mbit/s CBR stream (``--bitrate-kbit``).

There is no reference side: this is not a camhub figure but the cost of the load generator every
other scenario shares the machine with (so their ratios can be read knowing what the sim takes).
No other RTSP server here serves the same synthetic clips, and an A/B against one would measure that
server, not camhub; so the windows repeat the one side and the JSON says so (``reference``).

Run: ``.venv/bin/python -m bench.sim_bench [--smoke]``. Prints a table and writes
``bench/results/sim.json``. Total wall time is bounded (~60 s; ~15 s with ``--smoke``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

from bench import results_dir, spread

RESULTS = results_dir() / "sim.json"


def cpu_seconds(pid: int) -> float:
    """Every live thread's CPU time in ns (schedstat): 10 ms ticks are coarse next to ~0.03 cores."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total / 1e9
    except (FileNotFoundError, ValueError):
        pass
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime (proc(5) fields 14, 15)


async def start_sim(
    n: int, args: argparse.Namespace, bitrate_kbit: int
) -> tuple[asyncio.subprocess.Process, list]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim.cli",
        "--cameras",
        str(n),
        "--rtsp-port",
        "0",
        "--control-port",
        "0",
        "--no-mdns",
        "--width",
        str(args.width),
        "--height",
        str(args.height),
        "--fps",
        str(args.fps),
        "--gop",
        str(args.gop),
        "--bitrate-kbit",
        str(bitrate_kbit),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    cameras = []
    async with asyncio.timeout(120):
        while (line := (await proc.stdout.readline()).decode().strip()) != "ready":
            if not line:
                raise RuntimeError(f"camhub-sim exited with {await proc.wait()}")
            cameras.append(json.loads(line))
    return proc, cameras


async def start_client(url: str, progress: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
        "-c",
        "copy",
        "-f",
        "null",
        "-progress",
        str(progress),
        "-stats_period",
        "0.5",
        "-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def progress_value(progress: Path, key: str) -> int:
    """Latest ``key=`` value in an ffmpeg -progress file (written every 0.5 s)."""
    lines = (
        [line for line in progress.read_text().splitlines() if line.startswith(key + "=")]
        if progress.exists()
        else []
    )
    value = lines[-1].split("=")[1] if lines else "0"
    return int(value) if value.isdigit() else 0


async def idle_kbit_s(args: argparse.Namespace, bitrate_kbit: int) -> float:
    """Bit rate of the idle loop the clients received (from the sim's clip cache)."""
    from firmware_sim import picture
    from firmware_sim.encoder import ClipCache, ClipSpec
    from firmware_sim.fleet import default_cache_dir

    frames = max(1, round(4.0 * args.fps / args.gop)) * args.gop  # the CLI's default --loop-s 4
    clip = await ClipCache(default_cache_dir()).get(
        ClipSpec(args.width, args.height, args.fps, args.gop, picture.CLIP_IDLE, frames, bitrate_kbit)
    )
    octets = sum(len(n) for f in clip.frames for n in f.nals)
    return round(8 * octets * args.fps / frames / 1000, 1)


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def measure(n: int, bitrate_kbit: int, args: argparse.Namespace, workdir: Path) -> dict:
    sim, cameras = await start_sim(n, args, bitrate_kbit)
    clients: list[asyncio.subprocess.Process] = []
    try:
        progress = [workdir / f"n{n}-c{i}.progress" for i in range(n)]
        for cam, path in zip(cameras, progress, strict=True):
            clients.append(await start_client(cam["rtsp_main"], path))
        await asyncio.sleep(args.warmup_s)  # benchmark warm-up: a fixed duration by design
        frames0 = [progress_value(p, "frame") for p in progress]
        per_window: list[float] = []
        cpu, window = 0.0, 0.0
        for _ in range(args.windows):
            cpu0, t0 = cpu_seconds(sim.pid), time.monotonic()
            await asyncio.sleep(args.window_s / args.windows)
            cpu1, t1 = cpu_seconds(sim.pid), time.monotonic()
            per_window.append((cpu1 - cpu0) / (n * (t1 - t0)))
            cpu += cpu1 - cpu0
            window += t1 - t0
        frames1 = [progress_value(p, "frame") for p in progress]
        alive = sum(1 for c in clients if c.returncode is None)
    finally:
        for c in clients:
            await stop(c, signal.SIGINT)
        await stop(sim, signal.SIGINT)
    received = [b - a for a, b in zip(frames0, frames1, strict=True)]
    return {
        "streams": n,
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "gop": args.gop,
        "window_s": round(window, 2),
        "sim_cpu_s": round(cpu, 3),
        "cpu_s_per_camera_s": round(statistics.median(per_window), 5),
        "cpu_s_per_camera_s_windows": spread(per_window, 5),
        "sim_cores_used": round(cpu / window, 3),
        "clients_alive": alive,
        "client_fps": [round(r / window, 1) for r in received],
        "bitrate_mode": f"CBR {bitrate_kbit} kbit/s" if bitrate_kbit else "CRF 23",
        "stream_kbit_s": await idle_kbit_s(args, bitrate_kbit),
    }


async def main_async(args: argparse.Namespace) -> dict:
    workdir = RESULTS.parent / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = [await measure(n, rate, args, workdir) for rate in args.bitrates for n in args.streams]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "bench": "sim",
        "smoke": args.smoke,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "client": "ffmpeg -rtsp_transport tcp -i URL -c copy -f null -",
        "reference": None,
        "why_no_reference": "the simulator is the load generator every scenario shares, not camhub; "
        "repeated windows of the one side (median, min/max) instead of an A/B",
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--smoke", action="store_true", help="tiny pictures and a few seconds (for CI)")
    args = p.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("sim_bench: ffmpeg (Debian package) is required", file=sys.stderr)
        return 2
    if args.smoke:
        args.width, args.height, args.fps, args.gop = 320, 180, 15, 15
        args.streams, args.warmup_s, args.window_s, args.bitrates = [1], 2.0, 2.0, [0]
        args.windows = 2
    else:
        args.width, args.height, args.fps, args.gop = 1920, 1080, 15, 30
        # The sim's own constant-quality stream, and a camera-like 3 Mbit/s CBR stream.
        args.streams, args.warmup_s, args.window_s, args.bitrates = [4, 8], 2.5, 7.2, [0, 3000]
        args.windows = 3
    report = asyncio.run(main_async(args))
    report["summary"] = "sim serving: " + ", ".join(
        f"{r['streams']}x {r['bitrate_mode']} {r['cpu_s_per_camera_s']} CPU s/cam·s "
        f"({r['cpu_s_per_camera_s_windows']['min']}-{r['cpu_s_per_camera_s_windows']['max']})"
        for r in report["results"]
    )
    report["summary"] += (
        f"; median of {args.windows} windows; no reference: the sim is the load generator, not camhub"
    )
    print(
        f"{'mode':>15} {'streams':>7} {'size':>10} {'window s':>8} {'sim CPU s':>9} {'CPU s/cam-s':>11} {'cores':>6} "
        f"{'client fps min/max':>18} {'kbit/s per stream':>17}"
    )
    for r in report["results"]:
        fps = r["client_fps"]
        print(
            f"{r['bitrate_mode']:>15} {r['streams']:>7} {r['width']}x{r['height']:<5} {r['window_s']:>8} {r['sim_cpu_s']:>9} "
            f"{r['cpu_s_per_camera_s']:>11} {r['sim_cores_used']:>6} {min(fps):>8}/{max(fps):<9} "
            f"{r['stream_kbit_s']:>17}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    ok = all(r["clients_alive"] == r["streams"] and min(r["client_fps"]) > 0 for r in report["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
