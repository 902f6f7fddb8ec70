"""SQLite busy/locked: another process holds the daemon's database write lock (BEGIN EXCLUSIVE) while
the daemon records and an agency request arrives. Nothing may crash, no segment's index row may be lost
(written once the lock clears, or retried), and the agency gets either success or a clear 503."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.consent.flow_env import start_hub_env
from tests.faults.hubproc import SimProcess, check_store, db, problems_in_log, until


def _hold_write_lock(db_path: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _sim1_segments(data: Path) -> list[sqlite3.Row]:
    conn = db(data)
    try:
        return conn.execute("SELECT * FROM segments WHERE camera_id = 'sim-1' ORDER BY start_at").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("hold_s", [4.0, 25.0], ids=["under-busy-timeout", "over-twice-the-busy-timeout"])
def test_locked_database_while_recording_and_an_agency_asks(tmp_path: Path, hold_s: float) -> None:
    sim = SimProcess(tmp_path, 1)
    env = start_hub_env(
        tmp_path, footage=False, extra_config="[storage]\nsegment_seconds = 1\n" + sim.camera_toml("sim-1")
    )
    try:
        until(lambda: len(_sim1_segments(env.data_dir)) >= 2, 60, "sim-1 recording")
        held = threading.Event()
        locker = threading.Thread(
            target=_hold_write_lock, args=(env.data_dir / "camhub.sqlite", hold_s, held)
        )
        locker.start()
        assert held.wait(10)
        now = time.time()
        body = env.request_body(now - 30, now - 10, cameras=["sim-1"])
        r = env.signed("POST", "/api/agency/v1/requests", body)
        locker.join()
        assert env.daemon.proc.poll() is None
        # Either it waited for the lock and succeeded, or it was told clearly to come back.
        assert r.status in (202, 503), (r.status, r.body)
        if r.status == 503:
            assert r.is_json_error and r.json()["error"] == "busy", r.body
            assert "Retry-After" in r.headers
            r = env.signed("POST", "/api/agency/v1/requests", body)
            assert r.status == 202, r.body
        # Recording went on: segments after the lock cleared, and every file on disk is indexed.
        count = len(_sim1_segments(env.data_dir))
        until(lambda: len(_sim1_segments(env.data_dir)) > count + 1, 60, "recording after the lock")
        indexed = {row["path"] for row in _sim1_segments(env.data_dir)}
        on_disk = {
            str(p.relative_to(env.data_dir / "segments"))
            for p in (env.data_dir / "segments" / "sim-1").rglob("*.mp4")
        }
        # The newest file may be finishing its index row right now: allow only that one.
        assert len(on_disk - indexed) <= 1, sorted(on_disk - indexed)
        assert problems_in_log(env.daemon.log()) == []
    finally:
        try:
            env.stop()
        finally:
            sim.stop()
    check_store(env.data_dir)
