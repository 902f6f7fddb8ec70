"""Abuse at the relay (PROTOCOL §7.5): bodies over 64 KiB are 413, clients and hubs are rate limited
(429 with Retry-After) by every gateway, a hub's queue is bounded (429 `queue_full`), and a flood of
calls at the relay for a hub does not slow that hub's recording."""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from hub.agency_client import Agency, AgencyError
from tests.consent.flow_env import start_hub_env
from tests.faults.hubproc import SimProcess, db, hub_env, until
from tests.relay.env import relay_config, single_node, start_relay, stopping, wait_for
from tests.security.test_floods import Client


def _clip(agency: Agency, hub_id: str, t0: float) -> dict[str, object]:
    from camhub_protocol import rfc3339

    fields = {
        "case_id": "c", "kind": "clip", "cameras": ["front-door"], "start": rfc3339.format(t0),
        "end": rfc3339.format(t0 + 5), "live_max_seconds": None, "reason": "r",
        "legal_basis": {"type": "consent", "reference": None}, "contact": "c",
    }  # fmt: skip
    return agency.request(fields, hub_id)


def test_bodies_clients_hubs_and_queues_are_limited(tmp_path: Path) -> None:
    nats = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [nats.url], "--queue-per-hub", "3")
    # Two more gateways on the same NATS: one strict per client, one strict per hub. Queue limits are
    # the stream's, shared by every gateway (each one sets them at start), so they all say 3.
    q = ("--queue-per-hub", "3")
    per_client = start_relay(
        tmp_path, [nats.url], *q, "--burst", "5", "--rate-per-s", "0.1", name="per-client"
    )
    per_hub = start_relay(
        tmp_path, [nats.url], *q, "--hub-burst", "3", "--hub-rate-per-s", "0.1", name="per-hub"
    )
    (tmp_path / "hub").mkdir()
    hub = start_hub_env(tmp_path / "hub", footage=False, extra_config=relay_config([nats.url], relay.url))
    with stopping(nats, relay, per_client, per_hub, hub):
        prefix = f"/hubs/{hub.hub_id}"
        client = Client(relay.url)
        wait_for(lambda: client.call("GET", f"{prefix}/api/v1/hub")[0] == 200, 30, "registered")
        hub.daemon.stop()

        status, _, body = client.call(
            "POST",
            f"{prefix}/api/agency/v1/requests",
            b"x" * (64 * 1024 + 1),
            {"Content-Type": "application/json"},
        )
        assert status == 413 and b"body_too_large" in body

        agency = Agency(hub.agency.directory, relay.url + prefix)
        for _ in range(3):
            assert _clip(agency, hub.hub_id, hub.t0)["status"] == "pending"
        try:
            _clip(agency, hub.hub_id, hub.t0)
            raise AssertionError("a fourth request queued for an offline hub past --queue-per-hub 3")
        except AgencyError as exc:
            assert exc.status == 429 and exc.body["error"] == "queue_full"

        strict = Client(per_client.url)
        statuses = [strict.call("GET", f"{prefix}/api/v1/hub")[0] for _ in range(6)]
        assert statuses == [200] * 5 + [429], statuses
        status, headers, _ = strict.call("GET", f"{prefix}/api/v1/hub")
        assert status == 429 and int(headers["retry-after"]) >= 1
        other = Client(per_client.url, source="127.0.0.2")  # another client is not slowed down
        assert other.call("GET", f"{prefix}/api/v1/hub")[0] == 200

        hubs = Client(per_hub.url)
        statuses = [hubs.call("GET", f"{prefix}/api/v1/hub")[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429], statuses
        # Another hub's bucket is its own (this one is unknown to the relay: 404, not 429).
        assert hubs.call("GET", f"/hubs/{'B' * 43}/api/v1/hub")[0] == 404
        for c in (client, strict, other, hubs):
            c.close()


def test_a_flood_at_the_relay_does_not_slow_the_hubs_recording(tmp_path: Path) -> None:
    nats = single_node(tmp_path / "nats")
    # Generous gateway limits, so that the flood reaches the hub and the hub's own limit is tested.
    relay = start_relay(
        tmp_path, [nats.url], "--burst", "100000", "--rate-per-s", "100000", "--hub-burst", "100000",
        "--hub-rate-per-s", "100000",
    )  # fmt: skip
    sim = SimProcess(tmp_path, 1)
    env = hub_env(
        tmp_path,
        "[storage]\nsegment_seconds = 1\n" + sim.camera_toml("sim-1") + relay_config([nats.url], relay.url),
        footage=False,
    )
    with stopping(nats, relay, sim, env):

        def segments() -> list[sqlite3.Row]:
            conn = db(env.data_dir)
            try:
                return conn.execute(
                    "SELECT start_at, end_at FROM segments WHERE camera_id = 'sim-1'"
                ).fetchall()
            finally:
                conn.close()

        prefix = f"/hubs/{env.hub_id}"
        probe = Client(relay.url)
        until(lambda: probe.call("GET", f"{prefix}/api/v1/hub")[0] == 200, 30, "registered")
        probe.close()
        until(lambda: len(segments()) >= 3, 60, "recording to start")
        started = time.time()
        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + 120

        def flood(calls: int) -> None:
            client = Client(relay.url)
            try:
                for _ in range(calls):
                    if time.monotonic() > deadline:
                        return
                    status, _, _ = client.call(
                        "GET", f"{prefix}/api/agency/v1/requests/{secrets.token_hex(16)}",
                        headers={"Signature-Input": 'sig1=("@method");keyid="k";nonce="n";created=1',
                                 "Signature": "sig1=:AAAA:"},
                    )  # fmt: skip
                    with lock:
                        statuses[status] += 1
            finally:
                client.close()

        workers = [threading.Thread(target=flood, args=(300,)) for _ in range(5)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(150)
        ended = time.time()
        assert sum(statuses.values()) == 1500, statuses
        assert set(statuses) <= {401, 404, 429, 503}, statuses
        assert statuses[429] > 0, statuses  # the hub's own limit on relayed calls answered part of it

        until(lambda: any(s["end_at"] >= ended for s in segments()), 30, "a segment after the flood")
        spans = sorted((s["start_at"], s["end_at"]) for s in segments())
        covering = [sp for sp in spans if sp[1] >= started and sp[0] <= ended]
        assert covering and covering[0][0] <= started and covering[-1][1] >= ended, (covering, started, ended)
        for (_, end_a), (start_b, _) in itertools.pairwise(covering):
            assert start_b - end_a < 0.5, ("a gap in recording during the flood", end_a, start_b)
        conn = db(env.data_dir)
        try:
            gaps = conn.execute(
                "SELECT * FROM recording_gaps WHERE camera_id = 'sim-1' AND end_at >= ? AND start_at <= ?",
                (started, ended),
            ).fetchall()
        finally:
            conn.close()
        assert not gaps, [dict(g) for g in gaps]


def test_a_nats_that_stops_answering_is_a_clear_503_never_a_504(tmp_path: Path) -> None:
    """A NATS node that hangs (SIGSTOP: it keeps the connection but answers nothing) makes the relay
    answer 503 `relay_unavailable` with Retry-After — aiohttp would turn the TimeoutError into a bare
    504 (it did, under a node kill in the bench). The reference client reports it as an AgencyError
    with that status, as every other call's error, so a caller can retry on it (the cluster test's
    client does; a bare urllib HTTPError from `hub()` once slipped past it)."""
    import signal

    from hub.agency_client import keygen
    from tests.consent.flow_env import http

    nats = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [nats.url])
    keygen(tmp_path / "agency")
    agency = Agency(tmp_path / "agency", f"{relay.url}/hubs/{'A' * 43}")
    with stopping(nats, relay):
        assert nats.proc is not None
        nats.proc.send_signal(signal.SIGSTOP)
        try:
            r = http("GET", f"{relay.url}/hubs/{'A' * 43}/api/v1/hub")
            try:
                agency.hub()
                raised: AgencyError | None = None
            except AgencyError as exc:
                raised = exc
        finally:
            nats.proc.send_signal(signal.SIGCONT)
        assert r.status == 503 and r.json()["error"] == "relay_unavailable" and "Retry-After" in r.headers
        assert raised is not None and raised.status == 503, raised
        assert raised.body == {"error": "relay_unavailable", "detail": r.json()["detail"]}, raised.body
