"""Clock jumps: the daemon's wall clock (and only the daemon's: libfaketime, monotonic time untouched)
jumps an hour forward and back while it records and handles consent. Segment times must stay monotonic
(a forward jump is a recorded gap), time checks are judged by the hub's clock and fail closed
(PROTOCOL §3, §6: signatures and decisions outside their window are refused, not crashed on), and the
audit chain still verifies."""

from __future__ import annotations

import email.utils
import itertools
import shutil
import time
from pathlib import Path

import pytest

from tests.consent.flow_env import CAMERA, http
from tests.faults.hubproc import (
    SimProcess,
    audit_verify,
    check_store,
    db,
    hub_env,
    problems_in_log,
    start_hub,
    until,
)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def _faketime(clock_file: Path) -> dict[str, str]:
    """The daemon's environment: its wall clock offset by what `clock_file` says (re-read each second)."""
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_CACHE_DURATION": "1",
        # asyncio and every timeout run on the monotonic clock: only the wall clock jumps.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def _hub_offset(url: str) -> float:
    """The daemon's clock minus ours, from its HTTP Date header (1 s resolution)."""
    r = http("GET", url + "/api/v1/hub")
    hub_now = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
    return hub_now - time.time()


def _jump(clock_file: Path, url: str, offset_s: int) -> None:
    clock_file.write_text(f"{offset_s:+d}\n")
    until(lambda: abs(_hub_offset(url) - offset_s) < 3, 15, f"the hub clock to be off by {offset_s} s")


def _sim1(data: Path) -> list:  # type: ignore[type-arg]
    conn = db(data)
    try:
        return conn.execute("SELECT * FROM segments WHERE camera_id = 'sim-1' ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (Debian package faketime)")
