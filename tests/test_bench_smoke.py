"""`python -m bench --smoke` runs every scenario with tiny sizes, so the benchmark code cannot rot.

No timing is asserted (a shared 2-core machine): only that every listed scenario ran to completion,
wrote its JSON with the keys the table and readers use, and that nothing landed in bench/results/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import BUDGET_S, SCENARIOS, run_scenario

ROOT = Path(__file__).resolve().parents[1]

# Keys each scenario's JSON must carry besides "summary" (and "target"/"meets_target" where named).
EXPECTED: dict[str, set[str]] = {
    "sim_bench": {"results", "reference", "why_no_reference"},
    "record_bench": {"scenarios", "target", "meets_target"},
    "daemon_bench": {"side_by_side", "alone", "scaling", "target", "meets_target"},
    "encrypt_bench": {"recording_cpu_s_per_camera_s"},
    "motion_bench": {"runs", "detector_only", "reference", "target", "meets_target"},
    "live_bench": {
        "glass_to_glass_ms",
        "join",
        "revoke_to_cut_ms",
        "viewers",
        "why_no_reference",
        "target",
        "meets_target",
    },
    "httpsig_bench": {
        "verify_post_per_s",
        "raw_ed25519_verify_per_s",
        "ratio_raw_over_verify",
        "reference",
        "target",
        "meets_target",
    },
    "consent_flow_bench": {"accepted_requests_per_s", "poll_median_ms"},
    "agency_bench": {
        "concurrent_requests",
        "approve_to_first_byte",
        "from_same_run",
        "target",
        "meets_target",
    },
    "delivery_bench": {
        "x_realtime",
        "rss_growth_mib",
        "ratio_camhub_over_reference",
        "target",
        "meets_target",
    },
    "retention_bench": {"eviction", "timeline"},
    "privacy_bench": {
        "x_realtime",
        "reference_ffmpeg_x_realtime",
        "live_masked_cpu_pct",
        "reference_relay_cpu_pct",
        "target",
        "meets_target",
    },
    "relay_bench": {
        "request_to_202",
        "send_to_hub_ms",
        "poll",
        "relay_added_p50_ms",
        "relay_process",
        "idle_connection",
        "node_killed",
        "target",
        "meets_target",
    },
}


def test_every_scenario_runs_in_smoke_mode(tmp_path: Path) -> None:
    committed = {p: p.stat().st_mtime_ns for p in (ROOT / "bench" / "results").glob("*.json")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (tmp_path / "latest.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["smoke"] is True
    scenarios = latest["scenarios"]
    assert set(scenarios) == {name for name, _ in SCENARIOS} == set(EXPECTED)
    for name, entry in scenarios.items():
        assert entry["status"] == "ok", (name, entry, proc.stdout[-3000:])
        result = entry["result"]
        assert isinstance(result.get("summary"), str) and result["summary"], name
        assert EXPECTED[name] <= set(result), (name, EXPECTED[name] - set(result))
        if "meets_target" in result:
            assert isinstance(result["meets_target"], bool), name
    # Issue 7: measured more than once, even under --smoke, and the spread reported with the median.
    repeated = {
        "httpsig_bench": scenarios["httpsig_bench"]["result"]["ratio_raw_over_verify"],
        "delivery_bench": scenarios["delivery_bench"]["result"]["ratio_camhub_over_reference"],
        "motion_bench": scenarios["motion_bench"]["result"]["runs"][0]["ratio_windows"],
        "live_bench": scenarios["live_bench"]["result"]["glass_to_glass_ms"]["p95_viewers"],
        "sim_bench": scenarios["sim_bench"]["result"]["results"][0]["cpu_s_per_camera_s_windows"],
    }
    for name, figure in repeated.items():
        assert figure["n"] >= 2 and figure["min"] <= figure["median"] <= figure["max"], (name, figure)
    # The daemon's CPU is split by its threads' kernel names (hub/threadname.py): the camera's reader
    # and the event loop each show up under their own name, not all as "other".
    split = scenarios["daemon_bench"]["result"]["side_by_side"][0]["daemon"]["threads_ms_per_s"]
    assert split.get("reader", 0) > 0 and split.get("loop", 0) > 0, split
    table = (tmp_path / "latest.md").read_text()
    for name in EXPECTED:
        assert f"| {name} | ok |" in table
    assert proc.returncode == 0
    # The smoke run wrote only to its own directory, never over the committed full-run figures.
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "bench" / "results").glob("*.json")} == committed


def test_time_limits_fit_the_ten_minute_budget() -> None:
    assert sum(limit for _, limit in SCENARIOS) <= BUDGET_S


def test_a_missing_scenario_fails_the_run(tmp_path: Path) -> None:
    """A module listed in SCENARIOS but absent is a failure, not a silent gap in the table."""
    code = (
        "import sys, bench.__main__ as m;"
        "m.SCENARIOS[:] = [('no_such_bench', 5)];"
        f"sys.exit(m.main(['--smoke', '--results', {str(tmp_path)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["scenarios"] == {"no_such_bench": {"status": "missing"}}
    assert "| no_such_bench | missing |" in (tmp_path / "latest.md").read_text()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie nobody has reaped yet is dead


@pytest.mark.parametrize(("ends", "status"), [("time.sleep(300)", "timeout"), ("sys.exit(0)", "ok")])
def test_a_scenario_leaves_no_process_behind(tmp_path: Path, ends: str, status: str) -> None:
    """Scenarios start servers (nats-server, a relay, ffmpeg): a timed-out relay_bench left its
    cluster running. The scenario's whole process group goes, after a timeout or a forgotten child."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen(['sleep', '300']);"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid));"
        f"{ends}"
    )
    assert run_scenario([sys.executable, "-c", code], 3, dict(os.environ)) == status
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the scenario's child {child} outlived it"
