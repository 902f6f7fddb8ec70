"""Passkey decisions (PROTOCOL §3.1, issue 18) on a real daemon, signed by a software authenticator:
enrolment (enroll-key and pairing code), approve, the key lineage, and every refusal with its code.
The browser half (Chromium's virtual authenticator) is tests/web/test_passkeys.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from camhub_protocol import audit_verify, jws
from tests.consent.flow_env import HubEnv, Response, http, start_hub_env
from tests.consent.softauthn import SoftPasskey, challenge_of, decision, payload

ORIGIN = "http://localhost:8080"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEnv]:
    (tmp_path / "hub").mkdir()
    env = start_hub_env(tmp_path / "hub", footage=False, hub='passkey_rp_id = "localhost"', in_process=True)
    try:
        yield env
    finally:
        env.stop()


def post(hub: HubEnv, body: bytes) -> Response:
    return http("POST", hub.url + "/api/v1/decisions", body, {"Content-Type": "application/json"})


def refused(r: Response, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.json()["error"] == code, r.body


def enrol(hub: HubEnv, pk: SoftPasskey, name: str = "phone") -> Response:
    return hub.decide({"decision": "enroll-key", "subject": {"passkey": pk.create(hub.hub_id), "name": name}})


def request(hub: HubEnv) -> tuple[str, str]:
    return hub.submit(hub.t0 + 10, hub.t0 + 40)


def test_enrol_then_approve_with_a_passkey_and_every_forgery_is_refused(hub: HubEnv) -> None:
    pk = SoftPasskey("localhost", ORIGIN)
    r = enrol(hub, pk)
    assert r.status == 201, r.body
    enrolled = [e for e in hub.audit_entries() if e["type"] == "key.enrolled" and e["data"]["kid"] == pk.kid]
    assert enrolled and enrolled[0]["data"]["rp_id"] == "localhost"
    assert enrolled[0]["data"]["enrolled_by"] == hub.owner_kid  # lineage: a child of the signing key

    rid, sha = request(hub)
    approve = payload(hub.hub_id, hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40))

    # An assertion for another payload (same signature, other bytes) is refused.
    other = payload(hub.hub_id, hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 39))
    assertion = pk.assert_(challenge_of(approve))
    refused(post(hub, decision(pk, other, assertion)), 403, "passkey_wrong_challenge")
    # No user verification (a stolen phone whose owner's finger is absent): refused.
    refused(post(hub, decision(pk, approve, uv=False)), 403, "passkey_user_not_verified")
    # Another site's origin, another relying party, a create() answer, a forged signature.
    refused(post(hub, decision(pk, approve, origin="https://evil.example")), 403, "passkey_bad_origin")
    refused(post(hub, decision(pk, approve, rp_id="evil.example")), 403, "passkey_bad_rp_id")
    refused(post(hub, decision(pk, approve, type_="webauthn.create")), 403, "passkey_bad_client_data")
    auth, client, sig = pk.assert_(challenge_of(approve))
    forged = (
        bytes([sig[0]]) + bytes([sig[1] ^ 1]) + sig[2:]
        if pk.alg == "EdDSA"
        else sig[:-2] + bytes([sig[-2] ^ 1, sig[-1]])
    )
    refused(post(hub, decision(pk, approve, (auth, client, forged))), 403, "passkey_bad_signature")
    # Payload bytes that are not their own canonical form would give one payload two challenges.
    loose = json.dumps(json.loads(approve), indent=1).encode()
    refused(post(hub, decision(pk, loose)), 400, "invalid_decision")
    # A JWS naming the passkey's kid: a passkey never signs a JWS.
    fake = jws.sign(approve, hub.owner, pk.kid, "camhub-decision+jws")
    refused(hub.post_decision(fake), 403, "key_format_mismatch")

    # The real one is accepted, and stored with the assertion in the audit log.
    body = decision(pk, approve)
    r = post(hub, body)
    assert r.status == 201, r.body
    accepted = [e for e in hub.audit_entries() if e["type"] == "decision.accepted"][-1]
    assert accepted["actor"] == f"owner:{pk.kid}"
    assert accepted["data"]["webauthn"] == json.loads(body)
    assert "jws" not in accepted["data"]
    # And in the decisions table: the passkey decision's JSON, marked as such (not a JWS).
    row = hub.decision_row(r.json()["decision_id"])
    assert row is not None and row["format"] == "webauthn" and row["kid"] == pk.kid, row
    assert json.loads(row["jws"]) == json.loads(body) and row["request_id"] == rid, row
    # Replayed as is: refused by its jti.
    refused(post(hub, body), 403, "jti_replayed")


def test_a_passkey_decision_needs_an_enrolled_passkey(hub: HubEnv) -> None:
    # §3.1 step 2: the kid must name an enrolled owner key, and that key must be a passkey.
    rid, sha = request(hub)
    approve = payload(hub.hub_id, hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40))
    stranger = SoftPasskey("localhost", ORIGIN)  # never enrolled
    since = hub.last_seq()
    unknown = post(hub, decision(stranger, approve))
    refused(unknown, 403, "unknown_owner_key")
    # A well-formed assertion whose kid is the owner's Ed25519 (JWS) key.
    body = json.loads(decision(stranger, approve))
    body["kid"] = hub.owner_kid
    mismatch = post(hub, json.dumps(body).encode())
    refused(mismatch, 403, "key_format_mismatch")
    assert unknown.is_json_error and mismatch.is_json_error  # {"error", "detail"}, the detail a string
    codes = [e["data"]["code"] for e in hub.audit_entries(since) if e["type"].endswith(".rejected")]
    assert codes == ["unknown_owner_key", "key_format_mismatch"], codes
    assert hub.poll(rid).json()["status"] == "pending"


def test_a_cloned_authenticator_is_flagged_by_its_counter(hub: HubEnv) -> None:
    pk = SoftPasskey("localhost", ORIGIN)
    assert enrol(hub, pk).status == 201
    rid, sha = request(hub)
    r = post(
        hub,
        decision(
            pk,
            payload(
                hub.hub_id,
                {
                    "decision": "decline",
                    "request_id": rid,
                    "request_sha256": sha,
                    "recipient": hub.agency.keyid,
                },
            ),
        ),
    )
    assert r.status == 201, r.body
    # The clone signs a fresh payload (new jti) with a counter the hub has already seen.
    clone = SoftPasskey(
        "localhost", ORIGIN, credential_id=pk.credential_id, key=pk.key, counter=pk.counter - 1
    )
    rid2, sha2 = request(hub)
    body = decision(clone, payload(hub.hub_id, hub.approval(rid2, sha2, hub.t0 + 10, hub.t0 + 40)))
    refused(post(hub, body), 403, "passkey_counter_regressed")
    flagged = [e for e in hub.audit_entries() if e["type"] == "key.counter_regressed"]
    assert [(e["data"]["kid"], e["data"]["stored"], e["data"]["seen"]) for e in flagged] == [
        (pk.kid, pk.counter, pk.counter)
    ]
    # §3.1: the entry is {"kid", "stored", "seen", "decision_id"}, the last naming the refused decision.
    assert set(flagged[0]["data"]) == {"kid", "stored", "seen", "decision_id"}, flagged
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", flagged[0]["data"]["decision_id"]), flagged
    # The genuine authenticator carries on.
    r = post(hub, decision(pk, payload(hub.hub_id, hub.approval(rid2, sha2, hub.t0 + 10, hub.t0 + 40))))
    assert r.status == 201, r.body


def test_passkey_lineage_pairing_code_and_revoke(hub: HubEnv, tmp_path: Path) -> None:
    """A passkey enrolled with the pairing code (after `camhub owner reset`) is a root; the EdDSA
    passkey it enrols cannot revoke it; revoking the child takes what the child approved with it."""
    out = subprocess.run(
        [sys.executable, "-m", "hub", "owner", "reset", "--config", str(hub.config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    code = out.stdout.split("pairing code: ", 1)[1].split()[0]
    root = SoftPasskey("localhost", ORIGIN)
    bad = http(
        "POST", hub.url + "/api/v1/owner/enroll",
        json.dumps({"pairing_code": code, "passkey": root.create(hub.hub_id, uv=False), "name": "laptop"}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    refused(bad, 400, "passkey_registration_invalid")  # UV is required at enrolment too
    r = http(
        "POST", hub.url + "/api/v1/owner/enroll",
        json.dumps({"pairing_code": code, "passkey": root.create(hub.hub_id), "name": "laptop"}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert (r.status, r.json()) == (201, {"kid": root.kid}), r.body

    def sign(pk: SoftPasskey, fields: dict[str, object]) -> Response:
        return post(hub, decision(pk, payload(hub.hub_id, fields)))

    phone = SoftPasskey("localhost", ORIGIN, alg="EdDSA")
    r = sign(
        root, {"decision": "enroll-key", "subject": {"passkey": phone.create(hub.hub_id), "name": "phone"}}
    )
    assert r.status == 201, r.body
    refused(sign(phone, {"decision": "revoke-key", "subject": {"kid": root.kid}}), 403, "revoke_ancestor")
    refused(sign(root, {"decision": "revoke-key", "subject": {"kid": root.kid}}), 403, "last_owner_key")
    # The phone adds an agency and approves to it; revoking the phone undoes both.
    sign(
        phone,
        {
            "decision": "add-agency",
            "subject": {"name": "Test PD", "sig_jwk": hub.agency.sig_jwk, "recipient": hub.agency.recipient},
        },
    )
    rid, sha = request(hub)
    assert sign(phone, hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40)).status == 201
    r = sign(root, {"decision": "revoke-key", "subject": {"kid": phone.kid}})
    assert r.status == 201, r.body
    revoked = [e for e in hub.audit_entries() if e["type"] == "key.revoked"][-1]["data"]
    assert revoked["keys_revoked"] == [phone.kid] and len(revoked["grants_revoked"]) == 1
    refused(
        sign(
            phone,
            {"decision": "decline", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid},
        ),
        403,
        "owner_key_revoked",
    )
    # The same passkey can never come back.
    again = sign(
        root, {"decision": "enroll-key", "subject": {"passkey": phone.create(hub.hub_id), "name": "phone"}}
    )
    refused(again, 403, "owner_key_revoked")

    # `camhub audit verify` re-verifies every passkey decision offline.
    export = tmp_path / "export"
    out = subprocess.run(
        [sys.executable, "-m", "hub", "audit", "export", "--config", str(hub.config), str(export)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    hub_jwk = http("GET", hub.url + "/api/v1/hub").json()["public_jwk"]
    audit_verify.verify_export(export, hub_jwk)  # raises VerifyError at the first bad entry


def test_ed25519_keys_keep_working_beside_a_passkey(hub: HubEnv) -> None:
    """Existing keys keep working beside passkeys: a JWS still signs, and the passkey signs the
    clock route too (§6; the refusals there are tests/consent/test_api_clock.py's)."""
    pk = SoftPasskey("localhost", ORIGIN)
    assert enrol(hub, pk).status == 201
    rid, sha = request(hub)
    assert hub.decide(hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40)).status == 201
    body = decision(pk, payload(hub.hub_id, {"decision": "confirm-time"}))
    r = http("POST", hub.url + "/api/v1/owner/clock", body, {"Content-Type": "application/json"})
    assert r.status == 201 and json.loads(r.body)["confirmed"] is True, r.body


