"""Every refusal of PROTOCOL.md §2 and §3 against a real daemon: the status, the error code, an audit
entry, and nothing but a JSON error body (zero footage bytes).

One hub (with recorded footage, an enrolled owner and a trusted agency) serves the whole module;
each test makes its own requests, keys and agencies, so the tests do not depend on each other's order.
It runs in a thread of the test process (`thread_hub.ThreadHub`: the daemon's own `running_hub`,
over loopback HTTP like any client) so that `make mutate` can see which of these tests reach which
consent function; `camhub run` itself is exercised by test_flow_e2e.py and test_flow_cli.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import httpsig, rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from tests.consent.flow_env import CAMERA, HubEnv, Response, assert_refused, http, new_agency, start_hub_env


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    env = start_hub_env(tmp_path_factory.mktemp("hub"), in_process=True)
    try:
        yield env
    finally:
        env.stop()


def _body(env: HubEnv, /, **overrides: Any) -> bytes:
    return env.request_body(env.t0 + 10, env.t0 + 70, **overrides)


PATH = "/api/agency/v1/requests"


# --- §2: RFC 9421 request signatures ---------------------------------------------------------


def test_accepted_request_is_audited(hub: HubEnv) -> None:
    since = hub.last_seq()
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    got = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    assert got and got[-1]["data"]["request_id"] == rid and got[-1]["data"]["request_sha256"] == sha
    assert got[-1]["actor"] == f"agency:{hub.agency.keyid}"


def test_bad_signature(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub), key=Ed25519PrivateKey.generate())
    assert_refused(hub, r, 401, "bad_signature", since)


def test_unknown_key(hub: HubEnv, tmp_path: Path) -> None:
    stranger = new_agency(tmp_path / "stranger")
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub), agency=stranger)
    entry = assert_refused(hub, r, 401, "unknown_key", since)
    assert entry["data"]["claimed_keyid"] == stranger.keyid
    # Nothing about cameras or footage in the answer.
    assert CAMERA not in r.body.decode()


def test_removed_agency_is_refused_and_its_requests_close(hub: HubEnv, tmp_path: Path) -> None:
    other = new_agency(tmp_path / "other")
    hub.add_agency(other, "Other PD")
    rid, _ = hub.submit(hub.t0 + 10, hub.t0 + 70, agency=other)
    assert hub.poll(rid, agency=other).json()["status"] == "pending"
    since = hub.last_seq()
    r = hub.decide({"decision": "remove-agency", "subject": {"keyid": other.keyid}})
    assert r.status == 201, r.body
    removed = [e for e in hub.audit_entries(since) if e["type"] == "agency.removed"]
    assert (
        removed and removed[0]["data"]["keyid"] == other.keyid and removed[0]["data"]["requests_closed"] == 1
    )
    since = hub.last_seq()
    assert_refused(hub, hub.signed("POST", PATH, _body(hub), agency=other), 401, "unknown_key", since)
    assert_refused(hub, hub.poll(rid, agency=other), 401, "unknown_key", since)


def test_missing_covered_component(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = hub.signed(
        "POST", PATH, _body(hub), components=["@method", "@authority", "content-digest", "content-type"]
    )
    assert_refused(hub, r, 401, "component_not_covered", since)
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub), components=["@method", "@authority", "@path", "content-type"])
    assert_refused(hub, r, 401, "component_not_covered", since)


def test_digest_mismatch(hub: HubEnv) -> None:
    signed_body = _body(hub)
    tampered = _body(hub, reason="something else")
    since = hub.last_seq()
    # Sign one body, send another with the signed headers (signature fine, Content-Digest not).
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    headers += httpsig.sign_request(
        method="POST", authority=hub.authority, path=PATH, query=None, headers=headers, body=signed_body,
        private_key=hub.agency.key, keyid=hub.agency.keyid, created=int(time.time()), scheme="http",
    )  # fmt: skip
    r = http("POST", hub.url + PATH, tampered, dict(headers))
    assert_refused(hub, r, 401, "digest_mismatch", since)


def test_expired_signature(hub: HubEnv) -> None:
    now = int(time.time())
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub), created=now - 400, expires=now - 100)
    assert_refused(hub, r, 401, "signature_expired", since)


def test_created_in_the_future(hub: HubEnv) -> None:
    now = int(time.time())
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub), created=now + 120, expires=now + 300)
    assert_refused(hub, r, 401, "created_in_future", since)


def test_validity_too_long_and_wrong_tag(hub: HubEnv) -> None:
    now = int(time.time())
    since = hub.last_seq()
    assert_refused(
        hub, hub.signed("POST", PATH, _body(hub), expires=now + 400), 401, "validity_too_long", since
    )
    since = hub.last_seq()
    assert_refused(hub, hub.signed("POST", PATH, _body(hub), tag="other-tag"), 401, "bad_tag", since)


def test_replayed_nonce_also_across_a_restart(hub: HubEnv) -> None:
    body = _body(hub)
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    headers += httpsig.sign_request(
        method="POST", authority=hub.authority, path=PATH, query=None, headers=headers, body=body,
        private_key=hub.agency.key, keyid=hub.agency.keyid, created=int(time.time()), scheme="http",
    )  # fmt: skip
    first = http("POST", hub.url + PATH, body, dict(headers))
    assert first.status == 202, first.body
    since = hub.last_seq()
    assert_refused(hub, http("POST", hub.url + PATH, body, dict(headers)), 401, "nonce_replayed", since)

    # The replay memory is in the database: a restart forgets nothing (same port, same authority).
    hub.restart()
    since = hub.last_seq()
    assert_refused(hub, http("POST", hub.url + PATH, body, dict(headers)), 401, "nonce_replayed", since)


def test_wrong_hub(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = hub.signed("POST", PATH, _body(hub, hub="x" * 43))
    entry = assert_refused(hub, r, 400, "wrong_hub", since)
    assert entry["actor"] == f"agency:{hub.agency.keyid}"


def test_oversized_body_is_413_before_parsing(hub: HubEnv) -> None:
    since = hub.last_seq()
    huge = b"{" + b" " * (64 * 1024) + b"}"
    # Not even signed: the size alone decides, before any header is parsed.
    r = http("POST", hub.url + PATH, huge, {"Content-Type": "application/json"})
    assert_refused(hub, r, 413, "body_too_large", since)
    since = hub.last_seq()
    r = hub.signed("POST", PATH, huge)
    assert_refused(hub, r, 413, "body_too_large", since)


def test_unknown_field_and_invalid_values(hub: HubEnv) -> None:
    since = hub.last_seq()
    assert_refused(hub, hub.signed("POST", PATH, _body(hub, extra=1)), 400, "unknown_field", since)
    cases = [
        {"kind": "clip", "live_max_seconds": 10},
        {"cameras": []},
        {"legal_basis": {"type": "because", "reference": None}},
        {"reason": "x" * 2001},
        {"start": "2026-11-20T18:00:00+01:00"},
        {"end": rfc3339.format(hub.t0 + 10 + 25 * 3600)},
        {"kind": "live", "start": None, "end": None, "live_max_seconds": 3601},
    ]
    for overrides in cases:
        since = hub.last_seq()
        assert_refused(hub, hub.signed("POST", PATH, _body(hub, **overrides)), 400, "invalid_field", since)


def test_another_agencys_request_is_404_like_a_missing_one(hub: HubEnv, tmp_path: Path) -> None:
    other = new_agency(tmp_path / "nosy")
    hub.add_agency(other, "Nosy PD")
    rid, _ = hub.submit(hub.t0 + 10, hub.t0 + 70)
    since = hub.last_seq()
    theirs = hub.poll(rid, agency=other)
    missing = hub.poll("A" * 22, agency=other)
    assert_refused(hub, theirs, 404, "not_found", since)
    assert theirs.status == missing.status and theirs.body == missing.body


# --- §3: owner decisions ----------------------------------------------------------------------


def test_decision_with_wrong_request_digest(hub: HubEnv) -> None:
    rid, _ = hub.submit(hub.t0 + 10, hub.t0 + 70)
    since = hub.last_seq()
    r = hub.decide(hub.approval(rid, "0" * 64, hub.t0 + 20, hub.t0 + 50))
    assert_refused(hub, r, 403, "request_digest_mismatch", since, "decision.rejected")


def test_decision_widening_the_scope(hub: HubEnv) -> None:
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    for fields in (
        hub.approval(rid, sha, hub.t0 + 5, hub.t0 + 50),  # starts before the request
        hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 75),  # ends after it
        hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50, cameras=[CAMERA, "back-yard"]),
    ):
        since = hub.last_seq()
        assert_refused(hub, hub.decide(fields), 403, "scope_exceeds_request", since, "decision.rejected")
    # The recipient must be the agency that asked.
    since = hub.last_seq()
    other = hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50)
    other["recipient"] = "x" * 43
    assert_refused(hub, hub.decide(other), 403, "recipient_mismatch", since, "decision.rejected")


def test_replayed_jti(hub: HubEnv) -> None:
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    compact = hub.sign(
        {"decision": "decline", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid}
    )
    assert hub.post_decision(compact).status == 201
    since = hub.last_seq()
    assert_refused(hub, hub.post_decision(compact), 403, "jti_replayed", since, "decision.rejected")
    # A fresh JWS reusing the jti is refused too.
    rid2, sha2 = hub.submit(hub.t0 + 10, hub.t0 + 70)
    import json

    from camhub_protocol import jws

    jti = json.loads(jws.parse(compact).payload)["jti"]
    since = hub.last_seq()
    r = hub.decide(
        {"decision": "decline", "request_id": rid2, "request_sha256": sha2, "recipient": hub.agency.keyid},
        jti=jti,
    )
    assert_refused(hub, r, 403, "jti_replayed", since, "decision.rejected")


def test_revoked_owner_key(hub: HubEnv) -> None:
    key2 = Ed25519PrivateKey.generate()
    jwk2 = okp_public_jwk(key2.public_key())
    r = hub.decide({"decision": "enroll-key", "subject": {"public_jwk": jwk2, "name": "phone"}})
    assert r.status == 201, r.body
    r = hub.decide({"decision": "revoke-key", "subject": {"kid": jwk_thumbprint(jwk2)}})
    assert r.status == 201, r.body
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    since = hub.last_seq()
    r = hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50), key=key2)
    assert_refused(hub, r, 403, "owner_key_revoked", since, "decision.rejected")
    # And a key that was never enrolled.
    since = hub.last_seq()
    r = hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50), key=Ed25519PrivateKey.generate())
    assert_refused(hub, r, 403, "unknown_owner_key", since, "decision.rejected")


def test_the_last_owner_key_cannot_be_revoked(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = hub.decide({"decision": "revoke-key", "subject": {"kid": hub.owner_kid}})
    assert_refused(hub, r, 403, "last_owner_key", since, "decision.rejected")


def test_expired_or_too_long_not_after_and_future_issued_at(hub: HubEnv) -> None:
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    since = hub.last_seq()
    r = hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50, not_after=time.time() - 10))
    assert_refused(hub, r, 403, "not_after_passed", since, "decision.rejected")
    since = hub.last_seq()
    r = hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50, not_after=time.time() + 31 * 86400))
    assert_refused(hub, r, 403, "not_after_too_late", since, "decision.rejected")
    since = hub.last_seq()
    r = hub.decide(
        hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50), issued_at=rfc3339.format(int(time.time()) + 120)
    )
    assert_refused(hub, r, 403, "issued_in_future", since, "decision.rejected")


def test_malformed_decisions_are_400(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = http("POST", hub.url + "/api/v1/decisions", b"not.a.jws", {"Content-Type": "application/jose"})
    assert_refused(hub, r, 400, "jws_malformed", since, "decision.rejected")
    since = hub.last_seq()
    r = hub.decide({"decision": "approve", "request_id": "x", "surprise": 1})
    assert_refused(hub, r, 400, "invalid_decision", since, "decision.rejected")


# --- §2.3: fetching through the gate ----------------------------------------------------------


def _fulfilled(hub: HubEnv, max_fetches: int = 3) -> tuple[str, str]:
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 70)
    assert hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 30, max_fetches=max_fetches)).status == 201
    state = hub.wait_status(rid, "fulfilled")
    return rid, state["deliveries"][0]["url"]


def _fetch(hub: HubEnv, url: str, **kwargs: Any) -> Response:
    return hub.signed("GET", url.removeprefix(hub.url), **kwargs)


def test_fetch_after_revoke(hub: HubEnv) -> None:
    rid, url = _fulfilled(hub)
    assert hub.decide({"decision": "revoke", "request_id": rid}).status == 201
    since = hub.last_seq()
    r = _fetch(hub, url)
    assert_refused(hub, r, 403, "grant_revoked", since)
    assert not [e for e in hub.audit_entries(since) if e["type"] == "egress.delivery"]
    assert hub.poll(rid).json()["status"] == "closed"


def test_fetch_beyond_max_fetches(hub: HubEnv) -> None:
    _, url = _fulfilled(hub, max_fetches=1)
    first = _fetch(hub, url)
    assert first.status == 200 and first.headers["Content-Type"] == "application/vnd.camhub.delivery+age"
    assert first.body.startswith(b"age-encryption.org/v1\n")
    since = hub.last_seq()
    assert_refused(hub, _fetch(hub, url), 403, "fetch_limit_reached", since)
    assert not [e for e in hub.audit_entries(since) if e["type"] == "egress.delivery"]


def test_another_agency_cannot_fetch_a_delivery(hub: HubEnv, tmp_path: Path) -> None:
    _, url = _fulfilled(hub)
    other = new_agency(tmp_path / "thief")
    hub.add_agency(other, "Thief PD")
    since = hub.last_seq()
    assert_refused(hub, _fetch(hub, url, agency=other), 404, "not_found", since)


def test_restart_removes_interrupted_builds_and_keeps_deliveries(hub: HubEnv) -> None:
    _, url = _fulfilled(hub)
    deliveries = hub.data_dir / "deliveries"
    kept = deliveries / (url.rsplit("/", 1)[-1] + ".age")
    assert kept.exists()
    (deliveries / ".work-crashed").mkdir()
    (deliveries / "crashed.age").write_bytes(b"half a file")
    hub.restart()
    deadline = time.monotonic() + hub.deadline_s
    while (deliveries / "crashed.age").exists() or (deliveries / ".work-crashed").exists():
        assert time.monotonic() < deadline, sorted(p.name for p in deliveries.iterdir())
        time.sleep(0.05)
    assert kept.exists()
    assert _fetch(hub, url).status == 200
