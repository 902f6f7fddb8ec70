"""What one trusted agency can take (issue 12, PROTOCOL §2.1): a per-agency request rate, no clip
ranges in the future, and retention holds that end with respond_by, are listed to the owner and are
released by a decline. Against a real daemon with recorded footage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.consent.flow_env import CAMERA, HubEnv, http, new_agency, start_hub_env
from tests.consent.test_owner_keys import owner_headers

PER_HOUR = 3
PATH = "/api/agency/v1/requests"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEnv]:
    (tmp_path / "hub").mkdir()
    env = start_hub_env(tmp_path / "hub", consent=f"agency_requests_per_hour = {PER_HOUR}")
    try:
        yield env
    finally:
        env.stop()


def test_each_agency_files_at_most_its_hourly_quota(hub: HubEnv, tmp_path: Path) -> None:
    ids = [hub.submit(hub.t0 + 10, hub.t0 + 20)[0] for _ in range(PER_HOUR)]
    since = hub.last_seq()
    r = hub.signed("POST", PATH, hub.request_body(hub.t0 + 10, hub.t0 + 20))
    assert r.status == 429 and r.is_json_error and r.json()["error"] == "rate_limited", r.body
    # The quota refills at PER_HOUR an hour: the next request is 3600 / PER_HOUR s away.
    assert 3600 / PER_HOUR - 5 <= int(r.headers["Retry-After"]) <= 3600 / PER_HOUR + 1
    entry = next(e for e in hub.audit_entries(since) if e["type"] == "request.rejected")
    assert entry["actor"] == f"agency:{hub.agency.keyid}" and entry["data"]["code"] == "rate_limited"
    # Polls are not new requests: the agency still learns the state of what it asked.
    assert hub.poll(ids[0]).status == 200
    # Another agency has its own quota.
    other = new_agency(tmp_path / "other")
    hub.add_agency(other, "Other PD")
    hub.submit(hub.t0 + 10, hub.t0 + 20, agency=other)


def test_a_clip_that_ends_in_the_future_is_refused(hub: HubEnv) -> None:
    now = time.time()
    since = hub.last_seq()
    r = hub.signed("POST", PATH, hub.request_body(now - 60, now + 3600))
    assert r.status == 400 and r.json()["error"] == "invalid_field", r.body
    assert "end" in r.json()["detail"]
    rejected = [e for e in hub.audit_entries(since) if e["type"] == "request.rejected"]
    assert rejected and rejected[-1]["data"]["code"] == "invalid_field"
    assert not [e for e in hub.audit_entries(since) if e["type"] == "request.received"]


def test_holds_are_listed_end_with_respond_by_and_a_decline_releases_them(hub: HubEnv) -> None:
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 30)
    headers = owner_headers(hub, hub.owner)
    r = http("GET", hub.url + "/api/v1/owner/holds", headers=headers)
    assert r.status == 200, r.body
    holds = [h for h in r.json()["holds"] if h.get("request_id") == rid]
    assert len(holds) == 1
    hold = holds[0]
    assert hold["reason"] == "pending_request" and hold["cameras"] == [CAMERA]
    assert (hold["start"], hold["end"]) == (hub.t0 + 10, hub.t0 + 30)
    poll = hub.poll(rid).json()
    from camhub_protocol import rfc3339

    assert hold["until"] == pytest.approx(rfc3339.parse(poll["respond_by"]), abs=0.01)
    assert hold["agency_name"] == "Test PD"
    decline = {
        "decision": "decline", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid,
    }  # fmt: skip
    assert hub.decide(decline).status == 201
    r = http("GET", hub.url + "/api/v1/owner/holds", headers=headers)
    assert not [h for h in r.json()["holds"] if h.get("request_id") == rid], json.dumps(r.json())
    # The holds route is the owner's: no session, no list.
    assert http("GET", hub.url + "/api/v1/owner/holds").status == 401
