"""`camhub owner ...` and `camhub agency ...` against a real daemon: pairing-code enrolment (once),
agency add / list / remove, and `camhub-agency keygen` output the hub accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess


def _run(*args: str, module: str = "hub") -> tuple[int, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60, check=False
    )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, proc.stdout + proc.stderr


def test_owner_enroll_and_agency_management(daemon: DaemonProcess, hub_config: Path, tmp_path: Path) -> None:
    assert daemon.pairing_code is not None
    key = tmp_path / "owner.key"
    rc, made = _run("owner", "keygen", str(key))
    assert rc == 0 and key.stat().st_mode & 0o777 == 0o600
    rc, out = _run("owner", "enroll", "--url", daemon.url, "--key", str(key), "--pairing-code", "AAAA-AAAA")
    assert rc == 1 and out["error"] == "bad_pairing_code"
    rc, out = _run(
        "owner", "enroll", "--url", daemon.url, "--key", str(key), "--pairing-code", daemon.pairing_code
    )
    assert rc == 0 and out == {"kid": made["kid"]}
    # Single use: the code is gone, and once an owner exists no code enrols another key.
    other = tmp_path / "other.key"
    _run("owner", "keygen", str(other))
    rc, out = _run(
        "owner", "enroll", "--url", daemon.url, "--key", str(other), "--pairing-code", daemon.pairing_code
    )
    assert rc == 1 and out["error"] == "bad_pairing_code"

    agency_dir = tmp_path / "agency"
    rc, agency = _run("keygen", str(agency_dir), module="hub.agency_client")
    assert rc == 0 and agency["recipient"].startswith("age1")
    rc, out = _run(
        "agency", "add", "Test PD", "--sig-key", str(agency_dir / "agency.jwk"), "--recipient", agency["recipient"],
        "--key", str(key), "--url", daemon.url,
    )  # fmt: skip
    assert rc == 0 and set(out) == {"decision_id"}, out
    rc, listed = _run("agency", "list", "--config", str(hub_config))
    assert rc == 0 and [a["keyid"] for a in listed] == [agency["keyid"]]
    rc, out = _run("agency", "remove", "--key", str(key), "--url", daemon.url, "--", agency["keyid"])
    assert rc == 0, out
    rc, listed = _run("agency", "list", "--config", str(hub_config))
    assert rc == 0 and listed == []
    rc, out = _run("agency", "remove", "--key", str(key), "--url", daemon.url, "--", agency["keyid"])
    assert rc == 1 and out["error"] == "unknown_agency"
    # An unenrolled key signs nothing the hub accepts.
    rc, out = _run("agency", "remove", "--key", str(other), "--url", daemon.url, "--", agency["keyid"])
    assert rc == 1 and out["error"] == "unknown_owner_key"
