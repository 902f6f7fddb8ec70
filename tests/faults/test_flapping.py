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
    # Backoff capped at 0.1 s (production: 30 s) so 100 reconnects fit in a test; same code path.
    hub = start_hub(config, tmp_path / "daemon.log", max_backoff_s=0.1)
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
            # (15 s of silence: the source gives up after twice its 5 s read timeout, because FFmpeg's
            # first timeout only flushes its reorder queue; a shorter stall is ridden through as a
            # timestamp-jump gap in the same session). Each must end the session and be reconnected.
            kind = "stall" if i == 50 else "reboot" if i % 10 == 5 else "drop"
            for _attempt in range(
                2 if kind == "stall" else 40
            ):  # bounded: re-inject while the camera was not yet reconnected
                if kind == "stall":
                    sim.fault("sim-1", "stall", seconds=15)
                elif kind == "reboot":
                    sim.fault("sim-1", "reboot", seconds=round(rng.uniform(0.2, 0.8), 2))
                else:
                    sim.fault("sim-1", "drop")
                faults += 1
                try:
                    until(
                        lambda b=before: _reconnects(data, "sim-1") > b,
                        20 if kind == "stall" else 0.5,
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
        # them share one).
        assert len(gaps) >= FLAPS // 5, len(gaps)
        assert all(g["end_at"] >= g["start_at"] and g["reason"] for g in gaps)
        # The steady camera's timeline is not ahead of the wall clock (it was ~2 s ahead before the
        # segmenter refined its anchor). sim-1's is: see test_rapid_flaps_keep_the_timeline_honest.
        ahead = _ahead_of_wall_clock(data)
        assert not [p for p, _ in ahead if p.startswith("sim-2/")], ahead
        sim1_ahead = max((a for _, a in ahead), default=0.0)
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
    print(
        f"flaps={FLAPS} faults={faults} reconnects={flapped} gaps={len(gaps)} sim1_ahead_s={sim1_ahead} start={base} end={end}"
    )


def _ahead_of_wall_clock(data: Path) -> list[tuple[str, float]]:
    """Segments whose recorded end is later than the moment their index row was written: footage from
    the future, i.e. a timeline running ahead of the wall clock. (The row is written after the last
    frame arrived, so an honest timeline ends at or before it; 0.5 s allows for rounding.)"""
    conn = db(data)
    try:
        rows = conn.execute("SELECT path, end_at - created_at FROM segments WHERE end_at > created_at + 0.5")
        return [(r[0], round(r[1], 3)) for r in rows]
    finally:
        conn.close()


def test_timeline_tracks_the_wall_clock_across_reconnects(tmp_path: Path) -> None:
    """A camera starts each new viewer with its cached GOP, after the demuxer has probed: the first
    packets of a session arrive in a burst up to ~2 s after capture. Anchoring the timeline at that
    arrival put every segment ~2 s in the future, and each reconnect added to it (the next run started
    at the previous end, with a zero-length gap): 18 s ahead after 100 flaps."""
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
            sim.fault("sim-1", "reboot", seconds=1.0)
            until(lambda b=before: _reconnects(data, "sim-1") > b, 10, "reconnect")
            count = _segment_count(data, "sim-1")
            until(lambda c=count: _segment_count(data, "sim-1") > c, 30, "recording again")
        assert _ahead_of_wall_clock(data) == []
        conn = db(data)
        try:
            gaps = conn.execute(
                "SELECT start_at, end_at FROM recording_gaps WHERE camera_id = 'sim-1'"
            ).fetchall()
        finally:
            conn.close()
        # Each outage is a gap of real length (the camera was unreachable for 1 s; its cached GOP may
        # cover part of that).
        assert len(gaps) >= 3 and all(end - start > 0.1 for start, end in gaps), gaps
    finally:
        try:
            hub.stop()
        finally:
            sim.stop()


@pytest.mark.xfail(
    strict=True,
    reason="bug (open): on a reconnect less than a GOP after a drop, the camera's cached GOP replays frames "
    "already recorded; the new run starts after the footage on disk (no overlap), so the replay is "
    "appended and the timeline moves ahead of the wall clock by about the replay each time (10 s after "
    "100 fast drops). Fix: drop replayed packets whose refined time is before the previous run's end.",
)
def test_rapid_flaps_keep_the_timeline_honest(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path, 1)
    data = tmp_path / "data"
    extra = "[storage]\nsegment_seconds = 2\n" + sim.camera_toml("sim-1")
    config = write_config(tmp_path / "camhub.toml", data, free_port(), extra)
    hub = start_hub(config, tmp_path / "daemon.log", max_backoff_s=0.1)
    try:
        hub.wait_ready()
        until(lambda: _segment_count(data, "sim-1") >= 1, 60, "a segment")
        for _ in range(15):
            before = _reconnects(data, "sim-1")
            for _attempt in range(20):
                sim.fault("sim-1", "drop")
                try:
                    until(lambda b=before: _reconnects(data, "sim-1") > b, 0.5, "reconnect")
                    break
                except AssertionError:
                    continue
        count = _segment_count(data, "sim-1")
        until(lambda: _segment_count(data, "sim-1") > count + 1, 30, "recording again")
        assert _ahead_of_wall_clock(data) == []
    finally:
        try:
            hub.stop()
        finally:
            sim.stop()
