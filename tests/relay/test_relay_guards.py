"""What a relay can reach on a hub (PROTOCOL §7.1), held to `hub/api/guards.py`, and a hostile relay.

The relay is untrusted: these tests play it with a bare NATS client against a real hub, sending the
calls a gateway never would — every owner-session route, pairing, login, audit proofs, camera WHIP,
another hub's prefix, forged signatures, junk in the queue — and check that the hub answers 404 (or
401 for a signature that proves nothing), counts the refusals under `relay …` route names, and
stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from camhub_protocol import httpsig
from camhub_protocol import relay_wire as wire
from hub.api import guards
from hub.consent import gate
from hub.uplink import calls
from tests.consent.flow_env import HubEnv, start_hub_env
from tests.relay.env import NatsNode, relay_config, single_node, start_relay, stopping, wait_for

PUBLIC = "http://relay.test:8090"


def test_relayed_paths_are_hub_routes_with_the_same_guard_and_never_owner_routes() -> None:
    assert guards.RELAYED
    for (method, path), declared in guards.RELAYED.items():
        assert guards.ROUTES[(method, path)] == declared, (method, path)
        assert declared.guard not in guards.SESSION_GUARDS, (method, path)
        if declared.media:
            assert declared.guard in guards.MEDIA_GUARDS
            assert f"{{public_url}}/hubs/{{hub_id}}{path}" in (gate.__doc__ or ""), (
                f"gate.py must list {path}"
            )
    for method, path in guards.ROUTES:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        found = calls.match(method, concrete)
        assert (found is not None) == ((method, path) in guards.RELAYED), (method, path, found)


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[tuple[NatsNode, HubEnv]]:
    node = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [node.url])  # creates the streams and buckets, then goes away
    relay.stop()
    (tmp_path / "hub").mkdir()
    hub = start_hub_env(
        tmp_path / "hub", extra_config=relay_config([node.url], PUBLIC, extra="calls_burst = 10000\n")
    )
    with stopping(node, hub):
        yield node, hub


async def _call(nc: nats.NATS, hub_id: str, env: wire.Envelope) -> wire.Envelope:
    msg = await nc.request(wire.call_subject(hub_id), env.body, timeout=10, headers=env.request_headers())
    return wire.Envelope.from_answer(msg.headers, msg.data)


async def test_a_hostile_relay_reaches_no_owner_route_and_forges_nothing(
    linked: tuple[NatsNode, HubEnv],
) -> None:
    node, hub = linked
    nc = await nats.connect(node.url)
    try:
        for _ in range(100):
            try:
                await _call(nc, hub.hub_id, wire.Envelope("GET", f"/hubs/{hub.hub_id}/api/v1/hub"))
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)  # the hub is still subscribing
        prefix = f"/hubs/{hub.hub_id}"
        for method, path in guards.ROUTES:
            if (method, path) in guards.RELAYED:
                continue
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            for target in (
                prefix + concrete,
                concrete,
                f"/hubs/{'A' * 43}{concrete}",
                prefix + "/.." + concrete,
            ):
                answer = await _call(
                    nc, hub.hub_id, wire.Envelope(method, target, fields=[("Cookie", "x=y")])
                )
                assert answer.status == 404, (method, target, answer.status, answer.body[:200])
        # An owner's decision through the relay must verify like any other; a junk one is 400/403.
        junk = await _call(nc, hub.hub_id, wire.Envelope(
            "POST", f"{prefix}/api/v1/decisions", fields=[("Content-Type", "application/jose")], body=b"a.b.c"))  # fmt: skip
        assert junk.status in (400, 403)
        # A poll the relay "signs" with a key it made up: 401, and counted under the relay route name.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = f"{prefix}/api/agency/v1/requests/{'0' * 32}"
        fields = httpsig.sign_request(
            method="GET", authority="relay.test:8090", path=path, query=None, headers=[], body=b"",
            private_key=Ed25519PrivateKey.generate(), keyid=hub.agency.keyid, created=int(__import__("time").time()),
            scheme="http",
        )  # fmt: skip
        forged = await _call(nc, hub.hub_id, wire.Envelope("GET", path, fields=list(fields)))
        assert forged.status == 401 and json.loads(forged.body)["error"] == "bad_signature"
        # Junk in the hub's queue: not a request, a request with a forged signature.
        js = nc.jetstream()
        await js.publish(wire.queue_subject(hub.hub_id), b"junk")
        body = hub.request_body(hub.t0, hub.t0 + 5)
        qpath = f"{prefix}/api/agency/v1/requests"
        qfields = [("Content-Type", "application/json")]
        qfields += httpsig.sign_request(
            method="POST", authority="relay.test:8090", path=qpath, query=None, headers=qfields, body=body,
            private_key=Ed25519PrivateKey.generate(), keyid=hub.agency.keyid, created=int(__import__("time").time()),
            scheme="http",
        )  # fmt: skip
        queued = wire.Envelope("POST", qpath, fields=qfields, body=body)
        await js.publish(wire.queue_subject(hub.hub_id), body, headers=queued.request_headers())
        wait_for(lambda: _queue_empty(hub), 30, "the hub took both from its queue")
    finally:
        await nc.close()
    entries = hub.audit_entries()
    rejected = [e for e in entries if e["type"] in ("request.rejected", "decision.rejected")]
    routes = {(e["data"].get("route"), e["data"].get("code")) for e in rejected}
    assert ("relay GET /api/agency/v1/requests/{id}", "bad_signature") in routes
    assert ("relay POST /api/agency/v1/requests", "bad_signature") in routes
    assert ("relay POST /api/v1/decisions", "invalid_jws") in routes or any(
        r == "relay POST /api/v1/decisions" for r, _ in routes
    )
    assert not [e for e in entries if e["type"] == "request.received"]


def _queue_empty(hub: HubEnv) -> bool:
    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT entry FROM audit_entries").fetchall()
    finally:
        conn.close()
    found = [json.loads(r[0]) for r in rows]
    return any(e["data"].get("route") == "relay POST /api/agency/v1/requests" for e in found)
