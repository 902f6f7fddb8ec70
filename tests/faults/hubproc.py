"""Helpers for the fault tests: a daemon subprocess (tuned timings), its resource stats, and
consistency checks read straight from its data dir (SQLite WAL allows a concurrent reader)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_sim import h264
from hub.consent import owner_client
from tests.conftest import DaemonProcess, free_port, write_config
from tests.consent.flow_env import FOOTAGE_S, HubEnv, new_agency, record_footage

STATS_RE = re.compile(r"camhub stats tasks=(\d+) threads=(\d+) fds=(\d+) rss_kb=(-?\d+)")
TRACEBACK_RE = re.compile(r"Traceback|^\S+ \S+ (ERROR|CRITICAL) ", re.MULTILINE)


def start_hub(
    config: Path,
    log_path: Path,
    *,
    max_backoff_s: float | None = None,
    retention_interval_s: float | None = None,
    env: dict[str, str] | None = None,
    mode: str = "w",
) -> DaemonProcess:
    """`camhub run` through tests/faults/run_hub.py (same code, shorter backoff/retention timers)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if max_backoff_s is not None:
        full_env["CAMHUB_TEST_MAX_BACKOFF_S"] = str(max_backoff_s)
    if retention_interval_s is not None:
        full_env["CAMHUB_TEST_RETENTION_INTERVAL_S"] = str(retention_interval_s)
    log_file = log_path.open(mode)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.run_hub", "--config", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=full_env,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    log_file.close()
    return DaemonProcess(proc=proc, log_path=log_path)


def stats(d: DaemonProcess, timeout: float = 10.0) -> dict[str, int]:
    """Ask the daemon (SIGUSR1) for its task/thread/fd/RSS counts and read the answer from its log."""
    before = len(STATS_RE.findall(d.log()))
    d.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = STATS_RE.findall(d.log())
        if len(found) > before:
            tasks, threads, fds, rss = map(int, found[-1])
            # Cross-check the fd count from outside the process.
            return {
                "tasks": tasks,
                "threads": threads,
                "fds": fds,
                "rss_kb": rss,
                "proc_fds": len(os.listdir(f"/proc/{d.proc.pid}/fd")),
            }
        time.sleep(0.05)
    raise AssertionError(f"no stats line within {timeout} s:\n{d.log()[-3000:]}")


def problems_in_log(text: str) -> list[str]:
    """Lines that show a bug: a traceback or an ERROR/CRITICAL log line."""
    return [
        line for line in text.splitlines() if "Traceback" in line or " ERROR " in line or " CRITICAL " in line
    ]


def db(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def check_store(data_dir: Path, segments_dir: Path | None = None) -> list[sqlite3.Row]:
    """PRAGMA integrity_check is ok and every indexed segment exists with its size and sha256.
    Returns the segment rows."""
    segments_dir = segments_dir or data_dir / "segments"
    conn = db(data_dir)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT * FROM segments ORDER BY camera_id, start_at").fetchall()
    finally:
        conn.close()
    for row in rows:
        path = segments_dir / row["path"]
        assert path.is_file(), f"indexed segment missing: {row['path']}"
        data = path.read_bytes()
        assert len(data) == row["bytes"], (row["path"], len(data), row["bytes"])
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["path"]
        assert row["end_at"] >= row["start_at"]
    return rows


def camera_status(data_dir: Path) -> dict[str, sqlite3.Row]:
    conn = db(data_dir)
    try:
        return {r["camera_id"]: r for r in conn.execute("SELECT * FROM camera_status")}
    finally:
        conn.close()


def until(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll `predicate()` until truthy (returns its value) or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SimProcess:
    """`camhub-sim` in its own process on ephemeral loopback ports; faults over its control API."""

    def __init__(self, tmp: Path, cameras: int = 1, *extra: str) -> None:
        self.log_path = tmp / "sim.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "firmware_sim.cli", "--cameras", str(cameras),
                "--host", "127.0.0.1", "--rtsp-port", "0", "--control-port", "0", "--no-mdns",
                "--width", "640", "--height", "360", "--sub-width", "320", "--sub-height", "180",
                "--fps", "15", "--gop", "15", "--loop-s", "2", *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )  # fmt: skip
        self.cameras: dict[str, dict[str, object]] = {}
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"camhub-sim exited:\n{self.log_path.read_text()}")
            if line.strip() == "ready":
                return
            info = json.loads(line)
            self.cameras[info["camera"]] = info
        raise AssertionError("camhub-sim not ready")

    def camera_toml(self, name: str, *, events: bool = False) -> str:
        info = self.cameras[name]
        text = f'\n[[cameras]]\nid = "{name}"\nurl = "{info["rtsp_main"]}"\n'
        if events:
            text += f'events_url = "{info["events"]}"\n'
        return text + "[cameras.motion]\nenabled = false\n"

    def post(self, name: str, action: str, body: dict[str, object] | None = None) -> int:
        req = urllib.request.Request(
            f"{self.cameras[name]['control']}/{action}",
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status

    def fault(self, name: str, kind: str, **params: object) -> None:
        assert self.post(name, "fault", {"kind": kind, "params": params}) == 202

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


def hub_env(tmp: Path, extra_config: str = "", *, footage: bool = True, **launch: Any) -> HubEnv:
    """tests.consent.flow_env.start_hub_env, but the daemon runs through `start_hub` (env, timers)."""
    data_dir = tmp / "data"
    config = write_config(tmp / "camhub.toml", data_dir, free_port(), extra_config)
    t0 = float(int(time.time()) - FOOTAGE_S - 60)
    if footage:
        record_footage(data_dir, config, t0)
    daemon = start_hub(config, tmp / "daemon.log", **launch)
    daemon.wait_ready()
    assert daemon.pairing_code is not None, daemon.log()
    owner = Ed25519PrivateKey.generate()
    owner_client.enroll_first(daemon.url, owner, daemon.pairing_code, "test-owner")
    env = HubEnv(tmp, config, data_dir, daemon, owner, new_agency(tmp / "agency"), t0)
    env.add_agency(env.agency, "Test PD")
    return env


def audit_verify(env: HubEnv, out: Path) -> str:
    """`camhub audit export` then the stand-alone `camhub audit verify`; returns verify's output."""
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "audit", "export", "--config", str(env.config), str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hub_key = json.dumps(env.client().hub()["public_jwk"])
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "audit", "verify", str(out), "--hub-key", hub_key],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def recorded_frames(data: Path, camera: str) -> list[tuple[int, float, float]]:
    """(sim frame counter, capture time, recorded wall-clock time) of every frame in the camera's
    segments, from the SEI stamp the sim puts in each frame and the segment's indexed start."""
    conn = db(data)
    try:
        rows = conn.execute(
            "SELECT path, start_at FROM segments WHERE camera_id = ? ORDER BY start_at", (camera,)
        ).fetchall()
    finally:
        conn.close()
    frames = []
    for path, start_at in rows:
        with av.open(str(data / "segments" / path)) as c:
            st = c.streams.video[0]
            first: int | None = None
            for p in c.demux(st):
                if not p.size:
                    continue
                first = p.pts if first is None else first
                stamp = h264.find_stamp(bytes(p))
                assert stamp is not None, path
                recorded = start_at + float((p.pts - first) * p.time_base)
                frames.append((stamp.seq, stamp.capture_us / 1e6, recorded))
    return frames
