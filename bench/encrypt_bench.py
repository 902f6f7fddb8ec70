"""Encryption at rest: what `[storage] encrypt = true` costs, against the same work with it off.

Two measurements, each with encryption off (the reference) and on, in the same run, interleaved:

- **Recording**: the hub's `Segmenter` (the recorder's worker: stream-copy mux to fragmented MP4,
  fsync, sha256, SQLite index) fed a 1080p15 H.264 stream (GOP 2 s, ~4 Mbit/s, from ffmpeg's
  `testsrc2`; 320x240 under ``--smoke``) as fast as it takes it, into 4 s segments. Reported: CPU
  seconds (process user+system, every thread) per camera-second of video, plain vs sealed, and the
  ratio. This is the figure that says how many cameras a box can still record.
- **Primitive**: `SealedWriter` sealing 512 KiB writes (about one 2 s GOP at 2 Mbit/s) and
  `read_records` opening them, in MB/s of plaintext per CPU-second (no disk), next to the reference
  the hub already pays on every segment: sha256 over the same bytes.

CPU time is `time.process_time()` (all threads of this process). The machine is shared, so each
figure is the median of 5 interleaved repetitions; read the ratios, not the absolutes.

Run: ``.venv/bin/python -m bench.encrypt_bench [--smoke]``. Prints a table and writes
``bench/results/encrypt.json`` (one-line "summary"). Wall time ~30 s (~5 s with ``--smoke``); give it 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import results_dir
from hub.ingest.rtsp import FileSource
from hub.ingest.source import MediaPacket
from hub.record.sealed import AtRest, SealedWriter, StorageKey, read_records
from hub.record.segmenter import Segmenter
from hub.store import Store

RESULTS = results_dir() / "encrypt.json"
FPS = 15
SEGMENT_S = 4.0
REPS = 5
CHUNK = 512 * 1024


def make_stream(path: Path, *, seconds: float, width: int, height: int) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={width}x{height}:rate={FPS}", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0",
            "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
            "-b:v", "4M" if width >= 1280 else "500k", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


async def read_packets(path: Path, count: int) -> list[MediaPacket]:
    src = FileSource("bench", path, realtime=False, loop_input=True)
    await src.open()
    out: list[MediaPacket] = []
    try:
        async for pkt in src.packets():
            out.append(pkt)
            if len(out) >= count:
                break
    finally:
        await src.close()
    t0, base = 1_800_000_000.0, out[0].dts
    return [dataclasses.replace(p, arrival=t0 + float((p.dts - base) * p.time_base)) for p in out]


async def record_once(work: Path, packets: list[MediaPacket], at_rest: AtRest | None) -> tuple[float, int]:
    """CPU seconds to record `packets` (every thread of the process), and bytes on disk."""
    store = await Store.open(work / "camhub.sqlite")
    try:
        seg = Segmenter("bench", work / "segments", store, segment_s=SEGMENT_S, at_rest=at_rest)

        def feed() -> float:
            start = time.process_time()
            for p in packets:
                assert p.params is not None
                seg.write(p, p.params)
            seg.finish()
            return time.process_time() - start

        cpu = await asyncio.to_thread(feed)
    finally:
        await store.close()
    size = sum(f.stat().st_size for f in (work / "segments").rglob("*.mp4"))
    return cpu, size


def primitive_once(work: Path, total: int, key: StorageKey) -> dict[str, float]:
    """MB of plaintext per CPU-second: seal (SealedWriter into /dev/null: the crypto and the write
    calls, no disk), open (read_records from memory), and the reference: the sha256 the hub computes
    over every segment anyway, on the same bytes."""
    data = os.urandom(CHUNK)
    n = total // CHUNK
    mb = n * CHUNK / 1e6
    start = time.process_time()
    with SealedWriter(Path(os.devnull), key) as w:
        for _ in range(n):
            w.write(data)
    seal = time.process_time() - start
    sealed_file = work / "sealed.bin"  # untimed: the bytes to open
    with SealedWriter(sealed_file, key) as w:
        for _ in range(n):
            w.write(data)
    buf = io.BytesIO(sealed_file.read_bytes())
    sealed_file.unlink()
    buf.seek(0)
    start = time.process_time()
    opened = sum(len(r) for r in read_records(buf, key))
    open_s = time.process_time() - start
    assert opened == n * CHUNK
    start = time.process_time()
    digest = hashlib.sha256()
    for _ in range(n):
        digest.update(data)
    sha = time.process_time() - start
    return {k: mb / max(v, 1e-6) for k, v in (("seal", seal), ("open", open_s), ("sha256", sha))}


async def run(smoke: bool) -> dict[str, object]:
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed to make the test stream")
    width, height, clip_s, video_s = (320, 240, 4.0, 16.0) if smoke else (1920, 1080, 8.0, 120.0)
    total = (16 if smoke else 256) * 1024 * 1024
    sealed = AtRest(StorageKey.generate(), seal=True)
    with tempfile.TemporaryDirectory(prefix="camhub-encrypt-bench-") as tmp:
        root = Path(tmp)
        src = await asyncio.to_thread(
            make_stream, root / "src.mp4", seconds=clip_s, width=width, height=height
        )
        packets = await read_packets(src, round(video_s * FPS))
        rec: dict[str, list[float]] = {"plain": [], "sealed": []}
        sizes: dict[str, int] = {}
        prim: list[dict[str, float]] = []
        for rep in range(REPS):
            for name, at_rest in (
                (("plain", None), ("sealed", sealed))
                if rep % 2 == 0
                else (
                    ("sealed", sealed),
                    ("plain", None),
                )
            ):
                work = root / f"{name}-{rep}"
                work.mkdir()
                cpu, size = await record_once(work, packets, at_rest)
                rec[name].append(cpu / video_s)
                sizes[name] = size
                shutil.rmtree(work)
            assert sealed.key is not None
            prim.append(await asyncio.to_thread(primitive_once, root, total, sealed.key))
    cpu_plain, cpu_sealed = statistics.median(rec["plain"]), statistics.median(rec["sealed"])
    w_sealed, r_sealed, sha_mb = (statistics.median(p[k] for p in prim) for k in ("seal", "open", "sha256"))
    ratio = cpu_sealed / cpu_plain if cpu_plain > 0 else float("nan")
    bitrate = sizes["plain"] * 8 / video_s / 1e6
    summary = (
        f"encryption at rest: recording {width}x{height}@{FPS} ({bitrate:.1f} Mbit/s) costs "
        f"{cpu_sealed * 1000:.1f} ms CPU per camera-second sealed vs {cpu_plain * 1000:.1f} plain "
        f"(x{ratio:.2f}); seal {w_sealed:.0f} MB/s, open {r_sealed:.0f} MB/s per CPU-second "
        f"(sha256 {sha_mb:.0f}); "
        f"+{(sizes['sealed'] / sizes['plain'] - 1) * 100:.2f}% on disk"
    )
    return {
        "scenario": "encrypt",
        "summary": summary,
        "smoke": smoke,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "stream": {
            "width": width,
            "height": height,
            "fps": FPS,
            "gop_s": 2,
            "video_s": video_s,
            "mbit_s": round(bitrate, 2),
        },
        "recording_cpu_s_per_camera_s": {
            "plain": round(cpu_plain, 5),
            "sealed": round(cpu_sealed, 5),
            "ratio": round(ratio, 3),
            "samples": {k: [round(x, 5) for x in v] for k, v in rec.items()},
        },
        "bytes_on_disk": sizes,
        "primitive_mb_per_cpu_s": {
            "chunk_bytes": CHUNK,
            "seal": round(w_sealed),
            "open": round(r_sealed),
            "sha256_reference": round(sha_mb),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(run(args.smoke))
    result["wall_s"] = round(time.monotonic() - started, 1)
    rec = result["recording_cpu_s_per_camera_s"]
    prim = result["primitive_mb_per_cpu_s"]
    assert isinstance(rec, dict) and isinstance(prim, dict)
    print(f"{'':28}{'plain':>10}{'sealed':>10}")
    print(f"{'CPU s per camera-second':28}{rec['plain']:>10.4f}{rec['sealed']:>10.4f}  x{rec['ratio']}")
    print(f"MB/s per CPU-second: seal {prim['seal']}, open {prim['open']}, sha256 {prim['sha256_reference']}")
    print(result["summary"])
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
