"""Soak: the real daemon for `--seconds N` with 4 simulated cameras, doorbell events every few seconds,
an agency asking, polling and fetching, and retention cycling (tiny max age and quota).

    python -m bench.soak --seconds 1800          # `make soak`
    python -m bench.soak --seconds 60 --interval 5   # the CI version (tests/faults/test_soak.py)

Every `--interval` seconds it prints one row: the daemon's RSS, open fds, threads and asyncio tasks
(the daemon logs them on SIGUSR1, hub/daemon.py), plus what the hub did (segments, deletions,
requests, fetches). After the warm-up (a quarter of the run, at least 15 s) the first row is the
baseline; the run fails (exit 1) if the median of the last three rows grows past the tolerance, if the
daemon dies, or if its log has an ERROR or a Traceback. It also prints the RSS slope: a least-squares
line through the rows after the warm-up, in MB per hour (issue 17: the unit's `MemoryMax=512M` is a
budget, and a slope says how long it lasts where a first-versus-last difference is mostly noise), and
for runs of 30 minutes or more the RSS floor (lowest sample) of the 10 minutes after the first 10 and
of the last 10, issue 17's "growth after the first 10 minutes". Not part of `python -m bench` (which measures
speed); this measures that nothing grows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import rfc3339
from hub.agency_client import Agency, AgencyError
from hub.agency_client import keygen as agency_keygen
from hub.consent import owner_client

READY_RE = re.compile(r"camhub ready url=(\S+) hub_id=(\S+)")
PAIRING_RE = re.compile(r"pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})")
STATS_RE = re.compile(r"camhub stats tasks=(\d+) threads=(\d+) fds=(\d+) rss_kb=(-?\d+)(.*)")
# What the daemon says of its native memory after rss_kb (hub/daemon.py native_memory_kb).
NATIVE_KEYS = ("heap_kb", "heap_free_kb", "sqlite_kb", "sqlite_cache_kb")

# An approved request still not fulfilled after this long will not be: its range is gone (_Agency.poll).
UNFULFILLED_AFTER_S = 60.0
# Growth allowed after warm-up: (absolute, relative to the baseline); the larger one applies.
TOLERANCE = {"rss_kb": (40_000, 0.25), "fds": (16, 0.0), "threads": (4, 0.0), "tasks": (16, 0.0)}


@dataclass
class Sample:
    t: float
    rss_kb: int
    fds: int
    threads: int
    tasks: int
    segments: int
    deleted: int
    events: int
    requests: int
    fetched: int
    heap_kb: int = -1
    heap_free_kb: int = -1
    sqlite_kb: int = -1
    sqlite_cache_kb: int = -1


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log_path: Path | None = None
    warmup_s: float = 0.0
    traced: list[str] = field(default_factory=list)
    unfulfilled: int = 0  # approved requests with no footage left to deliver (see _Agency.poll)

    def rss_slope_mb_per_h(self, key: str = "rss_kb") -> float | None:
        """Least-squares slope of RSS (or another `*_kb` column) over the samples after the warm-up, MB
        (10^6 bytes) per hour; None with fewer than 3 such samples."""
        after = [s for s in self.samples if s.t >= self.warmup_s and getattr(s, key) >= 0]
        if len(after) < 3:
            return None
        ys = [getattr(s, key) for s in after]
        slope_kb_per_s = statistics.linear_regression([s.t for s in after], ys).slope
        return slope_kb_per_s * 1024 * 3600 / 1e6

    def rss_floor_growth_mib(
        self, settle_s: float = 600.0, window_s: float = 600.0
    ) -> tuple[float, float] | None:
        """(first, last) RSS floor in MiB: the lowest sample of the first `window_s` after `settle_s`,
        and of the last `window_s` of the run; None if the run is shorter than settle + 2 windows.

        Issue 17's measure ("grows by less than 5 MB after its first 10 minutes"): a floor, because a
        single sample swings by MBs with what the daemon is doing at that instant (a delivery build, a
        retention pass), while memory that is kept raises every sample after it.
        """
        end = self.samples[-1].t if self.samples else 0.0
        if end < settle_s + 2 * window_s:
            return None
        first = [s.rss_kb for s in self.samples if settle_s <= s.t < settle_s + window_s]
        last = [s.rss_kb for s in self.samples if s.t > end - window_s]
        return min(first) / 1024, min(last) / 1024

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        head = f"{'t_s':>6} {'rss_kb':>8} {'fds':>5} {'threads':>7} {'tasks':>6} {'segments':>8} "
        head += f"{'deleted':>7} {'events':>6} {'requests':>8} {'fetched':>7} {'heap_kb':>8} {'free_kb':>7} "
        head += f"{'sqlite_kb':>9} {'cache_kb':>8}"
        rows = [head]
        for s in self.samples:
            rows.append(
                f"{s.t:6.0f} {s.rss_kb:8d} {s.fds:5d} {s.threads:7d} {s.tasks:6d} {s.segments:8d} "
                f"{s.deleted:7d} {s.events:6d} {s.requests:8d} {s.fetched:7d} {s.heap_kb:8d} "
                f"{s.heap_free_kb:7d} {s.sqlite_kb:9d} {s.sqlite_cache_kb:8d}"
            )
        return "\n".join(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Sim:
    def __init__(self, workdir: Path, cameras: int) -> None:
        self._log = (workdir / "sim.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "firmware_sim.cli", "--cameras", str(cameras), "--host", "127.0.0.1",
                "--rtsp-port", "0", "--control-port", "0", "--no-mdns", "--width", "640", "--height", "360",
                "--sub-width", "320", "--sub-height", "180", "--fps", "15", "--gop", "15", "--loop-s", "2",
            ],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        self.cameras: dict[str, dict[str, Any]] = {}
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("camhub-sim exited before it was ready")
            if line.strip() == "ready":
                return
            info = json.loads(line)
            self.cameras[info["camera"]] = info
        raise RuntimeError("camhub-sim not ready within 120 s")

    def post(self, camera: str, action: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"{self.cameras[camera]['control']}/{action}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class _Hub:
    def __init__(self, workdir: Path, sim: _Sim, tracemalloc: int = 0) -> None:
        self.tracemalloc = tracemalloc
        self.data = workdir / "data"
        cameras = "".join(
            f'\n[[cameras]]\nid = "{name}"\nurl = "{info["rtsp_main"]}"\nevents_url = "{info["events"]}"\n'
            "[cameras.motion]\nenabled = false\n"
            for name, info in sim.cameras.items()
        )
        self.config = workdir / "camhub.toml"
        # Retention cycles: segments older than ~17 s go, and the index stays under ~2 MB. The agency asks
        # every 6-10 s, past the default 30 requests an hour per agency (a 30-minute soak died of 429
        # after ~4 minutes): the soak measures growth, not that limit (tests/security has it).
        self.config.write_text(
            f'[hub]\nname = "soak"\ndata_dir = "{self.data}"\nbind = "127.0.0.1"\nport = {_free_port()}\n'
            "[storage]\nsegment_seconds = 2\nmax_age_days = 0.0002\nquota_gb = 0.002\n"
            "[consent]\ntrust_system_clock = true\nagency_requests_per_hour = 100000\n"
            "[discovery]\nenabled = false\n" + cameras
        )
        self.log_path = workdir / "daemon.log"
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **({"PYTHONTRACEMALLOC": str(self.tracemalloc)} if self.tracemalloc else {})},
        )  # fmt: skip
        log.close()
        self.url = self.hub_id = self.pairing_code = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            if m := PAIRING_RE.search(text):
                self.pairing_code = m.group(1)
            if m := READY_RE.search(text):
                self.url, self.hub_id = m.group(1), m.group(2)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited:\n{text[-3000:]}")
            time.sleep(0.05)
        # run() only stops a hub it got back: this one would outlive the soak.
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("daemon not ready within 60 s")

    def stats(self) -> dict[str, int]:
        before = len(STATS_RE.findall(self.log_path.read_text()))
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = STATS_RE.findall(self.log_path.read_text())
            if len(found) > before:
                tasks, threads, fds, rss = map(int, found[-1][:4])
                extra = dict(re.findall(r"(\w+)=(-?\d+)", found[-1][4]))
                native = {k: int(extra.get(k, -1)) for k in NATIVE_KEYS}
                return {"tasks": tasks, "threads": threads, "fds": fds, "rss_kb": rss, **native}
            time.sleep(0.05)
        raise RuntimeError("the daemon did not answer SIGUSR1 within 10 s")

    def counts(self) -> tuple[int, int, int]:
        conn = sqlite3.connect(f"file:{self.data / 'camhub.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            segments = conn.execute("SELECT count(*) FROM segments").fetchone()[0]
            deleted = sum(
                # Deliveries and exports that aged out are audited as retention.deleted too, without segments.
                json.loads(e)["data"].get("segments", 0)
                for (e,) in conn.execute(
                    "SELECT entry FROM audit_entries WHERE CAST(entry AS TEXT) LIKE '%retention.deleted%'"
                )
            )
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
        return segments, deleted, events

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode


class _Agency:
    """An agency that asks for the last few seconds of a random camera now and then, polls everything
    open, and fetches what the owner (here: this loop, every other request) approves."""

    def __init__(self, workdir: Path, hub: _Hub, cameras: list[str], rng: random.Random) -> None:
        self.dir = workdir / "agency"
        info = agency_keygen(self.dir)
        self.owner = Ed25519PrivateKey.generate()
        owner_client.enroll_first(hub.url, self.owner, hub.pairing_code, "soak-owner")
        owner_client.decide(
            hub.url,
            self.owner,
            {
                "decision": "add-agency",
                "subject": {"name": "Soak PD", "sig_jwk": info["sig_jwk"], "recipient": info["recipient"]},
            },
        )
        self.keyid = info["keyid"]
        self.client = Agency(self.dir, hub.url)
        self.hub = hub
        self.cameras = cameras
        self.rng = rng
        self.open: dict[
            str, tuple[str, float, float, str, bool, float]
        ] = {}  # id -> sha, start, end, camera, approve, asked at (monotonic)
        self.requests = 0
        self.fetched = 0
        self.unfulfilled = 0

    def ask(self) -> None:
        camera = self.rng.choice(self.cameras)
        end = time.time() - 4
        start = end - 6
        answer = self.client.request(
            {
                "case_id": f"soak-{self.requests}",
                "kind": "clip",
                "cameras": [camera],
                "start": rfc3339.format(start),
                "end": rfc3339.format(end),
                "live_max_seconds": None,
                "reason": "soak test",
                "legal_basis": {"type": "consent", "reference": None},
                "contact": "soak",
            },
            hub_id=self.hub.hub_id,
        )
        self.requests += 1
        approve = self.requests % 2 == 0
        self.open[answer["id"]] = (answer["request_sha256"], start, end, camera, approve, time.monotonic())
        if approve:
            owner_client.decide(
                self.hub.url,
                self.owner,
                {
                    "decision": "approve",
                    "request_id": answer["id"],
                    "request_sha256": answer["request_sha256"],
                    "recipient": self.keyid,
                    "scope": {
                        "kind": "clip", "cameras": [camera], "start": rfc3339.format(start),
                        "end": rfc3339.format(end), "live_max_seconds": None,
                    },
                    "max_fetches": 1,
                    "not_after": rfc3339.format(time.time() + 3600),
                },
            )  # fmt: skip

    def poll(self, workdir: Path) -> None:
        for request_id in list(self.open):
            status = self.client.status(request_id).get("status")
            if status == "fulfilled":
                out = workdir / "fetched" / request_id
                self.client.fetch(request_id, out, hub_id=self.hub.hub_id)
                self.fetched += 1
                del self.open[request_id]
                # Keep the disk flat too: the agency does not keep what it fetched.
                for path in sorted(out.rglob("*"), reverse=True):
                    path.unlink() if path.is_file() else path.rmdir()
                out.rmdir()
            elif not self.open[request_id][4]:
                del self.open[request_id]  # never approved: polled once, pending, forgotten
            elif time.monotonic() - self.open[request_id][5] > UNFULFILLED_AFTER_S:
                # Approved, but retention (the soak's storage cap is tight on purpose) had deleted
                # the range first: the hub builds nothing ("no footage ... in the approved range").
                # Polled forever, these piled up (41 in two hours) until the polls alone ran into
                # the hub's rate limit and the soak died on a 429 seconds before its end.
                del self.open[request_id]
                self.unfulfilled += 1


def _median_last(samples: list[Sample], key: str, n: int = 3) -> float:
    return statistics.median(getattr(s, key) for s in samples[-n:])


def run(
    seconds: float,
    interval: float = 10.0,
    cameras: int = 4,
    workdir: Path | None = None,
    seed: int = 1,
    tracemalloc: int = 0,
) -> SoakResult:
    """Run the soak; the returned result holds every sample and every problem found."""
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="camhub-soak-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    result = SoakResult()
    sim = _Sim(workdir, cameras)
    hub: _Hub | None = None
    try:
        hub = _Hub(workdir, sim, tracemalloc)
        result.log_path = hub.log_path
        agency = _Agency(workdir, hub, sorted(sim.cameras), rng)
        started = time.monotonic()
        next_event = next_ask = next_poll = started + 3
        next_sample = started
        warmup = max(15.0, seconds / 4)
        result.warmup_s = warmup
        while (now := time.monotonic()) - started < seconds:
            if hub.proc.poll() is not None:
                result.problems.append(f"daemon exited with {hub.proc.returncode}")
                break
            if sim.proc.poll() is not None:
                # The simulator is the soak's load, not what it measures: report it, keep the samples.
                result.problems.append(f"camhub-sim exited with {sim.proc.returncode} (see sim.log)")
                break
            if now >= next_event:
                camera = rng.choice(sorted(sim.cameras))
                try:
                    if rng.random() < 0.5:
                        sim.post(camera, "visitor", {"ring": rng.random() < 0.5})
                    else:
                        sim.post(camera, "press", {})
                except OSError as exc:
                    result.problems.append(f"camhub-sim control {camera}: {exc}")
                next_event = now + rng.uniform(2, 5)
            if now >= next_ask:
                try:
                    agency.ask()
                except (AgencyError, owner_client.HubHTTPError) as exc:
                    result.problems.append(f"agency or owner: {exc}")
                next_ask = now + rng.uniform(6, 10)
            if now >= next_poll:
                try:
                    agency.poll(workdir)
                except AgencyError as exc:
                    result.problems.append(f"agency: {exc}")
                next_poll = now + 2
            if now >= next_sample:
                st = hub.stats()
                segments, deleted, events = hub.counts()
                sample = Sample(
                    now - started, st["rss_kb"], st["fds"], st["threads"], st["tasks"],
                    segments, deleted, events, agency.requests, agency.fetched,
                    st["heap_kb"], st["heap_free_kb"], st["sqlite_kb"], st["sqlite_cache_kb"],
                )  # fmt: skip
                result.samples.append(sample)
                print(
                    result.table().splitlines()[-1] if len(result.samples) > 1 else result.table(), flush=True
                )
                next_sample = now + interval
            time.sleep(0.1)
        result.unfulfilled = agency.unfulfilled
        _judge(result, warmup, hub)
    finally:
        if hub is not None:
            code = hub.stop()
            if code != 0:
                result.problems.append(f"daemon exit code {code} on SIGTERM")
            text = hub.log_path.read_text()
            bad = [
                ln for ln in text.splitlines() if " ERROR " in ln or " CRITICAL " in ln or "Traceback" in ln
            ]
            if bad:
                result.problems.append("log has errors:\n" + "\n".join(bad[:20]))
            if tracemalloc:
                # The daemon's last comparison with its first snapshot (hub/daemon.py log_traced_growth).
                lines = [
                    ln[ln.index("camhub tracemalloc") :]
                    for ln in text.splitlines()
                    if "camhub tracemalloc" in ln
                ]
                last = max((i for i, ln in enumerate(lines) if "traced_kb=" in ln), default=0)
                result.traced = lines[last:]
        sim.stop()
    if own_dir and result.ok:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _judge(result: SoakResult, warmup: float, hub: _Hub) -> None:
    after = [s for s in result.samples if s.t >= warmup]
    if len(after) < 3:
        result.problems.append(f"too few samples after the {warmup:.0f} s warm-up ({len(after)}); run longer")
        return
    base = after[0]
    for key, (absolute, relative) in TOLERANCE.items():
        limit = getattr(base, key) + max(absolute, getattr(base, key) * relative)
        end = _median_last(after, key)
        if end > limit:
            result.problems.append(
                f"{key} grew: {getattr(base, key)} after warm-up -> {end:.0f} (limit {limit:.0f})"
            )
    last = result.samples[-1]
    if last.deleted == 0:
        result.problems.append("retention never deleted anything (it should cycle)")
    if last.fetched == 0:
        result.problems.append("the agency never fetched a delivery")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--seconds", type=float, default=1800.0)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep the data dir and logs here (default: a temp dir, removed on success)",
    )
    p.add_argument(
        "--tracemalloc",
        nargs="?",
        type=int,
        const=1,
        default=0,
        metavar="FRAMES",
        help="run the daemon under tracemalloc and print the source lines whose Python memory grew most "
        "since the first sample; with FRAMES > 1, the call paths (slower: it measures where memory "
        "goes, not how much)",
    )
    args = p.parse_args(argv)
    # A soak is long and gets killed: SIGTERM as an exit, so run()'s cleanup stops the daemon and the
    # simulator instead of leaving them running (and skewing every measurement after it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args.seconds, args.interval, args.cameras, args.workdir, tracemalloc=args.tracemalloc)
    print(result.table())
    if result.traced:
        print("\n".join(result.traced))
    slope = result.rss_slope_mb_per_h()
    after = [s for s in result.samples if s.t >= result.warmup_s]
    if slope is not None:
        print(
            f"rss slope after the {result.warmup_s:.0f} s warm-up: {slope:+.2f} MB/h "
            f"(linear fit over {len(after)} samples; {after[0].rss_kb / 1024:.1f} -> {after[-1].rss_kb / 1024:.1f} MiB)"
        )
        # Which part grows: malloc'd bytes in use (FFmpeg, SQLite, OpenSSL...), malloc's free bytes
        # (fragmentation), and SQLite's own share of the first.
        parts = {k: result.rss_slope_mb_per_h(k) for k in NATIVE_KEYS}
        print(
            "slopes of the parts: "
            + ", ".join(f"{k} {v:+.2f} MB/h" for k, v in parts.items() if v is not None)
        )
    if result.samples:
        last = result.samples[-1]
        print(
            f"agency: {last.requests} requests, {last.fetched} deliveries fetched, {result.unfulfilled} "
            "approved after retention had deleted their range (nothing to deliver)"
        )
    floors = result.rss_floor_growth_mib()
    if floors is not None:
        print(
            f"rss floor (lowest sample of a 10-minute window): {floors[0]:.1f} MiB at 10-20 min -> "
            f"{floors[1]:.1f} MiB in the last 10 min, {floors[1] - floors[0]:+.1f} MiB"
        )
    if result.ok:
        print("soak ok: nothing grew past the tolerance, no errors in the log")
        return 0
    print("soak FAILED:\n" + "\n".join(result.problems), file=sys.stderr)
    if result.log_path is not None:
        print(f"daemon log: {result.log_path}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
