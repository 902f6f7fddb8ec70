"""Three recorders of the same cameras, alternated: ffmpeg, PyAV's demux loop, and RTSP read in Python.

A diagnostic beside daemon_bench (not a `make bench` scenario): is reading RTSP through libavformat
itself the floor? Each round runs, one after the other on the same simulated cameras (1080p15, CBR
2 Mbit/s, GOP 2 s), N processes of each kind (one per camera), each recording 4 s fragmented-MP4
segments:

- ``ffmpeg``: ``ffmpeg -rtsp_transport tcp -i URL -c copy -f segment`` (daemon_bench's reference);
- ``pyav_floor``: ``container.demux()`` + ``mux()`` (bench/pyav_floor.py);
- ``rtsp_floor``: the RTSP session and H.264 depacketisation in Python over one socket read per
  burst, PyAV only muxing (bench/rtsp_floor.py);
- ``rtsp_floor_nap``: the same, sleeping `MAX_BATCH_S` after each burst as the hub's reader naps (0.4 s until 2026-12-06).

It reads each side's CPU over a window after a warm-up and prints each kind's ratio to ffmpeg's in
the same round (the ratio, not the absolute figures: the machine is shared).

Run: ``.venv/bin/python -m bench.reader_floor [--cameras 1,8] [--rounds 3] [--seconds 16]``;
prints a table and writes ``bench/results/reader_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results_dir
from bench.daemon_bench import _start_ffmpeg
from bench.record_bench import CAMERA_KBIT, cpu_seconds, start_sim, stop_process
from hub.ingest.rtsp import MAX_BATCH_S

KINDS = ("ffmpeg", "pyav_floor", "rtsp_floor", "rtsp_floor_nap")
NAP_S = MAX_BATCH_S  # the hub reader's longest nap
WARM_UP_S = 6.0


async def _start(kind: str, url: str, out: Path) -> asyncio.subprocess.Process:
    if kind == "ffmpeg":
        return await _start_ffmpeg(url, out)
    module, nap = (kind.removesuffix("_nap"), ["--nap", str(NAP_S)]) if kind.endswith("_nap") else (kind, [])
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"bench.{module}", url, str(out), *nap,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def _count_and_clear(tmp: Path) -> int:
    segments = len(list(tmp.rglob("*.mp4")))
    shutil.rmtree(tmp)
    tmp.mkdir()
    return segments


async def _window(kind: str, urls: list[str], tmp: Path, seconds: float) -> dict[str, Any]:
    procs = [await _start(kind, u, tmp / f"{kind}-{i}") for i, u in enumerate(urls)]
    try:
        await asyncio.sleep(WARM_UP_S)
        c0, t0 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
    finally:
        for p in procs:
            await stop_process(p)
    segments = await asyncio.to_thread(_count_and_clear, tmp)
    if segments < len(urls):
        raise RuntimeError(f"{kind} recorded {segments} segments for {len(urls)} cameras")
    return {"cpu_ms_per_s": round((c1 - c0) / (t1 - t0) * 1000, 2), "segments": segments}


async def measure(cameras: list[int], rounds: int, seconds: float) -> list[dict[str, Any]]:
    out = []
    for n in cameras:
        sim, cams = await start_sim(n, CAMERA_KBIT)
        urls = [str(c["rtsp_main"]) for c in cams[:n]]
        tmp = Path(tempfile.mkdtemp(prefix="camhub-reader-floor-"))
        runs: dict[str, list[float]] = {k: [] for k in KINDS}
        try:
            for _ in range(rounds):
                for kind in KINDS:
                    runs[kind].append((await _window(kind, urls, tmp, seconds))["cpu_ms_per_s"])
        finally:
            await stop_process(sim)
            shutil.rmtree(tmp, ignore_errors=True)
        ratios = {
            k: [round(v / f, 2) for v, f in zip(runs[k], runs["ffmpeg"], strict=True)] for k in KINDS[1:]
        }
        out.append(
            {
                "cameras": n,
                "cpu_ms_per_s": runs,
                "ratio_to_ffmpeg": ratios,
                "median_ratio": {k: round(statistics.median(v), 2) for k, v in ratios.items()},
            }
        )
    return out


def table(result: dict[str, Any]) -> str:
    rows = ["cams | kind | CPU ms/s per round | / ffmpeg per round | median", "---: | --- | --- | --- | ---:"]
    for r in result["runs"]:
        for kind in KINDS:
            cpu = ", ".join(f"{x:.2f}" for x in r["cpu_ms_per_s"][kind])
            ratio = r["ratio_to_ffmpeg"].get(kind)
            rows.append(
                f"{r['cameras']} | {kind} | {cpu} | "
                + (", ".join(f"x{x}" for x in ratio) if ratio else "")
                + (f" | x{r['median_ratio'][kind]}" if ratio else " | ")
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reader_floor", description=__doc__.splitlines()[0])
    p.add_argument("--cameras", default="1,8", help="comma-separated camera counts (default 1,8)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=16.0, help="measured window per kind and round")
    args = p.parse_args(argv)
    cameras = [int(x) for x in args.cameras.split(",") if x.strip()]
    runs = asyncio.run(measure(cameras, args.rounds, args.seconds))
    result = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "camera_kbit": CAMERA_KBIT,
        "runs": runs,
    }
    result["summary"] = "; ".join(
        f"{r['cameras']} cam: " + ", ".join(f"{k} x{v}" for k, v in r["median_ratio"].items()) for r in runs
    )
    (results_dir() / "reader_floor.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
