"""Motion detection cost: added CPU per camera for a 640x360 15 fps sub-stream.

For each N (1 and 4; 1 with ``--smoke``) this starts ``camhub-sim`` with N cameras in its own
process and, in this process, one `MotionRunner` per camera on the sub-stream over RTSP/TCP: every
frame is decoded (H.264 needs it) and 5 fps are analysed. In the same run, as the reference, one
``ffmpeg -rtsp_transport tcp -i SUB -f null -`` per camera decodes the same streams and does nothing
else. Each camera gets a scripted visitor at the start of every window so the detector sees real
motion. CPU is user+system time of all threads (this process: `time.process_time`; ffmpeg: every
thread's /proc/PID/task/TID/schedstat, ns), over the same windows: both sides run at once and are
read over consecutive windows (WINDOWS: 4 of 5 s at 1 camera, 3 of 3 s at 4; 2 of 1.5 s with
``--smoke``), as record_bench does, so a burst of other work on the shared machine lands on both
alike; each side's figure is the median window, and the ratio hub/ffmpeg is the median of the per-window ratios, with min/max. A
micro-benchmark of the detector alone (no decoding) on 640x360 frames is reported too.

Target: <= 10% of one core per camera. Run: ``.venv/bin/python -m bench.motion_bench [--smoke]``.
Prints a table and writes ``bench/results/motion.json``.
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

import aiohttp
import numpy as np

from bench import results_dir, spread
from hub.events.motion import MotionConfig, MotionDetector, MotionRunner, Transition

RESULTS = results_dir() / "motion.json"
TARGET_CORE_FRACTION = 0.10
# Per camera count: (number, seconds) of consecutive measuring windows; figures are their medians.
# At 1 camera a side uses 1-2% of a core: 3 windows of 3 s (before 2026-12-06) held ~35 ms of ffmpeg
# CPU each, and the 1-camera ratio of unchanged code ranged x1.03-2.09 between runs. 4 cameras use
# 4x the CPU in the same time; the whole of `make bench` has 10 minutes (bench/__main__.py).
WINDOWS = {1: (4, 5.0), 4: (3, 3.0)}
# The sim's frame stamp (top) and clock overlay (bottom) change every frame; owners mask overlays.
OVERLAY_MASKS = (
    ((0.0, 0.0), (1.0, 0.0), (1.0, 0.08), (0.0, 0.08)),
    ((0.0, 0.88), (1.0, 0.88), (1.0, 1.0), (0.0, 1.0)),
)


def proc_cpu_seconds(pid: int) -> float:
    """Every live thread's CPU time in ns (schedstat); /proc/PID/stat's 10 ms ticks are too coarse
    for one ffmpeg decoding 360p over a few seconds."""
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


async def start_sim(n: int) -> tuple[asyncio.subprocess.Process, list[dict[str, object]]]:
    # The main stream is not read here: keep it small so the sim starts fast.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firmware_sim.cli", "--cameras", str(n), "--rtsp-port", "0",
        "--control-port", "0", "--no-mdns", "--width", "640", "--height", "360", "--fps", "15",
        "--gop", "30",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    cameras = []
    async with asyncio.timeout(120):
        while (line := (await proc.stdout.readline()).decode().strip()) != "ready":
            if not line:
                raise RuntimeError(f"camhub-sim exited with {await proc.wait()}")
            cameras.append(json.loads(line))
    return proc, cameras


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def measure(n: int, warmup_s: float, window_s: float, windows: int) -> dict[str, object]:
    sim, cameras = await start_sim(n)
    runners: list[MotionRunner] = []
    refs: list[asyncio.subprocess.Process] = []
    transitions: list[Transition] = []
    try:
        config = MotionConfig(masks=OVERLAY_MASKS)
        for cam in cameras:
            runner = MotionRunner(str(cam["camera"]), str(cam["rtsp_sub"]), config, transitions.append)
            await runner.start()
            runners.append(runner)
        if shutil.which("ffmpeg"):
            for cam in cameras:
                cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-rtsp_transport", "tcp"]
                cmd += ["-i", str(cam["rtsp_sub"]), "-f", "null", "-"]
                refs.append(
                    await asyncio.create_subprocess_exec(
                        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                    )
                )
        # Wait until every runner is analysing, then let things settle.
        async with asyncio.timeout(60):
            while True:
                if all(r.frames_analysed > 0 for r in runners):
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(warmup_s)
        decoded0 = sum(r.frames_decoded for r in runners)
        analysed0 = sum(r.frames_analysed for r in runners)
        hub_w: list[float] = []
        ref_w: list[float] = []
        wall = 0.0
        async with aiohttp.ClientSession() as http:
            for _ in range(windows):
                # A visitor walks up at the start of every window (the sim's clip lasts 6 s, about
                # a window), so each window has motion, not only the first: the detector's busy
                # path, the conservative case. Posted before the window's CPU is read.
                for cam in cameras:
                    async with http.post(f"{cam['control']}/visitor") as resp:
                        resp.raise_for_status()
                ref0 = [proc_cpu_seconds(p.pid) for p in refs]
                cpu0, t0 = time.process_time(), time.monotonic()
                await asyncio.sleep(window_s / windows)
                cpu1, t1 = time.process_time(), time.monotonic()
                ref1 = [proc_cpu_seconds(p.pid) for p in refs if p.returncode is None]
                wall += t1 - t0
                hub_w.append((cpu1 - cpu0) / (t1 - t0) / n)
                if refs and len(ref1) == len(refs):
                    ref_w.append((sum(ref1) - sum(ref0)) / (t1 - t0) / n)
        decoded = sum(r.frames_decoded for r in runners) - decoded0
        analysed = sum(r.frames_analysed for r in runners) - analysed0
        hub_core = statistics.median(hub_w)
        ref_core = statistics.median(ref_w) if len(ref_w) == windows else None
        ratios = [h / r for h, r in zip(hub_w, ref_w, strict=False) if r > 0] if ref_core else []
        return {
            "cameras": n,
            "window_s": round(wall, 2),
            "windows": windows,
            "hub_core_per_camera": round(hub_core, 4),
            "hub_core_per_camera_windows": spread(hub_w, 4),
            "ffmpeg_decode_core_per_camera": None if ref_core is None else round(ref_core, 4),
            "ffmpeg_decode_core_per_camera_windows": spread(ref_w, 4) if ref_core is not None else None,
            "ratio_hub_over_ffmpeg_decode": round(statistics.median(ratios), 2) if ratios else None,
            "ratio_windows": spread(ratios) if ratios else None,
            "decoded_fps_per_camera": round(decoded / wall / n, 1),
            "analysed_fps_per_camera": round(analysed / wall / n, 1),
            "motion_events_started": sum(1 for t in transitions if t.kind == "start"),
        }
    finally:
        for runner in runners:
            await runner.stop()
        for ref in refs:
            await stop_process(ref)
        await stop_process(sim)


def detector_only(frames: int) -> dict[str, object]:
    """Per-frame CPU of `MotionDetector.score` on 640x360 BGR frames with a moving box."""
    rng = np.random.default_rng(1)
    base = rng.integers(40, 200, (360, 640, 3), dtype=np.uint8)
    images = []
    for i in range(30):
        img = base.copy()
        x = 20 * i
        img[100:280, x : x + 70] = (200, 180, 220)
        images.append(img)
    detector = MotionDetector(MotionConfig(masks=OVERLAY_MASKS))
    detector.score(images[0])
    cpu0 = time.process_time()
    for i in range(frames):
        detector.score(images[i % len(images)])
    per_frame = (time.process_time() - cpu0) / frames
    return {
        "frames": frames,
        "cpu_ms_per_frame": round(per_frame * 1000, 3),
        "core_at_5fps": round(per_frame * 5, 4),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    counts = [1] if args.smoke else [1, 4]
    runs = []
    for n in counts:
        windows, each_s = (2, 1.5) if args.smoke else WINDOWS[n]
        runs.append(await measure(n, 1.0 if args.smoke else 2.0, windows * each_s, windows))
    return {
        "bench": "motion",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "smoke": args.smoke,
        "stream": "640x360 H.264 15 fps sub-stream over RTSP/TCP, analysed at 5 fps",
        "reference": "ffmpeg -f null decode of the same sub-stream per camera (motion off: decoding only), "
        "running at the same time and read over the same windows",
        "target_core_per_camera": TARGET_CORE_FRACTION,
        "runs": runs,
        "detector_only": detector_only(100 if args.smoke else 500),
    }


def table(result: dict[str, object]) -> str:
    lines = [
        "| cameras | hub % core/camera | ffmpeg decode % core/camera | hub/ffmpeg | decoded fps | analysed fps |",
        "|---|---|---|---|---|---|",
    ]
    runs = result["runs"]
    assert isinstance(runs, list)
    for r in runs:
        ref = r["ffmpeg_decode_core_per_camera"]
        lines.append(
            f"| {r['cameras']} | {r['hub_core_per_camera'] * 100:.1f} | "
            f"{'n/a' if ref is None else f'{ref * 100:.1f}'} | {r['ratio_hub_over_ffmpeg_decode'] or 'n/a'} | "
            f"{r['decoded_fps_per_camera']} | {r['analysed_fps_per_camera']} |"
        )
    d = result["detector_only"]
    assert isinstance(d, dict)
    lines.append(
        f"\nDetector alone: {d['cpu_ms_per_frame']} ms CPU per 640x360 frame = "
        f"{d['core_at_5fps'] * 100:.1f}% of a core at 5 fps. Target: <= {TARGET_CORE_FRACTION:.0%} per camera."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.motion_bench")
    parser.add_argument("--smoke", action="store_true", help="1 camera, a 3 s window (CI)")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    worst = max(r["hub_core_per_camera"] for r in result["runs"])  # type: ignore[union-attr]
    ratios = ", ".join(
        f"{r['cameras']} cam x{r['ratio_hub_over_ffmpeg_decode']} ({r['ratio_windows']['min']}-{r['ratio_windows']['max']})"
        for r in result["runs"]  # type: ignore[union-attr]
        if r["ratio_windows"]
    )
    result["summary"] = (
        f"motion: {worst * 100:.1f}% of a core per camera at worst (median of windows); "
        f"vs ffmpeg decode only: {ratios or 'n/a'}"
    )
    result["target"] = f"<= {TARGET_CORE_FRACTION:.0%} of a core per camera"
    result["meets_target"] = worst <= TARGET_CORE_FRACTION
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
