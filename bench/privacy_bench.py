"""Privacy masks (issue 19): what re-encoding what leaves costs.

Two figures, each with a reference from the same run:

- **Clip redaction** (`hub.egress.privacy.redact_clip_sync`, what every masked delivery runs):
  a 1080p15 clip (a textured picture with motion, GOP 1 s, like a camera's) decoded, painted with two
  masks and re-encoded by libx264 (the hub's preset, `ultrafast`, crf 20) with `threads=1`, the
  process pinned to one core (`sched_setaffinity`). Figure: clip seconds per CPU second of that core
  (× realtime; CPU time, not wall time, because other work shares this machine's cores — the wall
  figure is reported beside it). Reference: the stock `ffmpeg` doing the same job (`drawbox` fills,
  same preset and crf, `-threads 1`, `taskset` to the same core; its CPU time from
  `RUSAGE_CHILDREN`), so the ratio shows what PyAV and numpy painting add. Target ≥ 4× realtime.
- **Live redaction** (`privacy.RedactingTrack` + aiortc's own H.264 encoder, what an agency's masked
  livestream runs): a 720p15 stream fed at its real pace (packets of a pre-encoded clip, one every
  1/15 s), decoded, painted, encoded; CPU (user + system of this process) over the wall time, as %
  of one core. Reference in the same run: the same loop without masks as the hub sends it today
  (aiortc only packetizes the camera's packets), so the difference is the cost of masking live.
  Target ≤ 60 % of a core.

Run: `.venv/bin/python -m bench.privacy_bench [--smoke]`. Prints a table, writes
`bench/results/privacy.json`. Bounded: ~20 s on an idle machine, ~35 s under load (smoke: 360p, ~10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from bench import results_dir, spread

RESULTS = results_dir() / "privacy.json"
TARGET_CLIP_X = 4.0
TARGET_LIVE_PCT = 60.0
MASKS = (
    ((0.05, 0.05), (0.35, 0.05), (0.35, 0.45), (0.05, 0.45)),  # a neighbour's window
    ((0.6, 0.55), (0.98, 0.98), (0.6, 0.98)),  # the street
)


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 15) -> Path:
    """A camera-like clip: a textured, slowly panning scene and a moving block, GOP 1 s, no B-frames."""
    rng = np.random.default_rng(19)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8), (0, 0), 3)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"g": str(fps), "bf": "0", "preset": "ultrafast", "crf": "20"}
        for i in range(round(seconds * fps)):
            img = np.ascontiguousarray(texture[:, i * 2 : i * 2 + width])
            x = (i * width // 60) % (width - width // 8)
            img[height // 3 : height // 3 + height // 6, x : x + width // 8] = (40, 160, 220)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def clip_redaction(src: Path, work: Path, seconds: float, core: int) -> dict[str, Any]:
    from hub.egress.privacy import DEFAULT_CRF, DEFAULT_PRESET, redact_clip_sync

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        c0, t0 = cpu_now(), time.perf_counter()
        red = redact_clip_sync(src, work / "redacted.mp4", MASKS, threads=1)
        ours, ours_cpu = time.perf_counter() - t0, cpu_now() - c0
    finally:
        os.sched_setaffinity(0, before)
    with av.open(str(src)) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    boxes = []
    for poly in MASKS:  # ffmpeg draws boxes: each polygon's bounding box (same order of area)
        xs, ys = [round(x * w) for x, _ in poly], [round(y * h) for _, y in poly]
        boxes.append(
            f"drawbox=x={min(xs)}:y={min(ys)}:w={max(xs) - min(xs)}:h={max(ys) - min(ys)}:color=black:t=fill"
        )
    cmd = [
        "taskset", "-c", str(core), "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
        "-i", str(src), "-vf", ",".join(boxes), "-c:v", "libx264", "-preset", DEFAULT_PRESET, "-crf", str(DEFAULT_CRF),
        "-threads", "1", "-an", str(work / "ffmpeg.mp4"),
    ]  # fmt: skip
    c0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, timeout=120)
    ref, ref_cpu = time.perf_counter() - t0, children_cpu() - c0
    return {
        "frames": red.frames,
        "camhub_cpu_s": round(ours_cpu, 3),
        "camhub_wall_s": round(ours, 3),
        "ffmpeg_cpu_s": round(ref_cpu, 3),
        "ffmpeg_wall_s": round(ref, 3),
        "x_realtime": round(seconds / ours_cpu, 2),
        "x_realtime_wall": round(seconds / ours, 2),
        "ffmpeg_x_realtime": round(seconds / ref_cpu, 2),
    }


class _Packets:
    """An encoded track that replays a clip's packets at their real pace (a camera's relay)."""

    kind = "video"
    readyState = "live"

    def __init__(self, packets: list[bytes], fps: int) -> None:
        self.packets = packets
        self.fps = fps
        self.i = 0
        self.start = time.monotonic()

    def on(self, *_: Any) -> None:
        pass

    def stop(self) -> None:
        self.readyState = "ended"

    async def recv(self) -> av.Packet:
        due = self.start + self.i / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        data = self.packets[self.i % len(self.packets)]
        self.i += 1
        p = av.Packet(data)
        p.pts = p.dts = self.i * 90_000 // self.fps
        p.time_base = Fraction(1, 90_000)
        return p


def annexb_packets(src: Path) -> list[bytes]:
    out = []
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        bsf = av.BitStreamFilterContext("h264_mp4toannexb", s)
        for pkt in c.demux(s):
            for q in bsf.filter(pkt):
                if q.size:
                    out.append(bytes(q))
    return out


async def live_cpu(packets: list[bytes], seconds: float, masked: bool, fps: int = 15) -> float:
    from aiortc.codecs.h264 import H264Encoder

    from hub.egress.privacy import RedactingTrack

    source = _Packets(packets, fps)
    encoder = H264Encoder()
    loop = asyncio.get_running_loop()
    track: Any = RedactingTrack(source, lambda: MASKS) if masked else source  # type: ignore[arg-type]
    c0, t0 = cpu_now(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        item = await track.recv()
        if masked:
            # What RTCRtpSender does with a frame: encode in the default executor.
            await loop.run_in_executor(None, encoder.encode, item, False)
        else:
            encoder.pack(item)  # the relay path: packetize only
    pct = 100 * (cpu_now() - c0) / (time.monotonic() - t0)
    track.stop()
    return pct


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.privacy_bench")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    clip_w, clip_h, clip_s = (640, 360, 2.0) if args.smoke else (1920, 1080, 4.0)
    live_w, live_h, live_s = (640, 360, 2.0) if args.smoke else (1280, 720, 4.0)
    rounds = 1 if args.smoke else 2
    core = sorted(os.sched_getaffinity(0))[-1]
    with tempfile.TemporaryDirectory(prefix="camhub-privacy-bench-") as tmp:
        work = Path(tmp)
        src = make_clip(work / "clip.mp4", clip_w, clip_h, clip_s)
        clips = [clip_redaction(src, work, clip_s, core) for _ in range(rounds)]
        live_src = make_clip(work / "live.mp4", live_w, live_h, 2.0)
        packets = annexb_packets(live_src)
        masked, relayed = [], []
        for _ in range(rounds):  # alternated, medians reported
            masked.append(asyncio.run(live_cpu(packets, live_s, True)))
            relayed.append(asyncio.run(live_cpu(packets, live_s / 2, False)))
    x = spread([c["x_realtime"] for c in clips])
    x_wall = spread([c["x_realtime_wall"] for c in clips])
    ref_x = spread([c["ffmpeg_x_realtime"] for c in clips])
    live = spread(masked, 1)
    ref_live = spread(relayed, 1)
    meets = float(x["median"]) >= TARGET_CLIP_X and float(live["median"]) <= TARGET_LIVE_PCT  # type: ignore[arg-type]
    result = {
        "clip": {"size": f"{clip_w}x{clip_h}", "fps": 15, "seconds": clip_s, "runs": clips},
        "x_realtime": x,
        "x_realtime_wall": x_wall,
        "reference_ffmpeg_x_realtime": ref_x,
        "ratio_camhub_over_ffmpeg": round(float(x["median"]) / float(ref_x["median"]), 2),  # type: ignore[arg-type]
        "live": {"size": f"{live_w}x{live_h}", "fps": 15, "seconds_per_run": live_s},
        "live_masked_cpu_pct": live,
        "reference_relay_cpu_pct": ref_live,
        "target": f"clip ≥ {TARGET_CLIP_X:g}× realtime on one core, live ≤ {TARGET_LIVE_PCT:g} % of a core",
        "meets_target": meets,
        "smoke": args.smoke,
    }
    result["summary"] = (
        f"clip {clip_w}x{clip_h}: {x['median']}× realtime on one core (wall {x_wall['median']}×, ffmpeg {ref_x['median']}×); "
        f"live {live_w}x{live_h}@15 masked: {live['median']} % of a core (relay unmasked {ref_live['median']} %)"
    )
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("clip redaction (camhub, CPU)", f"{x['median']}× realtime", f"min {x['min']} max {x['max']}"),
        (
            "clip redaction (camhub, wall)",
            f"{x_wall['median']}× realtime",
            f"min {x_wall['min']} max {x_wall['max']}",
        ),
        (
            "clip redaction (ffmpeg ref, CPU)",
            f"{ref_x['median']}× realtime",
            f"min {ref_x['min']} max {ref_x['max']}",
        ),
        (
            "live masked (decode+paint+encode)",
            f"{live['median']} % core",
            f"min {live['min']} max {live['max']}",
        ),
        (
            "live unmasked relay (ref)",
            f"{ref_live['median']} % core",
            f"min {ref_live['min']} max {ref_live['max']}",
        ),
    ]
    print(f"{'measure':36} {'median':>18} {'spread':>24}")
    for name, med, sp in rows:
        print(f"{name:36} {med:>18} {sp:>24}")
    print(f"target: {result['target']} -> {'pass' if meets else 'FAIL'}")
    print(json.dumps({k: result[k] for k in ("x_realtime", "live_masked_cpu_pct", "meets_target")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
