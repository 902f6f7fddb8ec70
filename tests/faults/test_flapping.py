"""Camera flapping: one simulated camera is dropped, rebooted and stalled 100 times in a row while the
daemon (a real `camhub run` process) records both cameras. The hub must reconnect every time, count
every reconnect in the camera's status row, record every outage as a gap, leak no task, thread or fd,
log no traceback, and leave the other camera's recording untouched."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from tests.conftest import free_port, write_config
from tests.faults.hubproc import (
    SimProcess,
    camera_status,
    check_store,
    db,
    problems_in_log,
    start_hub,
    stats,
    until,
)

FLAPS = 100


def _reconnects(data_dir: Path, camera: str) -> int:
    row = camera_status(data_dir).get(camera)
    return 0 if row is None else int(row["reconnect_count"])


def _segment_count(data_dir: Path, camera: str) -> int:
    conn = db(data_dir)
    try:
        return conn.execute("SELECT count(*) FROM segments WHERE camera_id = ?", (camera,)).fetchone()[0]
    finally:
        conn.close()


def test_camera_flapping_100_times(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path, 2)
    data = tmp_path / "data"
    extra = "[storage]\nsegment_seconds = 2\n" + sim.camera_toml("sim-1") + sim.camera_toml("sim-2")
    config = write_config(tmp_path / "camhub.toml", data, free_port(), extra)
    # Backoff capped at 0.2 s (production: 30 s) so 100 reconnects fit in a test; same code path.
    hub = start_hub(config, tmp_path / "daemon.log", max_backoff_s=0.2)
    try:
        hub.wait_ready()
        until(
            lambda: _segment_count(data, "sim-1") >= 1 and _segment_count(data, "sim-2") >= 1, 60, "segments"
        )
        base = stats(hub)

        rng = random.Random(8)
        faults = 0
        for i in range(FLAPS):
            before = _reconnects(data, "sim-1")
            # Mostly drops (EOF), every 10th a reboot (refused connections for a moment), and one stall
            # (silence until the 5 s read timeout): each must end the session and be reconnected.
            kind = "stall" if i == 50 else "reboot" if i % 10 == 5 else "drop"
            for _attempt in range(40):  # bounded: re-inject while the camera was not yet reconnected
                if kind == "stall":
                    sim.fault("sim-1", "stall", seconds=6)
                elif kind == "reboot":
                    sim.fault("sim-1", "reboot", seconds=round(rng.uniform(0.2, 0.8), 2))
                else:
                    sim.fault("sim-1", "drop")
                faults += 1
                try:
                    until(
                        lambda b=before: _reconnects(data, "sim-1") > b,
                        10 if kind == "stall" else 1.0,
                        "reconnect",
                    )
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError(f"flap {i}: the hub never saw the camera go: {hub.log()[-3000:]}")
            assert hub.proc.poll() is None, hub.log()[-3000:]

        flapped = _reconnects(data, "sim-1")
        assert flapped >= FLAPS, (flapped, faults)
        # Back and recording after the last flap: a segment that starts after it.
        count = _segment_count(data, "sim-1")
        until(lambda: _segment_count(data, "sim-1") > count, 60, "sim-1 recording again")

        # Let the last session settle, then compare resources with the start.
        end = stats(hub)
        assert end["tasks"] <= base["tasks"] + 5, (base, end)
        assert end["threads"] <= base["threads"] + 3, (base, end)
        assert end["fds"] <= base["fds"] + 10, (base, end)
        assert end["proc_fds"] <= base["proc_fds"] + 10, (base, end)

        # Every outage is a gap row; the other camera has none and never reconnected.
        conn = db(data)
        try:
            gaps = conn.execute("SELECT * FROM recording_gaps WHERE camera_id = 'sim-1'").fetchall()
            other_gaps = conn.execute(
                "SELECT count(*) FROM recording_gaps WHERE camera_id = 'sim-2'"
            ).fetchone()[0]
            sim2 = conn.execute(
                "SELECT start_at, end_at FROM segments WHERE camera_id = 'sim-2' ORDER BY start_at"
            ).fetchall()
        finally:
            conn.close()
        # Every outage ended a run and the next run recorded a gap row (outages with no footage between
        # them share one). Their lengths are not checked here: see test_reconnect_outage_is_a_real_gap.
        assert len(gaps) >= FLAPS // 2, len(gaps)
        assert all(g["end_at"] >= g["start_at"] and g["reason"] for g in gaps)
        assert other_gaps == 0
        assert _reconnects(data, "sim-2") == 0
        for a, b in itertools.pairwise(sim2):
            assert abs(b["start_at"] - a["end_at"]) < 0.2, (a["end_at"], b["start_at"])
        check_store(data)
        assert problems_in_log(hub.log()) == []
    finally:
        try:
            if hub.proc.poll() is None:
                assert hub.stop() == 0
        finally:
            sim.stop()
    print(f"flaps={FLAPS} faults={faults} reconnects={flapped} gaps={len(gaps)} start={base} end={end}")


@pytest.mark.xfail(
    strict=True,
    reason="bug (open): the segmenter anchors a run's timeline at the arrival of its first keyframe, which "
    "comes in the camera's GOP-cache burst up to a GOP late; the timeline runs ahead of the wall clock, so "
    "the next run starts at the previous end: every reconnect gap is 0 s and the drift adds up per reconnect",
)
def test_reconnect_outage_is_a_real_gap(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path, 1)
    data = tmp_path / "data"
    extra = "[storage]\nsegment_seconds = 2\n" + sim.camera_toml("sim-1")
    config = write_config(tmp_path / "camhub.toml", data, free_port(), extra)
    hub = start_hub(config, tmp_path / "daemon.log", max_backoff_s=0.5)
    try:
        hub.wait_ready()
        until(lambda: _segment_count(data, "sim-1") >= 1, 60, "a segment")
        for _ in range(3):
            before = _reconnects(data, "sim-1")
            sim.fault("sim-1", "reboot", seconds=2.0)
            until(lambda b=before: _reconnects(data, "sim-1") > b, 10, "reconnect")
            count = _segment_count(data, "sim-1")
            until(lambda c=count: _segment_count(data, "sim-1") > c, 30, "recording again")
        conn = db(data)
        try:
            gaps = conn.execute(
                "SELECT start_at, end_at FROM recording_gaps WHERE camera_id = 'sim-1'"
            ).fetchall()
        finally:
            conn.close()
        # The camera was unreachable for 2 s each time: each outage is a gap of at least that.
        assert len(gaps) >= 3
        assert all(end - start >= 1.9 for start, end in gaps), gaps
    finally:
        try:
            hub.stop()
        finally:
            sim.stop()
