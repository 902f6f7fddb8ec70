"""Household members with a passkey instead of a password (PROTOCOL §1.2, issue 19), over raw HTTP
against the real daemon, signed by the software authenticator (tests/consent/softauthn.py).

Joining registers the passkey against the member's own challenge (an owner's enrolment answer, or
another member's, is refused, and a member's cannot enrol an owner key); logging in is a §3.1 body
around a `member-login` payload, and every wrong login (replay, no UV, wrong challenge, origin or
rpId, another member's name or id, a removed member, a counter that went back) is the same 401
`bad_password` as a wrong password. A decision signed by the member's passkey finds no owner key.
The browser half (Chromium's virtual authenticator) is tests/web/test_members_browser.py.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hub.consent import owner_client
from tests.consent.softauthn import SoftPasskey, b64url, challenge_of, member_challenge, payload
from tests.web.test_members_api import LIVE_FRONT, MEMBER_PASSWORD, Member, _invite, _owner_keys
from tests.web.test_settings_api import Owner

ORIGIN = "http://localhost:8080"
RP = 'passkey_rp_id = "localhost"'
BAD = (401, {"error": "bad_password", "detail": "wrong password"})


def _hub_id(url: str) -> str:
    return str(owner_client.hub_identity(url)["hub_id"])


def login_body(hub_id: str, pk: SoftPasskey, member_id: str, **kw: Any) -> dict[str, Any]:
    """The §3.1 body of a member-login assertion; `kw` go to the payload (`overrides`) or, prefixed
    `a_`, to the authenticator (uv, origin, rp_id, type_, bump)."""
    a_kw = {k[2:]: v for k, v in kw.items() if k.startswith("a_")}
    overrides = {k: v for k, v in kw.items() if not k.startswith("a_") and k != "sign_for"}
    body = payload(hub_id, {"decision": "member-login", "member": member_id}, **overrides)
    auth, client, sig = pk.assert_(challenge_of(kw.get("sign_for", body)), **a_kw)
    return {"v": 1, "format": "webauthn", "kid": pk.kid, "payload": b64url(body),
            "authenticator_data": b64url(auth), "client_data_json": b64url(client),
            "signature": b64url(sig)}  # fmt: skip


def passkey_login(url: str, name: str, body: Any, **extra: Any) -> tuple[int, Any]:
    client = Member(url)
    status, answer = client.call("POST", "/api/v1/session/login", {"member": name, "passkey": body, **extra})
    if status == 200:
        client.csrf = answer["csrf"]
        who = client.call("GET", "/api/v1/session")[1]
        return status, who
    return status, answer


def _member_passkeys(hub: Any) -> int:
    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM member_passkeys").fetchone()[0])
    finally:
        conn.close()


def test_join_and_log_in_with_a_passkey_and_every_wrong_login_is_a_wrong_password(make_hub: Any) -> None:
    hub = make_hub(hub_keys=RP)
    hub_id = _hub_id(hub.url)
    owner = Owner(hub.url)
    owner.login()
    keys_before = _owner_keys(hub)
    ann_invite = _invite(owner, "Ann", LIVE_FRONT)
    bo_invite = _invite(owner, "Bo", {"garage": {"live": True, "recordings": False}})
    ann_pk, bo_pk = SoftPasskey("localhost", ORIGIN), SoftPasskey("localhost", ORIGIN, alg="EdDSA")
    joiner = Member(hub.url)

    # The invite names its member without spending the code (the join page needs the id).
    assert joiner.call("POST", "/api/v1/members/invite", {"code": ann_invite["code"]}) == (
        200, {"id": ann_invite["id"], "name": "Ann"},
    )  # fmt: skip
    # Exactly one of password and passkey.
    both = {"code": ann_invite["code"], "password": MEMBER_PASSWORD, "passkey": {}}
    assert joiner.call("POST", "/api/v1/members/join", both)[1]["error"] == "bad_join"
    assert joiner.call("POST", "/api/v1/members/join", {"code": ann_invite["code"]})[1]["error"] == "bad_join"
    # An owner's enrolment answer (the owner challenge), another member's, or one without UV: refused,
    # and the code is not spent.
    for wrong in (
        ann_pk.create(hub_id),
        ann_pk.create(hub_id, challenge=member_challenge(hub_id, bo_invite["id"])),
        ann_pk.create(hub_id, challenge=member_challenge(hub_id, ann_invite["id"]), uv=False),
        ann_pk.create(
            hub_id, challenge=member_challenge(hub_id, ann_invite["id"]), origin="https://evil.example"
        ),
    ):
        status, body = joiner.call(
            "POST", "/api/v1/members/join", {"code": ann_invite["code"], "passkey": wrong}
        )
        assert (status, body["error"]) == (400, "passkey_registration_invalid"), body
    # ... and a member's registration does not enrol an owner key either.
    mine = ann_pk.create(hub_id, challenge=member_challenge(hub_id, ann_invite["id"]))
    try:
        owner_client.decide(
            hub.url, hub.owner_key, {"decision": "enroll-key", "subject": {"passkey": mine, "name": "ann"}}
        )
        raise AssertionError("a member's passkey registration enrolled an owner key")
    except owner_client.HubHTTPError as exc:
        assert (exc.status, exc.body["error"]) == (400, "invalid_decision"), exc

    status, body = joiner.call("POST", "/api/v1/members/join", {"code": ann_invite["code"], "passkey": mine})
    assert status == 200 and body["authenticated"], body
    assert joiner.call("GET", "/api/v1/session")[1]["member"]["id"] == ann_invite["id"]
    # Spent: the code no longer names anyone, nor joins anyone.
    assert joiner.call("POST", "/api/v1/members/invite", {"code": ann_invite["code"]})[1]["error"] == (
        "bad_invite_code"
    )
    bo_reg = bo_pk.create(hub_id, challenge=member_challenge(hub_id, bo_invite["id"]))
    assert (
        Member(hub.url).call("POST", "/api/v1/members/join", {"code": bo_invite["code"], "passkey": bo_reg})[
            0
        ]
        == 200
    )
    assert _member_passkeys(hub) == 2 and _owner_keys(hub) == keys_before

    # Log in with it: a fresh assertion over a member-login payload.
    status, who = passkey_login(hub.url, "ann", login_body(hub_id, ann_pk, ann_invite["id"]))
    assert status == 200 and who["role"] == "member" and who["member"]["id"] == ann_invite["id"], who
    logins = [e for e in hub.audit() if e["type"] == "member.login"]
    assert logins[-1]["data"]["via"] == "passkey" and logins[-1]["actor"] == f"member:{ann_invite['id']}"
    # A member who joined with a passkey has no password.
    assert Member(hub.url).login_as("Ann")[0] == 401

    # Every wrong login is the same answer as a wrong password. (Each costs a try of the per-client
    # backoff: the owner's good login in between forgets them, so no 429 hides a wrong answer.)
    replay = login_body(hub_id, ann_pk, ann_invite["id"])
    assert passkey_login(hub.url, "Ann", replay)[0] == 200
    # Bo's authenticator keeps no counter (0 every time, as synced passkeys do): only the jti stops
    # his assertion from being replayed.
    bo_once = login_body(hub_id, bo_pk, bo_invite["id"], a_bump=False)
    assert passkey_login(hub.url, "Bo", bo_once)[0] == 200
    other_payload = payload(hub_id, {"decision": "member-login", "member": ann_invite["id"]})
    # A clone: an authenticator whose counter is behind the one the hub saw last.
    ahead, ann_pk.counter = ann_pk.counter, 0
    cloned = login_body(hub_id, ann_pk, ann_invite["id"], a_bump=False)
    cloned_count = ann_pk.counter
    ann_pk.counter = ahead
    cases = {
        "replay": ("Ann", replay, {}),
        "replay, no counter": ("Bo", bo_once, {}),
        "no UV": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"], a_uv=False), {}),
        "wrong challenge": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"], sign_for=other_payload), {}),
        "other origin": (
            "Ann",
            login_body(hub_id, ann_pk, ann_invite["id"], a_origin="https://evil.example"),
            {},
        ),
        "other rp": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"], a_rp_id="evil.example"), {}),
        "another member's name": ("Bo", login_body(hub_id, ann_pk, ann_invite["id"]), {}),
        "another member's id": ("Ann", login_body(hub_id, ann_pk, bo_invite["id"]), {}),
        "another kid": ("Ann", {**login_body(hub_id, ann_pk, ann_invite["id"]), "kid": bo_pk.kid}, {}),
        "Bo's passkey for Ann": ("Ann", login_body(hub_id, bo_pk, ann_invite["id"]), {}),
        "another hub": ("Ann", login_body(hub_id[::-1], ann_pk, ann_invite["id"]), {}),
        "stale": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"], issued_at="2020-01-01T00:00:00Z"), {}),
        "not a login": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"], decision="approve"), {}),
        "counter went back": ("Ann", cloned, {}),
        "with a password too": ("Ann", login_body(hub_id, ann_pk, ann_invite["id"]), {"password": "x" * 12}),
        "unknown name": ("Nobody", login_body(hub_id, ann_pk, ann_invite["id"]), {}),
        "not a body": ("Ann", "nonsense", {}),
    }
    for what, (name, body, extra) in cases.items():
        assert passkey_login(hub.url, name, body, **extra) == BAD, what
        owner.login()
    failed = [e for e in hub.audit() if e["type"] == "owner.login_failed"]
    assert failed, "failed passkey logins are audited"
    # The clone, and only the clone, tells the owner a copy of Ann's passkey may exist (§1.2).
    regressed = [e for e in hub.audit() if e["type"] == "key.counter_regressed"]
    assert [(e["actor"], e["data"]) for e in regressed] == [
        (
            f"member:{ann_invite['id']}",
            {"kid": ann_pk.kid, "stored": ahead, "seen": cloned_count, "member": ann_invite["id"]},
        )
    ], regressed
    # Bo's own passkey still logs Bo in (his counter was untouched by the tries above).
    assert passkey_login(hub.url, "bo", login_body(hub_id, bo_pk, bo_invite["id"], a_bump=False))[0] == 200

    # A decision signed by a member's passkey finds no owner key.
    decision_payload = payload(
        hub_id, {"decision": "enroll-key", "subject": {"passkey": bo_reg, "name": "x"}}
    )
    auth, client, sig = ann_pk.assert_(challenge_of(decision_payload))
    signed = json.dumps({"v": 1, "format": "webauthn", "kid": ann_pk.kid, "payload": b64url(decision_payload),
                         "authenticator_data": b64url(auth), "client_data_json": b64url(client),
                         "signature": b64url(sig)}).encode()  # fmt: skip
    status, answer = _post_decision(hub.url, signed)
    assert (status, answer["error"]) == (403, "unknown_owner_key"), answer
    assert _owner_keys(hub) == keys_before

    # Removing a member removes their passkey: a fresh assertion no longer logs in.
    members = owner.call("GET", "/api/v1/owner/members")[1]["members"]
    assert owner.call("DELETE", f"/api/v1/owner/members/{ann_invite['id']}")[0] == 204, members
    assert passkey_login(hub.url, "Ann", login_body(hub_id, ann_pk, ann_invite["id"])) == BAD
    assert _member_passkeys(hub) == 1
    joined = [e for e in hub.audit() if e["type"] == "member.joined"]
    assert {e["data"].get("via") for e in joined} == {"passkey"}


def _post_decision(url: str, body: bytes) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url + "/api/v1/decisions", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_unknown_name_costs_the_same_signature_check_as_a_member(tmp_path: Any, monkeypatch: Any) -> None:
    """The passkey login checks a signature for a name that is unknown, or has no passkey, as it does
    for a member's (against a key nobody holds), so the time of the answer does not say which names
    exist. Counted, not timed (shared machine): every case reaches the signature check once."""
    import hashlib
    import time

    from hub import store
    from hub.api import session
    from hub.consent import passkeys
    from hub.store import members as members_q

    checked: list[bytes] = []
    real = passkeys.verify_authentication_response

    def spy(**kw: Any) -> Any:
        checked.append(kw["credential_public_key"])
        return real(**kw)

    monkeypatch.setattr(passkeys, "verify_authentication_response", spy)
    conn = store.connect(tmp_path / "camhub.sqlite")
    try:
        store.migrate(conn)
        now = time.time()
        ann, cy = SoftPasskey("localhost", ORIGIN), SoftPasskey("localhost", ORIGIN)
        for member_id, name in (("m-ann", "Ann"), ("m-bo", "Bo")):
            code = hashlib.sha256(name.encode()).hexdigest()
            assert members_q.invite(conn, member_id, name, {}, code, now + 60, now)
        key = members_q.MemberPasskey(
            "m-ann", ann.kid, b64url(ann.credential_id), ann.cose_key(), "localhost", 0
        )
        assert members_q.join_with_passkey(conn, hashlib.sha256(b"Ann").hexdigest(), "m-ann", key, now)
        assert members_q.join(conn, hashlib.sha256(b"Bo").hexdigest(), "hash", now) is not None  # a password
        cases = {
            "Ann": (ann, "m-ann", True),  # her own passkey: the only login
            "Bo": (cy, "m-bo", False),  # a member without a passkey
            "Nobody": (cy, "m-nobody", False),  # no such name
        }
        for name, (pk, member_id, logs_in) in cases.items():
            before = len(checked)
            proof = login_body("hub-1", pk, member_id)
            member, regressed = session._verify_member_passkey_login(
                conn, name, proof, "hub-1", now, "localhost"
            )
            assert (member is not None, regressed) == (logs_in, None), name
            assert len(checked) == before + 1, (
                f"{name}: the signature was checked {len(checked) - before} times"
            )
        # The two refusals were checked against the same key nobody holds, never a member's.
        assert checked[1] == checked[2] != ann.cose_key() and checked[0] == ann.cose_key()
    finally:
        conn.close()
