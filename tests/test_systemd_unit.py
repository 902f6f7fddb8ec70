"""The shipped unit file: the settings the issue requires, and `systemd-analyze verify` where it runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "camhub.service"


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_notify_watchdog_and_hardening() -> None:
    s = _settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["User"] == ["camhub"] and s["StateDirectory"] == ["camhub"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "NoNewPrivileges": "true",
        "CapabilityBoundingSet": "",
    }.items():
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"]
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0]
    assert s["MemoryMax"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # Point ExecStart at this checkout's interpreter (verify checks the binary exists) and run as an
    # existing user; everything else is the shipped unit unchanged.
    text = UNIT.read_text().replace("/opt/camhub/.venv/bin/camhub run", f"{sys.executable} -m hub run")
    text = text.replace("User=camhub", "User=root").replace("Group=camhub", "Group=root")
    unit = tmp_path / "camhub.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "camhub.service" in line]
    assert problems == [], problems