async def test_audit_verify_names_a_passkey_decision_the_owner_never_signed(tmp_path: Path) -> None:
    """A hub that writes a passkey decision into its own (validly signed) log with a payload other
    than the one the passkey signed is caught offline, at that entry's seq, by the stand-alone verifier."""
    from camhub_protocol.keys import HubKey
    from hub.consent.audit import AuditLog
    from hub.store import Store
    from tests.consent.test_audit import run_verify

    (tmp_path / "keys").mkdir()
    hub_key = HubKey.load_or_create(tmp_path / "keys")[0]
    pk = SoftPasskey("camhub.local", "https://camhub.local")
    signed = payload(
        hub_key.hub_id, {"decision": "decline", "request_id": "r1", "request_sha256": "00", "recipient": "a"}
    )
    honest = json.loads(decision(pk, signed))
    # The hub logs the owner's assertion on a decision of its own making (another recipient).
    forged = json.loads(signed) | {"recipient": "accomplice"}
    lied = json.loads(decision(pk, payload(hub_key.hub_id, forged), _assertion_of(honest)))
    key_data = {"kid": pk.kid, "name": "phone", "via": "pairing_code", "rp_id": "camhub.local",
                "credential_id": "x", "public_jwk": pk.public_jwk()}  # fmt: skip

    async def export(name: str, webauthn: dict[str, str]) -> Path:
        store = await Store.open(tmp_path / f"{name}.db")
        try:
            log = await AuditLog.open(store, hub_key)
            await log.append("key.enrolled", f"owner:{pk.kid}", key_data)
            await log.append(
                "decision.accepted", f"owner:{pk.kid}", {"decision": "decline", "webauthn": webauthn}
            )
            await log.checkpoint()
            out = tmp_path / name
            out.mkdir()
            await log.export(out)
            return out
        finally:
            await store.close()

    good = await export("honest", honest)
    rc, text = run_verify(str(good), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 0, text
    bad = await export("lied", lied)
    rc, text = run_verify(str(bad), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and "first bad seq: 1" in text and "another payload" in text, text


def _assertion_of(body: dict[str, str]) -> tuple[bytes, bytes, bytes]:
    from camhub_protocol.keys import b64url_decode

    return tuple(b64url_decode(body[m]) for m in ("authenticator_data", "client_data_json", "signature"))  # type: ignore[return-value]


def test_a_passkey_decision_racing_its_keys_revocation_never_leaves_a_child(hub: HubEnv) -> None:
    """Issue 12's race with a passkey as B: "A revokes B" (JWS) and "B enrols C" (passkey) posted
    together; the passkey path re-reads B's state in the transaction that applies it, so C is never
    left active under a revoked B."""
    import threading

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
    from tests.consent.test_owner_keys import key_rows

    for _ in range(8):
        b = SoftPasskey("localhost", ORIGIN)
        assert enrol(hub, b).status == 201
        c = Ed25519PrivateKey.generate()
        c_kid = jwk_thumbprint(okp_public_jwk(c.public_key()))
        revoke_jws = hub.sign({"decision": "revoke-key", "subject": {"kid": b.kid}})
        subject = {"public_jwk": okp_public_jwk(c.public_key()), "name": "c"}
        enrol_body = decision(b, payload(hub.hub_id, {"decision": "enroll-key", "subject": subject}))
        results: dict[str, int] = {}
        go = threading.Barrier(2)

        def send(
            name: str, go: threading.Barrier = go, results: dict[str, int] = results,
            revoke_jws: str = revoke_jws, enrol_body: bytes = enrol_body,
        ) -> None:  # fmt: skip
            go.wait()
            r = hub.post_decision(revoke_jws) if name == "revoke" else post(hub, enrol_body)
            results[name] = r.status

        threads = [threading.Thread(target=send, args=(n,)) for n in ("revoke", "enrol")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results["revoke"] == 201 and results["enrol"] in (201, 403), results
        rows = key_rows(hub)
        assert rows[b.kid][1] is not None
        if c_kid in rows:
            assert rows[c_kid][1] is not None, "C alive under a revoked passkey B"


def test_a_passkey_decision_sealed_to_the_hub_is_accepted(hub: HubEnv) -> None:
    """PROTOCOL §7.6: through a relay a decision is sealed to the hub; the sealed plaintext may be a
    passkey decision (told apart by its first byte) and the hub accepts sealed bodies on the LAN too."""
    from camhub_protocol import sealed_bodies

    pk = SoftPasskey("localhost", ORIGIN)
    assert enrol(hub, pk).status == 201
    rid, sha = request(hub)
    body = decision(pk, payload(hub.hub_id, hub.approval(rid, sha, hub.t0 + 10, hub.t0 + 40)))
    recipient = http("GET", hub.url + "/api/v1/hub").json()["recipient"]
    sealed = sealed_bodies.seal(body, recipient)
    r = http("POST", hub.url + "/api/v1/decisions", sealed, {"Content-Type": sealed_bodies.CONTENT_TYPE})
    assert r.status == 201, r.body
    r = http("POST", hub.url + "/api/v1/decisions", sealed, {"Content-Type": sealed_bodies.CONTENT_TYPE})
    refused(r, 403, "jti_replayed")


def test_a_passkey_proof_sets_the_password_once(hub: HubEnv) -> None:
    """The set-password proof in the §3.1 format: UV required, single use (jti), for this hub only."""
    pk = SoftPasskey("localhost", ORIGIN)
    assert enrol(hub, pk).status == 201
    proof_payload = payload(hub.hub_id, {"purpose": "set-password"})

    def set_password(body: bytes) -> Response:
        doc = {"password": "a long enough passphrase", "proof": json.loads(body)}
        return http(
            "POST",
            hub.url + "/api/v1/session/password",
            json.dumps(doc).encode(),
            {"Content-Type": "application/json"},
        )

    refused(set_password(decision(pk, proof_payload, uv=False)), 403, "passkey_user_not_verified")
    good = decision(pk, proof_payload)
    assert set_password(good).status == 200
    refused(set_password(good), 403, "bad_proof")  # the jti is spent
    other_hub = payload("another-hub", {"purpose": "set-password"})
    refused(set_password(decision(pk, other_hub)), 403, "bad_proof")


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_audit_verify_rechecks_each_passkey_decision_rule_offline(alg: str) -> None:
    """§3.1: `camhub audit verify` re-verifies a passkey decision from the log alone: the passkey's
    earlier `key.enrolled` entry, its thumbprint as the kid, the hub, challenge, type, rpIdHash, UP,
    UV and the signature. Each rule broken alone is refused, and the reason names the rule (and the
    kid that has no key), since that reason is all the person running the verifier gets."""
    import hashlib

    from tests.consent.softauthn import b64url

    pk = SoftPasskey("camhub.local", "https://camhub.local", alg=alg)
    other = SoftPasskey("camhub.local", "https://camhub.local", alg=alg)
    hub_id = "hub-test"
    signed = payload(
        hub_id, {"decision": "decline", "request_id": "r1", "request_sha256": "00", "recipient": "a"}
    )

    def jwk(key: SoftPasskey) -> dict[str, str]:
        if key.alg == "ES256":
            return key.public_jwk()
        raw = key.key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}

    enrolled = {pk.kid: {"kid": pk.kid, "rp_id": "camhub.local", "public_jwk": jwk(pk)}}

    def body(
        data: bytes = signed, assertion: tuple[bytes, bytes, bytes] | None = None, **kw: str
    ) -> dict[str, str]:
        return dict(json.loads(decision(pk, data, assertion, **kw)))

    def flags(value: int) -> tuple[bytes, bytes, bytes]:
        auth, client, _ = pk.assert_(challenge_of(signed))
        auth = auth[:32] + bytes([value]) + auth[33:]
        return auth, client, pk._sign(auth + hashlib.sha256(client).digest())

    def why(decision_body: object, keys: dict[str, object] = enrolled, hub: str = hub_id) -> str:
        with pytest.raises(ValueError) as caught:
            audit_verify.check_passkey_decision(decision_body, keys, hub)
        return str(caught.value)

    audit_verify.check_passkey_decision(body(), enrolled, hub_id)  # the honest one verifies
    audit_verify.check_passkey_decision(body(assertion=flags(0x05)), enrolled, hub_id)  # UP|UV only

    assert "not a passkey decision" in why([body()])
    assert "not a passkey decision" in why(body() | {"format": "jws"})
    unknown = why(body(), {})
    assert f"kid {pk.kid!r} has no earlier key.enrolled entry" in unknown, unknown
    stranger = why(body(), {pk.kid: enrolled[pk.kid] | {"public_jwk": jwk(other)}})
    assert "not the key the kid names" in stranger
    assert "not for this hub" in why(body(), hub="another-hub")
    assert "not for this hub" in why(body(payload("another-hub", {"decision": "decline"})))
    assert "webauthn.get" in why(body(type_="webauthn.create"))
    elsewhere = payload(hub_id, {"decision": "decline", "request_id": "r2"})
    assert "another payload" in why(body(elsewhere, pk.assert_(challenge_of(signed))))
    assert "relying party" in why(body(rp_id="evil.example"))
    assert "relying party" in why(body(), {pk.kid: enrolled[pk.kid] | {"rp_id": "evil.example"}})
    assert "relying party" in why(
        body(), {pk.kid: {k: v for k, v in enrolled[pk.kid].items() if k != "rp_id"}}
    )
    auth, client, sig = pk.assert_(challenge_of(signed))
    assert "relying party" in why(body(assertion=(auth[:36], client, sig)))  # no flags byte, no counter
    assert "(UP and UV flags)" in why(body(uv=False))  # present, not verified
    assert "(UP and UV flags)" in why(body(assertion=flags(0x04)))  # verified, not present
    assert "(UP and UV flags)" in why(body(assertion=flags(0x00)))
    forged = bytes(len(sig)) if alg == "EdDSA" else sig[:-2] + bytes([sig[-2] ^ 1, sig[-1]])
    assert "signature does not verify" in why(body(assertion=(auth, client, forged)))
    assert "signature does not verify" in why(body(assertion=other.assert_(challenge_of(signed))))
