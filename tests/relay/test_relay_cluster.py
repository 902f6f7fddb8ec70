"""A 3-node NATS JetStream cluster under the relay (PROTOCOL §7.2): the queue is replicated on every
node, so losing one node (SIGKILL) while requests flow, and restarting the gateway, loses no request
the relay answered 202 for."""

from __future__ import annotations

import json
import time
from pathlib import Path

from camhub_protocol import rfc3339
from hub.agency_client import Agency, AgencyError
from tests.consent.flow_env import CAMERA, start_hub_env
from tests.relay.env import cluster, relay_config, start_relay, stopping, wait_for


def test_one_node_killed_mid_flow_and_a_relay_restart_lose_no_queued_request(tmp_path: Path) -> None:
    nodes = cluster(tmp_path / "nats")
    urls = [n.url for n in nodes]
    relay = start_relay(tmp_path, urls, "--replicas", "3")
    (tmp_path / "hub").mkdir()
    hub = start_hub_env(
        tmp_path / "hub",
        extra_config=relay_config(urls, relay.url),
        consent="agency_requests_per_hour = 1000\n",
    )
    with stopping(*nodes, relay, hub):
        hub_url = f"{relay.url}/hubs/{hub.hub_id}"
        agency = Agency(hub.agency.directory, hub_url)
        wait_for(lambda: _registered(agency), 30, "registered")
        hub.daemon.stop()  # everything below waits in the queue

        accepted: list[str] = []

        def ask(i: int) -> None:
            fields = {
                "case_id": f"c-{i}", "kind": "clip", "cameras": [CAMERA],
                "start": rfc3339.format(hub.t0 + 10), "end": rfc3339.format(hub.t0 + 20),
                "live_max_seconds": None, "reason": "r", "legal_basis": {"type": "consent", "reference": None},
                "contact": "c",
            }  # fmt: skip
            deadline = time.monotonic() + 30
            while True:
                try:
                    accepted.append(agency.request(fields, hub.hub_id)["id"])
                    return
                except AgencyError as exc:
                    # While the cluster elects a new leader the relay says 503 with Retry-After: a
                    # client tries again (a fresh signature, so a fresh id).
                    assert exc.status == 503 and time.monotonic() < deadline, exc
                    time.sleep(0.2)

        for i in range(15):
            ask(i)
        nodes[0].kill()
        for i in range(15, 30):
            ask(i)
        relay.stop()
        relay.nats = urls[1:]
        relay.start()
        for i in range(30, 35):
            ask(i)
        assert len(set(accepted)) == 35

        hub.restart()
        wait_for(lambda: _taken(hub.data_dir) >= 35, 90, "every queued request taken")
        assert _taken(hub.data_dir) == 35
        received = [e["data"]["request_id"] for e in hub.audit_entries() if e["type"] == "request.received"]
        assert sorted(received) == sorted(accepted)


def _registered(agency: Agency) -> bool:
    try:
        agency.hub()
    except Exception:
        return False
    return True


def _taken(data_dir: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM consent_requests").fetchone()[0])
    finally:
        conn.close()


_ = json
