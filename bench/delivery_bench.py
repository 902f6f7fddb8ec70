"""Delivery build throughput and memory (PROTOCOL §2.3, issue 5 benchmark).

`python -m bench.delivery_bench [--smoke] [--minutes 30] [--mbps 4]`

Builds one delivery from a dummy clip the size of `--minutes` of video at `--mbps` (default: a
30-minute 1080p doorbell stream at 4 Mbit/s, ~900 MB) in a child process, and reports
- throughput as × realtime (clip duration / build time) — target ≥ 50×;
- peak RSS growth of the building process over its baseline after setup, plus the whole peak RSS
  of its encryption worker process — target < 64 MiB;
- its wall time over the reference's (median of the rounds' ratios) — target <= 2x (issue 17);
against the reference pipeline `tar -cf - clip | age -r <recipient>` (GNU tar + the stock age CLI)
on the same file. The two alternate, camhub then reference, 3 times (2 with --smoke) on the same
clip; reported are the median of each side, the median of the per-round ratios (camhub time /
reference time, and camhub CPU / tar+age CPU) with min/max, and the worst RSS growth of any round
(the target is about a peak). camhub's time includes the fsync of the delivery; the reference's
does not (stock `age` does not fsync).
Prints a table and writes bench/results/delivery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import results_dir, spread

RESULTS = results_dir()
TARGET_X_REALTIME = 50.0
TARGET_RSS_MIB = 64.0
# Issue 17: the build within 2x the wall time of `tar | age` on the same clip (median of the
# alternated rounds' ratios). `make sysdeps` installs age; without it the ratio is unknown: not met.
TARGET_TIME_RATIO = 2.0
ROUNDS = 3


def make_clip(path: Path, size: int) -> None:
    """Incompressible bytes without paying for `size` bytes of randomness: one random MiB, repeated."""
    block = os.urandom(1024 * 1024)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def child(clip: Path, out: Path) -> None:
    """Runs in its own process so its peak RSS is the delivery build's alone."""
    import asyncio

    from pyrage import x25519

    from camhub_protocol import delivery
    from camhub_protocol.keys import HubKey
    from hub.consent.audit import AuditLog
    from hub.store import Store

    work = out.parent
    (work / "keys").mkdir(exist_ok=True)
    key = HubKey.load_or_create(work / "keys")[0]

    async def proof() -> dict[str, object]:
        store = await Store.open(work / "hub.db")
        try:
            log = await AuditLog.open(store, key)
            seq, _ = await log.append("egress.delivery", "agency:bench", {"request_id": "bench"})
            return await log.proof_bundle(seq)
        finally:
            await store.close()

    bundle = asyncio.run(proof())
    recipient = str(x25519.Identity.generate().to_public())
    fields = {
        "request_id": "bench",
        "request_sha256": "00" * 32,
        "approval_id": "bench",
        "camera": "front-door",
        "start": "2026-11-20T18:00:00Z",
        "end": "2026-11-20T18:30:00Z",
        "audio": False,
        "segments": [],
    }
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The age encryption runs in a child process (delivery.encrypt_command): its CPU counts.
    started, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    built = delivery.build_delivery(
        clips={"clip-front-door.mp4": clip},
        manifest_fields=fields,
        audit_proof=bundle,
        hub_key=key,
        recipient=recipient,
        out_path=out,
    )
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0 + children_cpu() - child0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "baseline_kib": baseline,
                "peak_kib": peak,
                "bytes": built.bytes,
            }
        )
    )


