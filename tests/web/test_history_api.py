"""What left, per request, from the audit log (hub/api/history.py), and the paged audit route, over
HTTP against a real daemon: real agency requests and deliveries, real owner signatures."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws, rfc3339
from camhub_protocol.audit_verify import load_hub_key
from camhub_protocol.checkpoint import origin_for, parse_checkpoint
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from camhub_protocol.merkle import leaf_hash, verify_inclusion
from hub.agency_client import Agency
from hub.agency_client import keygen as agency_keygen
from tests.web.conftest import WebHub
from tests.web.test_settings_api import Owner


def _decide(hub: WebHub, owner: Owner, fields: dict[str, Any], key: Ed25519PrivateKey | None = None,
            **overrides: Any) -> dict[str, Any]:  # fmt: skip
    key = key or hub.owner_key
    assert key is not None
    payload = {"v": 1, "hub": hub.daemon.hub_id, **fields, "issued_at": rfc3339.format(int(time.time())),
               "jti": secrets.token_urlsafe(16), **overrides}  # fmt: skip
    compact = jws.sign(
        json.dumps(payload).encode(),
        key,
        jwk_thumbprint(okp_public_jwk(key.public_key())),
        "camhub-decision+jws",
    )
    req = urllib.request.Request(
        hub.url + "/api/v1/decisions",
        data=compact.encode(),
        method="POST",
        headers={"Content-Type": "application/jose"},
    )
    with urllib.request.urlopen(req, timeout=20) as res:
        assert res.status == 201
        return json.loads(res.read())


def _approve(hub: WebHub, owner: Owner, asked: dict[str, Any], recipient: str, cameras: list[str], start: float,
             end: float, not_after: float, key: Ed25519PrivateKey | None = None) -> dict[str, Any]:  # fmt: skip
    return _decide(hub, owner, {
        "decision": "approve", "request_id": asked["id"], "request_sha256": asked["request_sha256"], "recipient": recipient,
        "scope": {"kind": "clip", "cameras": cameras, "start": rfc3339.format(start), "end": rfc3339.format(end), "live_max_seconds": None},
        "max_fetches": 3, "not_after": rfc3339.format(not_after),
    }, key)  # fmt: skip


def _history(owner: Owner, request_id: str) -> dict[str, Any]:
    status, body = owner.call("GET", "/api/v1/owner/requests")
    assert status == 200
    (r,) = [r for r in body["requests"] if r["id"] == request_id]
    return r


def test_each_request_tells_what_left_from_the_audit_log(make_hub: Any, tmp_path: Path) -> None:
    t0 = float(int(time.time()) - 3600)
    hub = make_hub(password=True, segments_at=t0)
    owner = Owner(hub.url)
    owner.login()
    ident = agency_keygen(tmp_path / "agency")
    _decide(hub, owner, {"decision": "add-agency", "subject": {"name": "Town PD", "sig_jwk": ident["sig_jwk"], "recipient": ident["recipient"]}})  # fmt: skip
    agency = Agency(tmp_path / "agency", hub.url)
    keyid = ident["keyid"]

    def ask(cameras: list[str], legal: str = "consent", **more: Any) -> dict[str, Any]:
        fields = {"case_id": "2026-1142", "kind": "clip", "cameras": cameras, "start": rfc3339.format(t0 - 10),
                  "end": rfc3339.format(t0 + 20), "live_max_seconds": None, "reason": "Theft",
                  "legal_basis": {"type": legal, "reference": None}, "contact": "Desk", **more}  # fmt: skip
        return agency.request(fields, hub.daemon.hub_id)

    # A: asked for two cameras, approved for Front door only, 0-4 s; downloaded twice, then revoked.
    a = ask(["front-door", "garage"])
    _approve(hub, owner, a, keyid, ["front-door"], t0, t0 + 4, time.time() + 86400)
    deadline = time.monotonic() + 30
    while agency.status(a["id"])["status"] != "fulfilled":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    agency.fetch(a["id"], tmp_path / "out1", hub.daemon.hub_id)
    agency.fetch(a["id"], tmp_path / "out2", hub.daemon.hub_id)
    history = _history(owner, a["id"])["history"]
    assert history["state"] == "in force"
    assert history["asked"]["cameras"] == ["front-door", "garage"]
    (approval,) = history["approvals"]
    # The real scope, from the signed decision in the log: not the asked one.
    assert approval["scope"]["cameras"] == ["front-door"]
    assert (approval["scope"]["start"], approval["scope"]["end"]) == (
        rfc3339.format(t0),
        rfc3339.format(t0 + 4),
    )
    assert hub.owner_key is not None
    assert approval["by"]["kid"] == jwk_thumbprint(okp_public_jwk(hub.owner_key.public_key()))
    assert [(d["camera"], d["fetch"], d["of"]) for d in history["downloads"]] == [
        ("front-door", 1, 3),
        ("front-door", 2, 3),
    ]
    assert [p["camera"] for p in history["prepared"]] == ["front-door"]
    status, body = owner.call("GET", "/api/v1/owner/grants")
    (grant,) = body["grants"]
    assert grant["downloads_used"] == {"front-door": 2}
    assert abs(grant["ends_at"] - (time.time() + 86400)) < 120
    _decide(hub, owner, {"decision": "revoke", "request_id": a["id"]})
    history = _history(owner, a["id"])["history"]
    assert history["state"] == "revoked" and history["approvals"][0]["ended"]["how"] == "revoked"
    assert owner.call("GET", "/api/v1/owner/grants")[1]["grants"] == []

    # B: declined.
    b = ask(["front-door"])
    _decide(hub, owner, {"decision": "decline", "request_id": b["id"], "request_sha256": b["request_sha256"], "recipient": keyid})  # fmt: skip
    assert _history(owner, b["id"])["history"]["state"] == "declined"

    # C: approved from a second device, which is then revoked: the approval ends with it.
    phone = Ed25519PrivateKey.generate()
    _decide(hub, owner, {"decision": "enroll-key", "subject": {"public_jwk": okp_public_jwk(phone.public_key()), "name": "phone"}})  # fmt: skip
    c = ask(["front-door"])
    _approve(hub, owner, c, keyid, ["front-door"], t0, t0 + 2, time.time() + 86400, key=phone)
    assert _history(owner, c["id"])["history"]["approvals"][0]["by"]["name"] == "phone"
    _decide(hub, owner, {"decision": "revoke-key", "subject": {"kid": jwk_thumbprint(okp_public_jwk(phone.public_key()))}})  # fmt: skip
    history = _history(owner, c["id"])["history"]
    assert (history["state"], history["approvals"][0]["ended"]["how"]) == ("revoked", "key revoked")

    # D: an approval that runs out says expired (no entry ends it: its not_after does).
    d = ask(["front-door"])
    _approve(hub, owner, d, keyid, ["front-door"], t0, t0 + 2, time.time() + 3)
    deadline = time.monotonic() + 20
    while (history := _history(owner, d["id"])["history"])["state"] != "expired":
        assert time.monotonic() < deadline, history
        time.sleep(0.5)
    assert history["approvals"][0]["ended"]["how"] == "expired"

    # E: a camera the hub does not have; F: an emergency. Both wait; only F is urgent.
    e = ask(["front-door", "back-yard"])
    f = ask(["front-door"], legal="exigent")
    assert _history(owner, e["id"])["unknown_cameras"] == ["back-yard"]
    status, body = owner.call("GET", "/api/v1/owner/requests/waiting")
    assert status == 200
    assert {(w["id"], w["urgent"], w["agency"]) for w in body["waiting"]} == {
        (e["id"], False, "Town PD"),
        (f["id"], True, "Town PD"),
    }

    # Removing the agency closes what was still waiting.
    _decide(hub, owner, {"decision": "remove-agency", "subject": {"keyid": keyid}})
    history = _history(owner, e["id"])["history"]
    assert (history["state"], history["closed"]["how"]) == ("closed", "agency removed")
    assert owner.call("GET", "/api/v1/owner/requests/waiting")[1]["waiting"] == []


def test_the_audit_route_pages_newest_first_and_proves_every_entry(make_hub: Any) -> None:
    hub = make_hub(password=True)
    owner = Owner(hub.url)
    owner.login()
    for days in range(20):  # settings changes: audited, quick
        status, _ = owner.call(
            "PATCH", "/api/v1/owner/settings/storage", {"max_age_days": 10 + days, "quota_gb": None}
        )
        assert status == 200
    status, first = owner.call("GET", "/api/v1/owner/audit/entries?limit=7")
    assert status == 200
    key, hub_id = load_hub_key(first["hub_public_jwk"])
    cp = parse_checkpoint(first["checkpoint"], key, origin_for(hub_id))
    assert cp.size == first["tree_size"] == first["size"] >= 21  # a fresh checkpoint covers the whole log
    seen: list[int] = []
    page = first
    while True:
        seqs = [e["seq"] for e in page["entries"]]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) <= 7
        for e in page["entries"]:
            proof = [base64.b64decode(p) for p in e["inclusion_proof"]]
            assert verify_inclusion(e["seq"], cp.size, leaf_hash(e["entry"].encode()), proof, cp.root)
            assert json.loads(e["entry"])["seq"] == e["seq"]
        seen += seqs
        if page["next_before"] is None:
            break
        assert page["next_before"] == seqs[-1]
        status, page = owner.call(
            "GET", f"/api/v1/owner/audit/entries?limit=7&before={page['next_before']}&size={cp.size}"
        )
        assert status == 200 and page["checkpoint"] is None  # later pages prove against the same size
    assert seen == list(range(cp.size - 1, -1, -1))

    # A type filter pages through the log too; names for display come along.
    status, page = owner.call("GET", "/api/v1/owner/audit/entries?limit=5&types=settings.changed,owner.login")
    assert status == 200 and len(page["entries"]) == 5
    assert {json.loads(e["entry"])["type"] for e in page["entries"]} <= {"settings.changed", "owner.login"}
    assert page["names"]["cameras"]["front-door"] == "Front door"
    for bad in ("limit=0", "limit=201", "limit=x", "before=-1", "size=999999", "before=%C2%B2"):
        status, body = owner.call("GET", f"/api/v1/owner/audit/entries?{bad}")
        assert status == 400, (bad, body)