def test_clock_jumps_forward_and_back(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path, 1)
    clock_file = tmp_path / "faketime"
    clock_file.write_text("+0\n")
    faketime = _faketime(clock_file)
    env = hub_env(tmp_path, "[storage]\nsegment_seconds = 1\n" + sim.camera_toml("sim-1"), env=faketime)
    try:
        until(lambda: len(_sim1(env.data_dir)) >= 2, 60, "recording")
        footage = (env.t0 + 10, env.t0 + 40)
        rid, sha = env.submit(*footage)

        # +1 h: the hub's clock is ahead of everyone else's.
        _jump(clock_file, env.url, 3600)
        n = len(_sim1(env.data_dir))
        until(lambda: len(_sim1(env.data_dir)) >= n + 3, 60, "recording after +1 h")
        # An agency signature created "now" is an hour old to the hub: refused, clearly.
        r = env.signed("POST", "/api/agency/v1/requests", env.request_body(*footage))
        assert 400 <= r.status < 500 and r.is_json_error, (r.status, r.body)
        # A decision whose not_after (30 min from now, our clock) is already past to the hub: refused.
        r = env.decide(env.approval(rid, sha, *footage, not_after=time.time() + 1800))
        assert 400 <= r.status < 500 and r.is_json_error, (r.status, r.body)
        assert env.poll(rid).status in (200, 401)  # the poll's own signature is judged the same way

        # Back to true time (a jump of -1 h): the hub accepts current signatures and decisions again.
        _jump(clock_file, env.url, 0)
        r = env.decide(env.approval(rid, sha, *footage, not_after=time.time() + 1800))
        assert r.status == 201, r.body
        env.wait_status(rid, "fulfilled", timeout=60)
        fetched = env.client().fetch(rid, tmp_path / "fetched")
        assert fetched and fetched[0]["camera"] == CAMERA

        # -1 h: the hub's clock is behind. Signatures from the future are refused; recording goes on.
        _jump(clock_file, env.url, -3600)
        n = len(_sim1(env.data_dir))
        until(lambda: len(_sim1(env.data_dir)) >= n + 3, 60, "recording after -1 h")
        r = env.signed("POST", "/api/agency/v1/requests", env.request_body(*footage))
        assert 400 <= r.status < 500 and r.is_json_error, (r.status, r.body)
        _jump(clock_file, env.url, 0)
        n = len(_sim1(env.data_dir))
        until(lambda: len(_sim1(env.data_dir)) >= n + 2, 60, "recording at true time")
        assert env.daemon.proc.poll() is None

        # Segment times never go backwards and never overlap; a step forward is a recorded gap.
        segs = _sim1(env.data_dir)
        conn = db(env.data_dir)
        try:
            gaps = conn.execute("SELECT * FROM recording_gaps WHERE camera_id = 'sim-1'").fetchall()
        finally:
            conn.close()
        for a, b in itertools.pairwise(segs):
            assert b["start_at"] >= a["end_at"] - 1e-3, (a["path"], b["path"])
            if b["start_at"] - a["end_at"] > 0.5:
                assert any(
                    g["start_at"] <= a["end_at"] + 0.5 and g["end_at"] >= b["start_at"] - 0.5 for g in gaps
                )
        assert any(g["end_at"] - g["start_at"] > 3000 for g in gaps), "the +1 h jump is a gap"
        assert problems_in_log(env.daemon.log()) == []
        audit_verify(env, tmp_path / "audit-export")
        env.stop()
        check_store(env.data_dir)
    finally:
        try:
            env.stop()
        finally:
            sim.stop()
            shutil.rmtree(tmp_path / "fetched", ignore_errors=True)


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (Debian package faketime)")
def test_a_wall_clock_set_back_never_reopens_an_approval(tmp_path: Path) -> None:
    """PROTOCOL §6 (issue 12): once armed, a grant's end also runs on the monotonic clock, and once
    reached it is recorded. Setting the hub's wall clock back an hour re-opens neither a grant that
    had ended nor one whose time runs out while the clock is wrong, not even across a restart."""
    clock_file = tmp_path / "faketime"
    clock_file.write_text("+0\n")
    faketime = _faketime(clock_file)
    env = hub_env(tmp_path, env=faketime)
    try:
        footage = (env.t0 + 10, env.t0 + 20)
        urls: dict[str, str] = {}
        ends: dict[str, float] = {}
        for name, valid_s in (("ended", 8), ("running", 25)):
            rid, sha = env.submit(*footage)
            ends[name] = time.time() + valid_s
            assert env.decide(env.approval(rid, sha, *footage, not_after=ends[name])).status == 201
            urls[name] = env.wait_status(rid, "fulfilled")["deliveries"][0]["url"]

        def fetch(name: str, offset: int) -> tuple[int, str]:
            # Signed with the hub's idea of now, so only the grant decides.
            path = urls[name].split(env.authority, 1)[1]
            r = env.signed("GET", path, created=int(time.time()) + offset)
            return r.status, (r.json()["error"] if r.is_json_error else "")

        assert fetch("ended", 0)[0] == 200
        until(lambda: time.time() > ends["ended"] + 1, 30, "the first approval's not_after")
        assert fetch("ended", 0) == (403, "grant_expired")

        _jump(clock_file, env.url, -3600)
        assert fetch("ended", -3600) == (403, "grant_expired"), "an ended grant re-opened"
        assert fetch("running", -3600)[0] == 200  # still inside its real validity
        until(lambda: time.time() > ends["running"] + 1, 60, "the second approval's real end")
        # The hub's wall clock says there is an hour left; its monotonic deadline says it is over.
        assert fetch("running", -3600) == (403, "grant_expired"), "a wall clock set back extended a grant"

        env.daemon.stop()  # and start again, the clock still an hour behind
        env.daemon = start_hub(env.config, tmp_path / "daemon-2.log", env=faketime)
        env.daemon.wait_ready()
        for name in urls:
            assert fetch(name, -3600) == (403, "grant_expired"), name
        assert problems_in_log(env.daemon.log()) == []
    finally:
        env.stop()
