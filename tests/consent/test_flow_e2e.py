"""End to end, through the CLIs a person would use: agency asks for 60 s, the owner approves a
narrower 30 s with a key-file-signed JWS, the agency fetches with `camhub-agency`, the stock `age`
decrypts it, the clip plays in ffprobe with the approved duration and the manifest verifies."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camhub_protocol import delivery, rfc3339
from tests.consent.flow_env import CAMERA, HubEnv, start_hub_env
from tests.record.media import ffprobe

GOP_S = 1.0


def _cli(*args: str) -> dict[str, Any] | list[Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _agency_cli(*args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "hub.agency_client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEnv]:
    env = start_hub_env(tmp_path)
    try:
        yield env
    finally:
        env.stop()


@pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("ffprobe") is None, reason="needs age, ffprobe"
)
def test_request_approve_narrower_fetch_decrypt_with_stock_age(hub: HubEnv, tmp_path: Path) -> None:
    # The owner's key is a file made by `camhub owner keygen`, enrolled by a key the fixture paired;
    # here we also exercise the CLI path for a second owner key.
    key2 = tmp_path / "owner2.key"
    kid2 = _cli("owner", "keygen", str(key2))["kid"]  # type: ignore[index]
    owner1 = tmp_path / "owner1.key"
    owner1.write_bytes(_pem(hub))
    owner1.chmod(0o600)
    _cli(
        "owner", "enroll-key", "--url", hub.url, "--key", str(owner1), "--new-key", str(key2), "--name", "cli"
    )

    # Agency: asks for 60 s of footage.
    agency_dir = str(hub.agency.directory)
    start, end = hub.t0 + 10, hub.t0 + 70
    asked = _agency_cli(
        "request", "--url", hub.url, "--key", agency_dir, "--camera", CAMERA,
        "--start", rfc3339.format(start), "--end", rfc3339.format(end),
        "--case-id", "2026-000123", "--reason", "Package theft reported at 18:10", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    assert asked["status"] == "pending"
    request_id, request_sha256 = asked["id"], asked["request_sha256"]
    assert (
        _agency_cli("status", "--url", hub.url, "--key", agency_dir, "--", request_id)["status"] == "pending"
    )

    # Owner (second key, a key file): approves only 30 s of it.
    a_start, a_end = hub.t0 + 20, hub.t0 + 50
    approved = _cli(
        "owner", "approve", "--url", hub.url, "--key", str(key2), "--request-id", request_id,
        "--request-sha256", request_sha256, "--recipient", hub.agency.keyid, "--camera", CAMERA,
        "--start", rfc3339.format(a_start), "--end", rfc3339.format(a_end), "--valid-hours", "1",
    )  # fmt: skip
    assert approved["request_id"] == request_id  # type: ignore[index]

    state = hub.wait_status(request_id, "fulfilled")
    assert set(state) == {"id", "status", "respond_by", "deliveries"}
    assert len(state["deliveries"]) == 1 and set(state["deliveries"][0]) == {"url", "bytes", "sha256"}

    out = tmp_path / "fetched"
    fetched = _agency_cli("fetch", "--url", hub.url, "--key", agency_dir, "--out", str(out), "--", request_id)
    assert len(fetched) == 1 and fetched[0]["camera"] == CAMERA
    encrypted = Path(fetched[0]["encrypted"])
    assert hashlib.sha256(encrypted.read_bytes()).hexdigest() == state["deliveries"][0]["sha256"]

    # The stock age CLI decrypts it with the identity file camhub-agency wrote.
    tar_path = tmp_path / "delivery.tar"
    subprocess.run(
        ["age", "-d", "-i", str(hub.agency.directory / "age.key"), "-o", str(tar_path), str(encrypted)],
        check=True,
        timeout=60,
    )
    with tarfile.open(tar_path) as tar:
        names = sorted(tar.getnames())
    assert names == sorted([f"clip-{CAMERA}.mp4", "manifest.json", "manifest.jws", "audit-proof.json"])
    opened = delivery.verify_tar(tar_path, hub.client().hub()["public_jwk"], tmp_path / "plain")
    manifest = opened.manifest
    assert manifest["hub_id"] == hub.hub_id
    assert manifest["request_id"] == request_id and manifest["request_sha256"] == request_sha256
    assert manifest["approval_id"] == approved["decision_id"]  # type: ignore[index]
    assert (manifest["camera"], manifest["start"], manifest["end"]) == (
        CAMERA,
        rfc3339.format(a_start),
        rfc3339.format(a_end),
    )
    assert manifest["segments"]

    # The clip plays and covers the approved 30 s, at most one GOP more at each end.
    probe = ffprobe(tmp_path / "plain" / f"clip-{CAMERA}.mp4")
    assert probe.ok, probe.stderr
    assert 30.0 - 1e-3 <= probe.duration <= 30.0 + 2 * GOP_S + 1e-3
    assert probe.codec == "h264"

    # Audit: the whole story is in the log, and the delivery's entry is the one the manifest names.
    entries = hub.audit_entries()
    types = [e["type"] for e in entries]
    assert any(e["type"] == "key.enrolled" and e["data"]["kid"] == kid2 for e in entries)
    for t in ("hub.started", "key.enrolled", "agency.added", "request.received", "decision.accepted",
              "delivery.built", "egress.delivery"):  # fmt: skip
        assert t in types, types
    built = entries[manifest["audit"]["seq"]]
    assert built["type"] == "delivery.built" and built["data"]["request_id"] == request_id
    egress = [e for e in entries if e["type"] == "egress.delivery"]
    assert len(egress) == 1 and egress[0]["data"]["fetch"] == 1

    # `camhub audit export` + the stand-alone `camhub audit verify` accept the log.
    export = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "audit", "export", "--config", str(hub.config), str(export)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "audit", "verify", str(export), "--hub-key",
         json.dumps(hub.client().hub()["public_jwk"])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _pem(hub: HubEnv) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return hub.owner.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_approved_range_without_footage_stays_pending_like_a_decline(hub: HubEnv) -> None:
    """§2.2 privacy rule: approval of a range with no footage looks exactly like a decline."""
    gap_start = time.time() - 30  # after the recorded footage ended
    rid_a, sha_a = hub.submit(gap_start, gap_start + 20)
    rid_d, sha_d = hub.submit(gap_start, gap_start + 20)
    rid_u, sha_u = hub.submit(hub.t0 + 10, hub.t0 + 20, cameras=["no-such-camera"])
    r = hub.decide(hub.approval(rid_a, sha_a, gap_start, gap_start + 20))
    assert r.status == 201
    r = hub.decide(
        {"decision": "decline", "request_id": rid_d, "request_sha256": sha_d, "recipient": hub.agency.keyid}
    )
    assert r.status == 201
    r = hub.decide(hub.approval(rid_u, sha_u, hub.t0 + 10, hub.t0 + 20, cameras=["no-such-camera"]))
    assert r.status == 201
    # Wait until both approvals' builds ran and found nothing (the daemon logs it; the agency sees nothing).
    deadline = time.monotonic() + 30
    while not all(f"request {rid}: no footage" in hub.daemon.log() for rid in (rid_a, rid_u)):
        assert time.monotonic() < deadline, hub.daemon.log()
        time.sleep(0.1)
    bodies = [hub.poll(rid).json() for rid in (rid_a, rid_d, rid_u)]
    # Same keys, same status, same respond_by format; only the ids differ.
    assert [set(b) for b in bodies] == [{"id", "status", "respond_by"}] * 3
    assert {b["status"] for b in bodies} == {"pending"}
