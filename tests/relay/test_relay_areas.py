"""Area requests (PROTOCOL §7.4): one signed request to a geohash cell reaches every opted-in hub of
that cell that trusts the agency, and no other; polls reveal nothing about how many or which hubs got
it until an owner approves, and then only that hub."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from camhub_protocol import rfc3339
from tests.conftest import free_port
from tests.consent.flow_env import CAMERA, HubEnv, http, start_hub_env
from tests.relay.env import relay_config, single_node, start_relay, stopping, wait_for

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="needs the age CLI")

CELL, OTHER_CELL = "u33db", "u33dc"


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


def _camera() -> str:
    # The hub must have a camera for an area request to name; this one is never reachable (the
    # footage the test approves was indexed before the daemon started, tests/consent/flow_env.py).
    return f'\n[[cameras]]\nid = "{CAMERA}"\nurl = "rtsp://127.0.0.1:{free_port()}/none"\nrecord = false\n'


def test_an_area_request_reaches_the_two_opted_in_hubs_and_not_the_third(tmp_path: Path) -> None:
    nats = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [nats.url])
    hubs: list[HubEnv] = []
    with stopping(nats, relay):
        try:
            for name, cell in (("a", CELL), ("b", CELL), ("c", OTHER_CELL)):
                (tmp_path / name).mkdir()
                extra = relay_config([nats.url], relay.url, area=cell)
                # The relay section is a table: the camera array goes before it.
                hubs.append(start_hub_env(tmp_path / name, extra_config=_camera() + extra))
            a, b, c = hubs
            for other in (b, c):
                other.add_agency(a.agency, "Town PD")  # all three trust the same agency
            for hub in hubs:
                wait_for(
                    lambda h=hub: http("GET", f"{relay.url}/hubs/{h.hub_id}/api/v1/hub").status == 200,
                    30,
                    "registered",
                )

            key = str(a.agency.directory)
            start, end = a.t0 + 10, a.t0 + 40
            asked = agency_cli(
                "request", "--relay", relay.url, "--area", CELL, "--key", key, "--camera", CAMERA,
                "--start", rfc3339.format(start), "--end", rfc3339.format(end),
                "--case-id", "2026-5", "--reason", "hit and run on Elm St", "--contact", "desk@pd.example",
            )  # fmt: skip
            rid, sha256 = asked["id"], asked["request_sha256"]
            assert asked["status"] == "pending"
            for hub in (a, b):
                wait_for(
                    lambda h=hub: h.poll(rid, agency=a.agency).status == 200, 30, "an opted-in hub took it"
                )
            # The third hub (another cell) never got it: not in its database, nothing in its log.
            assert c.poll(rid, agency=a.agency).status == 404
            assert not [e for e in c.audit_entries() if e["type"] == "request.received"]
            inbox_b = [e for e in b.audit_entries() if e["type"] == "request.received"]
            assert len(inbox_b) == 1 and inbox_b[0]["data"]["cameras"] == [CAMERA]

            # Before any approval the poll says "pending" and nothing else: no count, no hub.
            before = agency_cli("status", "--relay", relay.url, "--area", CELL, "--key", key, "--", rid)
            assert before == {"id": rid, "status": "pending", "respond_by": asked["respond_by"]}

            # Hub B's owner declines (nothing changes for the agency); hub A's owner approves.
            assert b.decide({"decision": "decline", "request_id": rid, "request_sha256": sha256,
                             "recipient": a.agency.keyid}).status == 201  # fmt: skip
            assert (
                agency_cli("status", "--relay", relay.url, "--area", CELL, "--key", key, "--", rid) == before
            )
            r = a.decide(a.approval(rid, sha256, start, end))
            assert r.status == 201, r.body
            wait_for(
                lambda: (
                    agency_cli("status", "--relay", relay.url, "--area", CELL, "--key", key, "--", rid)[
                        "status"
                    ]
                    == "fulfilled"
                ),
                60,
                "fulfilled",
            )
            after = agency_cli("status", "--relay", relay.url, "--area", CELL, "--key", key, "--", rid)
            # Only the approving hub is revealed, by its delivery URLs.
            assert {d["url"].split("/hubs/")[1].split("/")[0] for d in after["deliveries"]} == {a.hub_id}
            fetched = agency_cli(
                "fetch",
                "--relay",
                relay.url,
                "--area",
                CELL,
                "--key",
                key,
                "--out",
                str(tmp_path / "out"),
                "--",
                rid,
            )
            assert [f["hub_id"] for f in fetched] == [a.hub_id] and fetched[0]["camera"] == CAMERA
        finally:
            for hub in hubs:
                hub.stop()
