"""End to end, through the CLIs a person would use: agency asks for 60 s, the owner approves a
narrower 30 s with a key-file-signed JWS, the agency fetches with `camhub-agency`, the stock `age`
decrypts it, the clip plays in ffprobe with the approved duration and the manifest verifies."""

from __future__ import annotations

import hashlib
import json
import re
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
from tests.consent.flow_env import CAMERA, HubEnv, Response, start_hub_env
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


@pytest.fixture
def hub_in_process(tmp_path: Path) -> Iterator[HubEnv]:
    # In the test process, so the consent clock can pass respond_by (and mutation testing sees it).
    env = start_hub_env(tmp_path, in_process=True)
    try:
        yield env
    finally:
        env.stop()


RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def _same_to_the_agency(polls: dict[str, Response], answers: dict[str, dict[str, Any]]) -> None:
    """Every poll answer is the same bytes but for the request's own id and respond_by; those two
    are the values the 202 gave, in the same format; the headers are the same but for Date."""
    shapes = {}
    for name, r in polls.items():
        doc = r.json()
        assert r.status == 200, (name, r.body)
        assert doc["id"] == answers[name]["id"], name
        assert doc["respond_by"] == answers[name]["respond_by"], (name, doc, answers[name])
        assert RFC3339_Z.fullmatch(doc["respond_by"]), doc
        shapes[name] = (
            r.body.replace(doc["id"].encode(), b"<id>").replace(doc["respond_by"].encode(), b"<respond_by>"),
            {k.lower(): v for k, v in r.headers.items() if k.lower() != "date"},
        )
    first = next(iter(shapes.values()))
    assert all(shape == first for shape in shapes.values()), shapes


def test_approved_range_without_footage_stays_pending_like_a_decline(hub_in_process: HubEnv) -> None:
    """§2.2 privacy rule: an approval of a range without footage, a decline and an approval naming an
    unknown camera look exactly like a request nobody decided yet — pending, then closed after
    respond_by — byte for byte but for the request id and its respond_by (which stays what the 202
    said: nothing about when or how the owner decided), with the same headers."""
    hub = hub_in_process
    gap_start = time.time() - 30  # after the recorded footage ended
    answers: dict[str, dict[str, Any]] = {}
    digests: dict[str, str] = {}
    for name, body in (
        ("undecided", hub.request_body(gap_start, gap_start + 20)),
        ("no footage", hub.request_body(gap_start, gap_start + 20)),
        ("declined", hub.request_body(gap_start, gap_start + 20)),
        ("unknown camera", hub.request_body(hub.t0 + 10, hub.t0 + 20, cameras=["no-such-camera"])),
    ):
        r = hub.signed("POST", "/api/agency/v1/requests", body)
        assert r.status == 202, r.body
        answers[name] = r.json()
        assert set(answers[name]) == {"id", "status", "respond_by"} and answers[name]["status"] == "pending"
        digests[name] = hashlib.sha256(body).hexdigest()
    ids = {name: a["id"] for name, a in answers.items()}
    r = hub.decide(hub.approval(ids["no footage"], digests["no footage"], gap_start, gap_start + 20))
    assert r.status == 201, r.body
    r = hub.decide(
        {"decision": "decline", "request_id": ids["declined"], "request_sha256": digests["declined"],
         "recipient": hub.agency.keyid}
    )  # fmt: skip
    assert r.status == 201, r.body
    r = hub.decide(
        hub.approval(ids["unknown camera"], digests["unknown camera"], hub.t0 + 10, hub.t0 + 20,
                     cameras=["no-such-camera"])
    )  # fmt: skip
    assert r.status == 201, r.body
    # Wait until both approvals' builds ran and found nothing (the hub logs it; the agency sees nothing).
    deadline = time.monotonic() + hub.deadline_s
    while not all(
        f"request {ids[n]}: no footage" in hub.daemon.log() for n in ("no footage", "unknown camera")
    ):
        assert time.monotonic() < deadline, hub.daemon.log()
        time.sleep(0.1)

    polls = {name: hub.poll(rid) for name, rid in ids.items()}
    assert {r.json()["status"] for r in polls.values()} == {"pending"}
    _same_to_the_agency(polls, answers)

    # After respond_by (the hub's clock moved 8 days on; signatures made at that time): all closed alike.
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    later = time.time() + 8 * 86400
    consent.now = lambda: time.time() + 8 * 86400
    try:
        polls = {
            name: hub.signed("GET", f"/api/agency/v1/requests/{rid}", created=int(later))
            for name, rid in ids.items()
        }
    finally:
        consent.now = time.time
    assert {r.json()["status"] for r in polls.values()} == {"closed"}, {n: r.body for n, r in polls.items()}
    _same_to_the_agency(polls, answers)
