"""Disk full during a segment write: the segments directory is a small tmpfs (root only). The camera
streams faster than the disk holds; writes fail with ENOSPC. The daemon must keep running, log a clear
error, free space by retention (`[storage] min_free_percent`), record again, and leave the index
consistent with the files (integrity_check; every indexed segment exists with its size and sha256)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, write_config
from tests.faults.hubproc import SimProcess, check_store, db, start_hub, until

TMPFS_MB = 6


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8)")
    segments = tmp_path / "data" / "segments"
    segments.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}M,mode=0700", "tmpfs", str(segments)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        # Root without CAP_SYS_ADMIN (an unprivileged container) cannot mount either.
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield segments
    finally:
        # Always unmount, even if the daemon is still around (lazy: it cannot keep us from cleaning up).
        subprocess.run(["umount", "-l", str(segments)], check=False)


def _count(data: Path, sql: str) -> int:
    conn = db(data)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_disk_full_keeps_running_and_retention_frees_space(tmp_path: Path, small_disk: Path) -> None:
    # ~4 Mbit/s of filler: a few seconds fill the 6 MB disk.
    sim = SimProcess(tmp_path, 1, "--bitrate-kbit", "4000")
    data = tmp_path / "data"
    extra = "[storage]\nsegment_seconds = 1\nmin_free_percent = 30\n" + sim.camera_toml("sim-1")
    config = write_config(tmp_path / "camhub.toml", data, free_port(), extra)
    # Something else on the disk (2 MB): the camera fills the rest well within one retention interval.
    (small_disk / "ballast").write_bytes(b"\0" * (2 << 20))
    # Production timers: the retention loop's interval is 30 s, but a failed write wakes it at once.
    hub = start_hub(config, tmp_path / "daemon.log")
    try:
        hub.wait_ready()
        until(lambda: "No space left on device" in hub.log(), 90, "a write to hit ENOSPC")
        full_at = len(hub.log())
        assert hub.proc.poll() is None
        # Retention frees space, recording resumes: new segments after the failure, and older ones deleted.
        until(lambda: "retention: deleted" in hub.log()[full_at:], 60, "retention to free space")
        assert _count(
            data, "SELECT count(*) FROM audit_entries WHERE CAST(entry AS TEXT) LIKE '%retention.deleted%'"
        )
        segs_after_full = _count(data, "SELECT count(*) FROM segments")
        until(
            lambda: _count(data, "SELECT count(*) FROM segments") > segs_after_full + 2, 60, "recording again"
        )
        assert hub.proc.poll() is None
        usage = shutil.disk_usage(small_disk)
        print(f"tmpfs: total={usage.total} free={usage.free}")
        log = hub.log()
        # The error is clear: which camera, what failed, why.
        assert "sim-1: writing a segment failed" in log and "No space left on device" in log
    finally:
        try:
            hub.stop()
        finally:
            sim.stop()
    rows = check_store(data, small_disk)
    assert rows
    # No half-written file is left behind after a clean stop.
    leftovers = [p.name for p in small_disk.rglob("*.part")]
    assert leftovers == [], leftovers
