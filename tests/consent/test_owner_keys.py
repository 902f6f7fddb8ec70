"""Owner keys against the holder of one stolen owner device (issue 12, PROTOCOL §1 and §3), on a real
daemon: key lineage, revoke undoing what a key did, canonical keys, decisions checked and applied in
one transaction, and `camhub owner reset` from a shell on the box.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub.consent import owner_client
from tests.consent.flow_env import CAMERA, HubEnv, Response, http, new_agency, start_hub_env

PASSWORD = "the owner's own passphrase"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEnv]:
    (tmp_path / "hub").mkdir()
    env = start_hub_env(tmp_path / "hub")
    try:
        yield env
    finally:
        env.stop()


def kid(key: Ed25519PrivateKey) -> str:
    return jwk_thumbprint(okp_public_jwk(key.public_key()))


def enroll(hub: HubEnv, new: Ed25519PrivateKey, by: Ed25519PrivateKey, name: str = "device") -> Response:
    subject = {"public_jwk": okp_public_jwk(new.public_key()), "name": name}
    return hub.decide({"decision": "enroll-key", "subject": subject}, key=by)


def revoke(hub: HubEnv, target: str, by: Ed25519PrivateKey) -> Response:
    return hub.decide({"decision": "revoke-key", "subject": {"kid": target}}, key=by)


def refused(r: Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.is_json_error and r.json()["error"] == code, r.body


def key_rows(hub: HubEnv) -> dict[str, tuple[str | None, float | None]]:
    """kid -> (enrolled_by, revoked_at), read from the daemon's database."""
    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT kid, enrolled_by, revoked_at FROM owner_keys")
        }
    finally:
        conn.close()


def owner_headers(hub: HubEnv, key: Ed25519PrivateKey) -> dict[str, str]:
    """An owner browser session (cookie + CSRF), set up the way onboarding does: a fresh
    set-password proof signed by an enrolled key."""
    proof = owner_client.password_proof(key, hub.hub_id)
    r = http(
        "POST",
        hub.url + "/api/v1/session/password",
        json.dumps({"password": PASSWORD, "proof": proof}).encode(),
        {"Content-Type": "application/json"},
    )
    assert r.status == 200, r.body
    cookie = r.headers["Set-Cookie"].split(";", 1)[0]
    return {"Cookie": cookie, "X-CSRF-Token": r.json()["csrf"]}


# --- lineage ---------------------------------------------------------------------------------


def test_a_stolen_phone_cannot_take_the_hub(hub: HubEnv, tmp_path: Path) -> None:
    """The attack of issue 12, step by step: the thief holds the owner's phone, which the owner's
    laptop (the first key, enrolled with the pairing code) enrolled."""
    laptop = hub.owner
    phone = Ed25519PrivateKey.generate()
    assert enroll(hub, phone, laptop, "phone").status == 201

    # The thief enrols their own key with the phone, and tries to cut the owner off.
    thief = Ed25519PrivateKey.generate()
    assert enroll(hub, thief, phone, "thief").status == 201
    refused(revoke(hub, kid(laptop), phone), 403, "revoke_ancestor")
    refused(revoke(hub, kid(laptop), thief), 403, "revoke_ancestor")
    refused(revoke(hub, kid(phone), thief), 403, "revoke_ancestor")  # the thief's own enroller too
    assert key_rows(hub)[kid(laptop)][1] is None

    # ... adds an agency of their own and approves footage to it.
    accomplice = new_agency(tmp_path / "accomplice")
    r = hub.decide(
        {
            "decision": "add-agency",
            "subject": {
                "name": "Totally PD",
                "sig_jwk": accomplice.sig_jwk,
                "recipient": accomplice.recipient,
            },
        },
        key=thief,
    )
    assert r.status == 201, r.body
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 40, agency=accomplice)
    assert (
        hub.decide(hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40, agency=accomplice), key=phone).status
        == 201
    )
    # And the phone approved a real agency's request too (that grant goes with the phone).
    rid2, sha2 = hub.submit(hub.t0 + 10, hub.t0 + 40)
    assert hub.decide(hub.approval(rid2, sha2, hub.t0 + 10, hub.t0 + 40), key=phone).status == 201
    hub.wait_status(rid2, "fulfilled")
    # The owner's own approval, made with the laptop, must survive.
    rid3, sha3 = hub.submit(hub.t0 + 10, hub.t0 + 40)
    assert hub.decide(hub.approval(rid3, sha3, hub.t0 + 10, hub.t0 + 40), key=laptop).status == 201
    hub.wait_status(rid3, "fulfilled")

    # The owner sees, before confirming, everything revoking the phone takes with it.
    headers = owner_headers(hub, laptop)
    r = http("GET", f"{hub.url}/api/v1/owner/devices/{kid(phone)}/revoke-preview", headers=headers)
    assert r.status == 200, r.body
    preview = r.json()
    assert [k["kid"] for k in preview["keys"]] == [kid(phone), kid(thief)]
    assert [a["keyid"] for a in preview["agencies"]] == [accomplice.keyid]
    preview_grants = {g["request_id"] for g in preview["grants"]}
    assert preview_grants == {rid, rid2}
    assert preview["active_keys_left"] == 1

    since = hub.last_seq()
    assert revoke(hub, kid(phone), laptop).status == 201
    rows = key_rows(hub)
    assert rows[kid(phone)][1] is not None and rows[kid(thief)][1] is not None
    assert rows[kid(laptop)][1] is None
    # One audit entry names all of it.
    revoked = [e for e in hub.audit_entries(since) if e["type"] == "key.revoked"]
    assert len(revoked) == 1, revoked
    data = revoked[0]["data"]
    assert data["kid"] == kid(phone)
    assert data["keys_revoked"] == [kid(phone), kid(thief)]
    assert data["agencies_removed"] == [accomplice.keyid]
    assert set(data["grants_revoked"]) == {g["id"] for g in preview["grants"]}
    assert data["requests_closed"] >= 0

    # Nothing reaches the accomplice: its key no longer verifies, and the real agency's delivery
    # approved by the phone is refused; the laptop's approval still delivers.
    refused(hub.poll(rid, agency=accomplice), 401, "unknown_key")
    status2 = hub.poll(rid2).json()
    assert status2["status"] == "closed", status2
    ok = hub.poll(rid3).json()
    assert ok["status"] == "fulfilled", ok
    # The thief's keys sign nothing any more, and can never be enrolled again.
    refused(enroll(hub, Ed25519PrivateKey.generate(), thief), 403, "owner_key_revoked")
    refused(enroll(hub, thief, laptop), 403, "owner_key_revoked")
    refused(enroll(hub, phone, laptop), 403, "owner_key_revoked")


