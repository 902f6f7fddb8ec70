"""End to end through a real relay (PROTOCOL §7): nats-server + camhub-relay + a hub that dials out,
and `camhub-agency --relay URL --hub HUB_ID` as an agency outside the home would run it.

request → the owner approves through the relay → fetch → stock `age -d` → the manifest verifies; a
request sent while the hub is offline waits in JetStream and is taken when the hub comes back; a
relay restart loses nothing; a revoke stops a delivery in flight.
"""

from __future__ import annotations

import asyncio
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
from tests.consent.flow_env import CAMERA, HubEnv, http, start_hub_env
from tests.relay.env import NatsNode, RelayProcess, relay_config, single_node, start_relay, wait_for

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="needs the age CLI")


def agency_cli(*args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "hub.agency_client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def decide_through_relay(hub_url: str, compact: str) -> dict[str, Any]:
    from hub.consent import owner_client

    return owner_client.post_sealed_decision(hub_url, owner_client.hub_identity(hub_url), compact)


def registered(relay: RelayProcess, hub_id: str) -> bool:
    return http("GET", f"{relay.url}/hubs/{hub_id}/api/v1/hub").status == 200


class Relayed:
    """One NATS node, one relay, one hub linked to it."""

    def __init__(self, tmp: Path, hub_config: str = "") -> None:
        self.tmp = tmp
        self.nats: NatsNode = single_node(tmp / "nats")
        self.relay = start_relay(tmp, [self.nats.url])
        (tmp / "hub").mkdir()
        self.hub: HubEnv = start_hub_env(
            tmp / "hub", extra_config=relay_config([self.nats.url], self.relay.url) + hub_config
        )
        wait_for(lambda: registered(self.relay, self.hub.hub_id), 30, "the hub registered with the relay")

    @property
    def hub_url(self) -> str:
        return f"{self.relay.url}/hubs/{self.hub.hub_id}"

    def ask(self, start: float, end: float) -> dict[str, Any]:
        return agency_cli(
            "request", "--relay", self.relay.url, "--hub", self.hub.hub_id, "--key", str(self.hub.agency.directory),
            "--camera", CAMERA, "--start", rfc3339.format(start), "--end", rfc3339.format(end),
            "--case-id", "2026-000777", "--reason", "bike stolen", "--contact", "desk@pd.example",
        )  # fmt: skip

    def status(self, request_id: str) -> dict[str, Any]:
        return agency_cli(
            "status", "--relay", self.relay.url, "--hub", self.hub.hub_id, "--key", str(self.hub.agency.directory),
            "--", request_id,
        )  # fmt: skip

    def approve_through_relay(self, request_id: str, sha256: str, start: float, end: float) -> dict[str, Any]:
        return self.decide_through_relay(self.hub.sign(self.hub.approval(request_id, sha256, start, end)))

    def decide_through_relay(self, compact: str) -> dict[str, Any]:
        """An owner decision through the relay, sealed to the hub as owner tools send it (§7.6)."""
        return decide_through_relay(self.hub_url, compact)

    def stop(self) -> None:
        for stop in (self.hub.stop, self.relay.stop, self.nats.stop):
            try:
                stop()
            except Exception:
                pass


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[Relayed]:
    env = Relayed(tmp_path)
    try:
        yield env
    finally:
        env.stop()


def test_request_approve_through_the_relay_fetch_and_decrypt_with_stock_age(
    relayed: Relayed, tmp_path: Path
) -> None:
    hub = relayed.hub
    start, end = hub.t0 + 10, hub.t0 + 50
    asked = relayed.ask(start, end)
    assert asked["status"] == "pending" and len(asked["id"]) == 32
    request_id, sha256 = asked["id"], asked["request_sha256"]
    wait_for(lambda: hub.poll(request_id).status == 200, 30, "the hub took the request from the queue")
    # The request the hub stored is the one the agency signed, under the id both sides derive.
    assert relayed.status(request_id)["status"] == "pending"

    # The owner, away from home, approves with the owner CLI through the relay (§7.3).
    from cryptography.hazmat.primitives import serialization

    owner_key = tmp_path / "owner.key"
    owner_key.write_bytes(
        hub.owner.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    owner_key.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "owner", "approve", "--url", relayed.hub_url, "--key", str(owner_key),
         "--request-id", request_id, "--request-sha256", sha256, "--recipient", hub.agency.keyid,
         "--camera", CAMERA, "--start", rfc3339.format(start), "--end", rfc3339.format(end), "--valid-hours", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["request_id"] == request_id
    wait_for(lambda: relayed.status(request_id)["status"] == "fulfilled", 60, "fulfilled")
    state = relayed.status(request_id)
    # Poll answers that came through the relay point at the relay (§7.1).
    assert all(
        d["url"].startswith(f"{relayed.hub_url}/api/agency/v1/deliveries/") for d in state["deliveries"]
    )

    out = tmp_path / "fetched"
    fetched = agency_cli(
        "fetch", "--relay", relayed.relay.url, "--hub", hub.hub_id, "--key", str(hub.agency.directory),
        "--out", str(out), "--", request_id,
    )  # fmt: skip
    assert len(fetched) == 1 and fetched[0]["camera"] == CAMERA and fetched[0]["hub_id"] == hub.hub_id
    encrypted = Path(fetched[0]["encrypted"])
    assert hashlib.sha256(encrypted.read_bytes()).hexdigest() == state["deliveries"][0]["sha256"]
    tar_path = tmp_path / "delivery.tar"
    subprocess.run(
        ["age", "-d", "-i", str(hub.agency.directory / "age.key"), "-o", str(tar_path), str(encrypted)],
        check=True,
        timeout=60,
    )
    with tarfile.open(tar_path) as tar:
        assert sorted(tar.getnames()) == sorted(
            [f"clip-{CAMERA}.mp4", "manifest.json", "manifest.jws", "audit-proof.json"]
        )
    manifest = delivery.verify_tar(tar_path, hub.client().hub()["public_jwk"], tmp_path / "plain").manifest
    assert (manifest["hub_id"], manifest["request_id"], manifest["request_sha256"]) == (
        hub.hub_id,
        request_id,
        sha256,
    )

    entries = hub.audit_entries()
    received = [
        e for e in entries if e["type"] == "request.received" and e["data"]["request_id"] == request_id
    ]
    egress = [e for e in entries if e["type"] == "egress.delivery" and e["data"]["request_id"] == request_id]
    assert len(received) == 1 and len(egress) == 1


def test_a_request_sent_while_the_hub_is_offline_waits_and_is_taken_when_it_returns(relayed: Relayed) -> None:
    hub = relayed.hub
    hub.daemon.stop()
    asked = relayed.ask(hub.t0 + 10, hub.t0 + 30)
    # The agency cannot tell "offline" from "pending": the same 202, then the same poll answer.
    assert asked["status"] == "pending"
    offline = relayed.status(asked["id"])
    assert set(offline) == {"id", "status", "respond_by"} and offline["status"] == "pending"
    assert offline["respond_by"] == asked["respond_by"]
    # The relay holds it sealed to the hub (§7.6): nothing of the request is readable in JetStream.
    queued = asyncio.run(_queued_bodies(relayed.nats.url, relayed.hub.hub_id))
    assert len(queued) == 1 and queued[0].startswith(b"age-encryption.org/v1\n")
    assert b"bike stolen" not in queued[0] and b"desk@pd.example" not in queued[0]
    # Everything else needs the hub: a clear 503, never a hang; and nothing in clear.
    r = http("POST", f"{relayed.hub_url}/api/v1/decisions", b"x.y.z", {"Content-Type": "application/age"})
    assert r.status == 503 and r.json()["error"] == "hub_unavailable" and "Retry-After" in r.headers
    r = http("POST", f"{relayed.hub_url}/api/v1/decisions", b"x.y.z", {"Content-Type": "application/jose"})
    assert r.status == 415 and r.json()["error"] == "seal_to_hub"

    # Restart the relay while the request waits: it is in JetStream, not in the gateway.
    relayed.relay.stop()
    relayed.relay.start()
    hub.restart()
    wait_for(lambda: hub.poll(asked["id"]).status == 200, 60, "the hub took the queued request on return")
    online = relayed.status(asked["id"])
    assert online == offline  # the hub's own answer, through the relay, is the one the relay gave
    received = [e for e in hub.audit_entries() if e["type"] == "request.received"]
    assert [e["data"]["request_id"] for e in received] == [asked["id"]]


def test_a_request_refused_after_it_waited_says_why(relayed: Relayed) -> None:
    hub = relayed.hub
    hub.daemon.stop()
    # A clip that ends in the future (§2.1) is refused by the hub, not by the relay (it reads nothing).
    asked = relayed.ask(time.time() - 30, time.time() + 3600)
    hub.restart()
    wait_for(lambda: relayed.status(asked["id"])["status"] == "refused", 60, "refused")
    refused = relayed.status(asked["id"])
    assert refused["error"] == "invalid_field" and refused["respond_by"] == asked["respond_by"]


@pytest.fixture
def big(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Relayed]:
    """A hub with ~1 MB/s of footage, so a 70 s delivery is far bigger than every buffer on the way."""
    env = Relayed.__new__(Relayed)
    env.tmp = tmp_path
    env.nats = single_node(tmp_path / "nats")
    env.relay = start_relay(tmp_path, [env.nats.url], *getattr(request, "param", ()))
    (tmp_path / "hub").mkdir()
    env.hub = start_hub_env(
        tmp_path / "hub", extra_config=relay_config([env.nats.url], env.relay.url), noise=True
    )
    try:
        wait_for(lambda: registered(env.relay, env.hub.hub_id), 30, "registered")
        yield env
    finally:
        env.stop()


def test_a_revoke_stops_a_delivery_in_flight_through_the_relay(big: Relayed, tmp_path: Path) -> None:
    import http.client as httpclient
    from urllib.parse import urlsplit

    from hub.agency_client import Agency

    hub = big.hub
    start, end = hub.t0 + 5, hub.t0 + 75
    asked = big.ask(start, end)
    wait_for(lambda: hub.poll(asked["id"]).status == 200, 30, "taken")
    big.approve_through_relay(asked["id"], asked["request_sha256"], start, end)
    wait_for(lambda: big.status(asked["id"])["status"] == "fulfilled", 120, "fulfilled")
    item = big.status(asked["id"])["deliveries"][0]
    # Far more than the relay's window (4 MiB) and the sockets' buffers: the revoke lands mid-way.
    assert item["bytes"] > 40 * 1024 * 1024, item

    headers = Agency(hub.agency.directory, big.hub_url).sign_headers("GET", item["url"], b"", None)
    conn = httpclient.HTTPConnection(urlsplit(big.relay.url).netloc, timeout=60)
    conn.request("GET", urlsplit(item["url"]).path, headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == item["bytes"]
    got = len(resp.read(1024 * 1024))
    # The owner revokes (through the relay) while the agency holds the transfer open.
    big.decide_through_relay(hub.sign({"decision": "revoke", "request_id": asked["id"]}))
    while True:
        try:
            chunk = resp.read(1024 * 1024)
        except httpclient.IncompleteRead as exc:
            got += len(exc.partial)
            break
        if not chunk:
            break
        got += len(chunk)
    conn.close()
    assert got < item["bytes"], "the whole delivery went out after the revoke"
    stopped = [e for e in hub.audit_entries() if e["type"] == "egress.delivery.stopped"]
    assert len(stopped) == 1 and stopped[0]["data"]["code"] == "grant_revoked"


def test_through_the_relay_a_decline_looks_like_no_footage(relayed: Relayed) -> None:
    """§2.2 through the relay: the relay passes the hub's one answer on, so a declined request and an
    approved one without footage in its range answer the same bytes (bar the id and respond_by)."""
    hub = relayed.hub
    declined = relayed.ask(hub.t0 + 10, hub.t0 + 20)
    # A range the hub recorded nothing in (before its footage starts).
    empty = relayed.ask(hub.t0 - 3600, hub.t0 - 3500)
    for asked in (declined, empty):
        wait_for(lambda a=asked: hub.poll(a["id"]).status == 200, 30, "taken")
    r = hub.decide({"decision": "decline", "request_id": declined["id"], "request_sha256": declined["request_sha256"],
                    "recipient": hub.agency.keyid})  # fmt: skip
    assert r.status == 201, r.body
    r = hub.decide(hub.approval(empty["id"], empty["request_sha256"], hub.t0 - 3600, hub.t0 - 3500))
    assert r.status == 201, r.body
    # Give the empty approval's build its chance to run (it finds nothing and records nothing).
    wait_for(lambda: _build_settled(hub), 30, "the delivery build for the empty range to finish")
    answers = []
    for asked in (declined, empty):
        r = http(
            "GET",
            f"{relayed.hub_url}/api/agency/v1/requests/{asked['id']}",
            headers=_signed_get(relayed, asked["id"]),
        )
        assert r.status == 200
        answers.append(
            (
                r.json() | {"id": "-", "respond_by": "-"},
                r.headers.get("Content-Type"),
                len(r.body) - len(asked["id"]),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0]["status"] == "pending"


def _signed_get(relayed: Relayed, request_id: str) -> dict[str, str]:
    from hub.agency_client import Agency

    agency = Agency(relayed.hub.agency.directory, relayed.hub_url)
    return agency.sign_headers("GET", f"/api/agency/v1/requests/{request_id}", b"", None)


def _build_settled(hub: HubEnv) -> bool:
    return "no footage" in hub.daemon.log()


def test_the_relay_prints_ready_and_stops_on_sigterm(relayed: Relayed) -> None:
    assert f"camhub-relay ready url={relayed.relay.url}" in relayed.relay.log()
    assert relayed.relay.stop(timeout=5) == 0


@pytest.mark.parametrize("big", [("--write-timeout-s", "2")], indirect=True)
def test_an_agency_that_stops_reading_is_cut_and_the_hub_stops_sending(big: Relayed) -> None:
    import http.client as httpclient
    from urllib.parse import urlsplit

    from hub.agency_client import Agency

    hub = big.hub
    start, end = hub.t0 + 5, hub.t0 + 75
    asked = big.ask(start, end)
    wait_for(lambda: hub.poll(asked["id"]).status == 200, 30, "taken")
    big.approve_through_relay(asked["id"], asked["request_sha256"], start, end)
    wait_for(lambda: big.status(asked["id"])["status"] == "fulfilled", 120, "fulfilled")
    item = big.status(asked["id"])["deliveries"][0]
    headers = Agency(hub.agency.directory, big.hub_url).sign_headers("GET", item["url"], b"", None)
    conn = httpclient.HTTPConnection(urlsplit(big.relay.url).netloc, timeout=60)
    conn.request("GET", urlsplit(item["url"]).path, headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200
    # Read nothing: the relay cuts the connection after --write-timeout-s and the hub, told so, stops.
    wait_for(lambda: "abandoned" in hub.daemon.log(), 60, "the hub gave the transfer up")
    assert "cut" in big.relay.log()
    got = 0
    try:
        while chunk := resp.read(1024 * 1024):
            got += len(chunk)
    except httpclient.IncompleteRead as exc:
        got += len(exc.partial)
    conn.close()
    assert got < item["bytes"]


async def _queued_bodies(nats_url: str, hub_id: str) -> list[bytes]:
    """The bodies waiting in the hub's queue, as the relay operator could read them."""
    import nats

    from camhub_protocol import relay_wire as wire

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(wire.QUEUE_STREAM)
        bodies = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(wire.QUEUE_STREAM, seq)
            if msg.subject == wire.queue_subject(hub_id):
                bodies.append(msg.data or b"")
        return bodies
    finally:
        await nc.close()