def worker_peak_kib(clip: Path) -> int:
    """Peak RSS of the encryption worker on `clip`, sampled from /proc (VmHWM, its own address space).

    Not getrusage: a forked child's ru_maxrss counts its parent's pages from before the exec.
    """
    from pyrage import x25519

    from camhub_protocol import delivery

    recipient = str(x25519.Identity.generate().to_public())
    hwm = 0
    with clip.open("rb") as src:
        proc = subprocess.Popen(
            delivery.encrypt_command(recipient),
            stdin=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                break
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
            time.sleep(0.005)
        proc.wait(timeout=300)
    return hwm


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reference(clip: Path, out: Path) -> tuple[float, float] | None:
    """`tar -cf - clip | age -r R > out`: the same job with stock tools; (wall, CPU of tar + age)."""
    tar, age, keygen = shutil.which("tar"), shutil.which("age"), shutil.which("age-keygen")
    if not (tar and age and keygen):
        return None
    ident = subprocess.run([keygen], capture_output=True, text=True, check=True).stdout
    recipient = next(line.split(": ", 1)[1] for line in ident.splitlines() if line.startswith("# public key"))
    # Started after the key is made, as camhub's build is timed after its setup.
    started, cpu0 = time.perf_counter(), children_cpu()
    with out.open("wb") as f:
        p1 = subprocess.Popen([tar, "-cf", "-", "-C", str(clip.parent), clip.name], stdout=subprocess.PIPE)
        p2 = subprocess.run([age, "-r", recipient], stdin=p1.stdout, stdout=f, check=True)
        assert p1.stdout is not None
        p1.stdout.close()
        p1.wait()
    _ = p2
    return time.perf_counter() - started, children_cpu() - cpu0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_bench")
    parser.add_argument("--smoke", action="store_true", help="a 1-minute clip, a few seconds in all")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--mbps", type=float, default=4.0, help="clip bitrate, Mbit/s")
    parser.add_argument("--child", nargs=2, metavar=("CLIP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0
    minutes = 1.0 if args.smoke else args.minutes
    size = int(minutes * 60 * args.mbps * 1e6 / 8)
    rounds = 2 if args.smoke else ROUNDS
    runs: list[dict[str, float]] = []
    ref_runs: list[float] = []
    ref_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="camhub-delivery-bench-") as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(clip, size)
        for r in range(rounds):  # A/B alternate on the same (page-cached) clip
            out = work / f"out{r}"
            out.mkdir()
            proc = subprocess.run(
                [sys.executable, "-m", "bench.delivery_bench", "--child", str(clip), str(out / "out.age")],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            shutil.rmtree(out)
            ref = reference(clip, work / "ref.age")
            (work / "ref.age").unlink(missing_ok=True)
            if ref is not None:
                ref_runs.append(ref[0])
                ref_cpu.append(ref[1])
        worker_kib = worker_peak_kib(clip)
    build = [f["seconds"] for f in runs]
    # The build's memory is the hub process's growth plus the whole encryption worker (a process of
    # its own, so all of its RSS is the build's).
    growth = [(f["peak_kib"] - f["baseline_kib"] + worker_kib) / 1024 for f in runs]
    seconds = statistics.median(build)
    ref_seconds = statistics.median(ref_runs) if ref_runs else None
    x_realtime = minutes * 60 / seconds
    rss_growth_mib = max(growth)  # the target bounds the peak: the worst round counts
    figures = max(runs, key=lambda f: f["peak_kib"] - f["baseline_kib"])
    ratios = [b / ref for b, ref in zip(build, ref_runs, strict=True)] if ref_runs else []
    # CPU seconds too: on a shared machine wall time is mostly who else runs; the reference is two
    # processes (tar, age) that overlap on 2 cores, as camhub's build does (tar and hashes in the hub,
    # age encryption in its worker process).
    build_cpu = [f["cpu_seconds"] for f in runs]
    cpu_ratios = [b / ref for b, ref in zip(build_cpu, ref_cpu, strict=True) if ref > 0] if ref_cpu else []
    result = {
        "clip_minutes": minutes,
        "clip_mbps": args.mbps,
        "clip_bytes": size,
        "rounds": rounds,
        "build_seconds": round(seconds, 3),
        "build_seconds_rounds": spread(build, 3),
        "x_realtime": round(x_realtime, 1),
        "x_realtime_rounds": spread([minutes * 60 / b for b in build], 1),
        "mib_per_s": round(size / seconds / 2**20, 1),
        "rss_baseline_mib": round(figures["baseline_kib"] / 1024, 1),
        "rss_peak_mib": round(figures["peak_kib"] / 1024, 1),
        "rss_growth_mib": round(rss_growth_mib, 1),
        "worker_peak_mib": round(worker_kib / 1024, 1),
        "rss_growth_mib_rounds": spread(growth, 1),
        "reference": "tar -cf - clip | age -r R (GNU tar + age CLI), alternated with camhub's build",
        "reference_tar_age_seconds": None if ref_seconds is None else round(ref_seconds, 3),
        "reference_tar_age_seconds_rounds": spread(ref_runs, 3) if ref_runs else None,
        "ratio_camhub_over_reference": spread(ratios) if ratios else None,
        "build_cpu_seconds_rounds": spread(build_cpu, 3),
        "reference_tar_age_cpu_seconds_rounds": spread(ref_cpu, 3) if ref_cpu else None,
        "cpu_ratio_camhub_over_reference": spread(cpu_ratios) if cpu_ratios else None,
        "targets": {
            "x_realtime": TARGET_X_REALTIME,
            "rss_growth_mib": TARGET_RSS_MIB,
            "time_ratio_to_tar_age": TARGET_TIME_RATIO,
        },
        "meets_targets": x_realtime >= TARGET_X_REALTIME
        and rss_growth_mib < TARGET_RSS_MIB
        and bool(ratios)
        and statistics.median(ratios) <= TARGET_TIME_RATIO,
        "target": (
            f">= {TARGET_X_REALTIME:g}x realtime, RSS growth < {TARGET_RSS_MIB:g} MiB, "
            f"<= {TARGET_TIME_RATIO:g}x the time of tar/age"
        ),
        "smoke": args.smoke,
    }
    result["meets_target"] = result["meets_targets"]
    ref = "n/a" if ref_seconds is None else f"{ref_seconds:.2f} s"
    vs = (
        f"; x{statistics.median(ratios):.2f} the time of tar|age {ref} ({min(ratios):.2f}-{max(ratios):.2f}), "
        f"x{statistics.median(cpu_ratios):.2f} its CPU ({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})"
        if ratios and cpu_ratios
        else "; tar|age not installed"
    )
    result["summary"] = (
        f"{minutes:g} min clip ({size / 2**20:.0f} MiB): {x_realtime:.0f}x realtime "
        f"(median of {rounds} alternated rounds), RSS +{rss_growth_mib:.1f} MiB worst{vs}"
    )
    rows = [
        ("clip", f"{minutes:g} min @ {args.mbps:g} Mbit/s = {size / 2**20:.0f} MiB"),
        ("camhub build", f"{seconds:.2f} s  ({x_realtime:.0f}x realtime, {result['mib_per_s']} MiB/s)"),
        ("reference tar | age", ref),
        ("camhub / reference time", str(result["ratio_camhub_over_reference"])),
        ("camhub / reference CPU", str(result["cpu_ratio_camhub_over_reference"])),
        ("RSS baseline -> peak", f"{result['rss_baseline_mib']} -> {result['rss_peak_mib']} MiB"),
        (
            "RSS growth",
            f"{rss_growth_mib:.1f} MiB with the worker's {result['worker_peak_mib']} (target < {TARGET_RSS_MIB:g})",
        ),
        ("meets targets", str(result["meets_targets"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "delivery.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