def test_a_key_may_revoke_its_descendants_and_siblings_but_never_an_ancestor(hub: HubEnv) -> None:
    root = hub.owner
    a, b, a1 = (Ed25519PrivateKey.generate() for _ in range(3))
    assert enroll(hub, a, root).status == 201
    assert enroll(hub, b, root).status == 201
    assert enroll(hub, a1, a).status == 201
    refused(revoke(hub, kid(a), a1), 403, "revoke_ancestor")
    refused(revoke(hub, kid(root), a1), 403, "revoke_ancestor")
    # A sibling is not an ancestor: b may revoke a, which takes a1 with it.
    assert revoke(hub, kid(a), b).status == 201
    rows = key_rows(hub)
    assert rows[kid(a)][1] is not None and rows[kid(a1)][1] is not None and rows[kid(b)][1] is None
    # The root revoking itself would take every key: refused, the box would have no owner.
    refused(revoke(hub, kid(root), root), 403, "last_owner_key")
    # A key may still revoke itself when others remain.
    assert revoke(hub, kid(b), b).status == 201
    refused(revoke(hub, kid(root), root), 403, "last_owner_key")


# --- canonical keys --------------------------------------------------------------------------


def _x(key: Ed25519PrivateKey) -> str:
    return okp_public_jwk(key.public_key())["x"]


def _other_trailing_bits(x: str) -> str:
    """The same 32 bytes with different unused low bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(x[-1])
    return x[:-1] + alphabet[i ^ 1]


def test_only_the_canonical_spelling_of_a_key_is_accepted(hub: HubEnv) -> None:
    new = Ed25519PrivateKey.generate()
    x = _x(new)
    alias = _other_trailing_bits(x)
    assert base64.urlsafe_b64decode(alias + "=") == base64.urlsafe_b64decode(x + "=")  # same key bytes
    for bad in (x + "!!", x + "=", alias, x[:-1], x + "A", " " + x, x.replace(x[5], "+", 1)):
        if bad == x:
            continue
        subject = {"public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": bad}, "name": "alias"}
        r = hub.decide({"decision": "enroll-key", "subject": subject})
        refused(r, 400, "invalid_decision")
        r = hub.decide(
            {
                "decision": "add-agency",
                "subject": {"name": "x", "sig_jwk": subject["public_jwk"], "recipient": hub.agency.recipient},
            }
        )
        refused(r, 400, "invalid_decision")
    assert enroll(hub, new, hub.owner).status == 201


def test_an_alias_of_a_revoked_key_is_no_way_back(hub: HubEnv) -> None:
    """Before issue 12 `x + "!!"` decoded to the same key under a new kid: revoking the visible kid
    left the alias able to sign."""
    phone = Ed25519PrivateKey.generate()
    assert enroll(hub, phone, hub.owner).status == 201
    assert revoke(hub, kid(phone), hub.owner).status == 201
    for x in (_x(phone) + "!!", _other_trailing_bits(_x(phone))):
        subject = {"public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}, "name": "phone again"}
        refused(hub.decide({"decision": "enroll-key", "subject": subject}), 400, "invalid_decision")
    refused(enroll(hub, phone, hub.owner), 403, "owner_key_revoked")


# --- one transaction -------------------------------------------------------------------------


def test_concurrent_revoke_and_enrol_never_leave_a_child_of_a_revoked_key(hub: HubEnv) -> None:
    """ "A revokes B" and "B enrols C" posted together, many times: whichever the hub applies first,
    C is never left active under a revoked B (before issue 12 both succeeded)."""
    a = hub.owner
    outcomes: set[tuple[int, int]] = set()
    for _ in range(12):
        b, c = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        assert enroll(hub, b, a).status == 201
        revoke_jws = hub.sign({"decision": "revoke-key", "subject": {"kid": kid(b)}}, key=a)
        subject = {"public_jwk": okp_public_jwk(c.public_key()), "name": "c"}
        enrol_jws = hub.sign({"decision": "enroll-key", "subject": subject}, key=b)
        results: dict[str, int] = {}
        go = threading.Barrier(2)

        def post(
            name: str, compact: str, go: threading.Barrier = go, results: dict[str, int] = results
        ) -> None:
            go.wait()
            results[name] = hub.post_decision(compact).status

        threads = [
            threading.Thread(target=post, args=("revoke", revoke_jws)),
            threading.Thread(target=post, args=("enrol", enrol_jws)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results["revoke"] == 201
        outcomes.add((results["revoke"], results["enrol"]))
        rows = key_rows(hub)
        assert rows[kid(b)][1] is not None
        if kid(c) in rows:
            assert rows[kid(c)][1] is not None, "C alive under a revoked B"
    # Every active key's enroller is active (or it is a root).
    rows = key_rows(hub)
    for k, (by, revoked_at) in rows.items():
        if revoked_at is None and by is not None:
            assert rows[by][1] is None, (k, by)


# --- reset from the box ----------------------------------------------------------------------


def camhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_owner_reset_on_the_box_takes_the_hub_back_while_it_runs(hub: HubEnv, tmp_path: Path) -> None:
    """The thief holds the root key itself: nobody can revoke it over the API. A shell on the box
    can, while the daemon keeps running and recording; footage and the audit log stay."""
    thief_root = hub.owner  # the root, now in the thief's hands
    rid, sha = hub.submit(hub.t0 + 10, hub.t0 + 40)
    assert hub.decide(hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40), key=thief_root).status == 201
    hub.wait_status(rid, "fulfilled")
    headers = owner_headers(hub, thief_root)
    assert http("GET", hub.url + "/api/v1/owner/grants", headers=headers).status == 200
    entries_before = len(hub.audit_entries())

    done = camhub("owner", "reset", "--config", str(hub.config))
    assert done.returncode == 0, done.stderr
    code = done.stdout.split("pairing code: ", 1)[1].split()[0]
    assert "1 owner keys and 1 approvals revoked" in done.stdout, done.stdout

    # The daemon never restarted: the thief's session, key and approval are dead at once.
    assert hub.daemon.proc.poll() is None
    refused(http("GET", hub.url + "/api/v1/owner/grants", headers=headers), 401, "no_session")
    refused(hub.decide({"decision": "revoke", "request_id": rid}, key=thief_root), 403, "owner_key_revoked")
    assert hub.poll(rid).json()["status"] == "closed"
    session = http("GET", hub.url + "/api/v1/session").json()
    assert session["owner_enrolled"] is False and session["password_set"] is False

    # The revoked root cannot come back through the new code; a new key can.
    r = http(
        "POST", hub.url + "/api/v1/owner/enroll",
        json.dumps({"pairing_code": code, "public_jwk": okp_public_jwk(thief_root.public_key()), "name": "x"}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    refused(r, 403, "owner_key_revoked")
    done = camhub("pair", "--config", str(hub.config))  # that try spent the code
    code = done.stdout.split("pairing code: ", 1)[1].split()[0]
    owner = Ed25519PrivateKey.generate()
    assert owner_client.enroll_first(hub.url, owner, code, "owner again")["kid"] == kid(owner)
    rid2, sha2 = hub.submit(hub.t0 + 10, hub.t0 + 40)
    assert hub.decide(hub.approval(rid2, sha2, hub.t0 + 10, hub.t0 + 40), key=owner).status == 201
    hub.wait_status(rid2, "fulfilled")
    fetched = hub.client().fetch(rid2, tmp_path / "case")
    assert fetched and fetched[0]["camera"] == CAMERA  # footage kept

    # The log kept everything before, has the reset entry written by the other process, and the
    # daemon's own entries after it still form one verifiable tree.
    entries = hub.audit_entries()
    assert len(entries) > entries_before
    reset = [e for e in entries if e["type"] == "owner.reset"]
    assert len(reset) == 1 and reset[0]["data"]["keys_revoked"] == [kid(thief_root)]
    assert reset[0]["actor"].startswith("box:")
    assert code not in json.dumps(reset[0])  # the pairing code is a secret, not evidence
    export = tmp_path / "export"
    assert camhub("audit", "export", "--config", str(hub.config), str(export)).returncode == 0
    hub_jwk = json.dumps(http("GET", hub.url + "/api/v1/hub").json()["public_jwk"])
    verified = camhub("audit", "verify", str(export), "--hub-key", hub_jwk)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in hub.daemon.log()
