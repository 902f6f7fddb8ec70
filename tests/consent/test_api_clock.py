"""PROTOCOL.md §6: with an unsynchronised clock the hub refuses agency requests and decisions with
503 `clock_unsynced` (audited), until an owner confirms the time; the confirmation lasts for the boot."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import httpsig, jws, rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub import config as config_mod
from hub.consent import clock, pairing
from hub.daemon import running_hub
from hub.services import Services


def _config(data_dir: Path) -> config_mod.Config:
    return config_mod.parse(
        {
            "hub": {"data_dir": str(data_dir), "port": 0},
            "consent": {"trust_system_clock": False},
            "discovery": {"enabled": False},
        }
    )


def _decision(
    s: Services,
    key: Ed25519PrivateKey,
    fields: dict[str, Any],
    issued_at: float | None = None,
    typ: str = "camhub-decision+jws",
) -> str:
    payload = {
        "v": 1,
        "hub": s.hub_key.hub_id,
        **fields,
        "issued_at": rfc3339.format(int(time.time() if issued_at is None else issued_at)),
        "jti": secrets.token_urlsafe(16),
    }
    kid = jwk_thumbprint(okp_public_jwk(key.public_key()))
    return jws.sign(json.dumps(payload).encode(), key, kid, typ)


async def _entries(s: Services) -> list[dict[str, Any]]:
    assert s.consent is not None
    return [json.loads(e) for _, e in await s.consent.audit.entries(0, s.consent.audit.size)]


async def test_unsynced_clock_refuses_until_the_owner_confirms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "kernel_clock_synced", lambda: False)
    cfg = _config(tmp_path / "data")
    owner = Ed25519PrivateKey.generate()
    agency = Ed25519PrivateKey.generate()
    agency_jwk = okp_public_jwk(agency.public_key())
    from pyrage import x25519

    recipient = str(x25519.Identity.generate().to_public())
    add_agency = {
        "decision": "add-agency",
        "subject": {"name": "PD", "sig_jwk": agency_jwk, "recipient": recipient},
    }

    async with running_hub(cfg) as s, aiohttp.ClientSession() as http:
        url = s.base_url
        code = await s.store.run(pairing.issue)
        r = await http.post(
            url + "/api/v1/owner/enroll",
            json={"pairing_code": code, "public_jwk": okp_public_jwk(owner.public_key()), "name": "o"},
        )
        assert r.status == 201  # enrolment is not a time check

        jose = {"Content-Type": "application/jose"}
        r = await http.post(url + "/api/v1/decisions", data=_decision(s, owner, add_agency), headers=jose)
        assert r.status == 503 and (await r.json())["error"] == "clock_unsynced"

        body = json.dumps({"hub": s.hub_key.hub_id}).encode()
        headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
        authority = url.split("://")[1]
        headers += httpsig.sign_request(
            method="POST", authority=authority, path="/api/agency/v1/requests", query=None, headers=headers,
            body=body, private_key=agency, keyid=jwk_thumbprint(agency_jwk), created=int(time.time()),
            scheme="http",
        )  # fmt: skip
        r = await http.post(url + "/api/agency/v1/requests", data=body, headers=dict(headers))
        assert r.status == 503 and (await r.json()) == {
            "error": "clock_unsynced",
            "detail": "the hub's clock is not known to be synchronised",
        }
        # Audited once (not once per refusal: a flood must not flood the log), naming who was refused.
        entries = await _entries(s)
        unsynced = [e for e in entries if e["type"] == "clock.unsynced"]
        assert [(e["actor"], e["data"]) for e in unsynced] == [("owner", {"refused": "decision"})]
        # ... and only there: the refused calls write no rejection entry of their own either.
        assert not [e for e in entries if e["type"] in ("request.rejected", "decision.rejected")], entries

        # An owner device whose clock disagrees cannot vouch for ours.
        confirm = {"decision": "confirm-time"}
        r = await http.post(
            url + "/api/v1/owner/clock", data=_decision(s, owner, confirm, time.time() - 600), headers=jose
        )
        assert r.status == 409 and (await r.json())["error"] == "clock_mismatch"
        r = await http.post(url + "/api/v1/decisions", data=_decision(s, owner, add_agency), headers=jose)
        assert r.status == 503
        # Only a decision JWS vouches for the time: the same payload signed as another type is refused.
        other = _decision(s, owner, confirm, typ="JWT")
        r = await http.post(url + "/api/v1/owner/clock", data=other, headers=jose)
        assert r.status == 400 and (await r.json())["error"] == "jws_bad_typ", await r.text()

        r = await http.post(url + "/api/v1/owner/clock", data=_decision(s, owner, confirm), headers=jose)
        assert r.status == 201, await r.text()
        r = await http.post(url + "/api/v1/decisions", data=_decision(s, owner, add_agency), headers=jose)
        assert r.status == 201, await r.text()
        types = [e["type"] for e in await _entries(s)]
        assert "clock.confirmed" in types and "clock.rejected" in types

    # Same boot, new daemon: the confirmation holds (it is stored with the kernel's boot id).
    async with running_hub(cfg) as s:
        assert s.consent is not None and s.consent.clock.synced()


async def test_an_agency_call_on_an_unsynced_clock_is_audited_as_unauthenticated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§6: the clock is checked before the signature is read, so the audit entry of a refused agency
    call names no one: `clock.unsynced`, actor `unauthenticated`, `refused` its method and path (not
    the query); no `request.rejected` entry of its own."""
    monkeypatch.setattr(clock, "kernel_clock_synced", lambda: False)
    async with running_hub(_config(tmp_path / "data")) as s, aiohttp.ClientSession() as http:
        r = await http.post(
            s.base_url + "/api/agency/v1/requests?x=1",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 503 and (await r.json())["error"] == "clock_unsynced"
        entries = await _entries(s)
        unsynced = [(e["actor"], e["data"]) for e in entries if e["type"] == "clock.unsynced"]
        assert unsynced == [("unauthenticated", {"refused": "POST /api/agency/v1/requests"})]
        assert not [e for e in entries if e["type"] == "request.rejected"], entries


def test_kernel_probe_answers_without_privileges() -> None:
    # Whatever this machine's state, the read-only adjtimex call must answer, not raise.
    assert clock.kernel_clock_synced() in (True, False)
    assert clock.ClockGuard(trust_system_clock=True, probe=lambda: False).synced()
    assert not clock.ClockGuard(trust_system_clock=False, probe=lambda: False).synced()


async def test_a_passkey_only_owner_confirms_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROTOCOL §6 and §3.1: an owner whose only key is a passkey (paired with one) confirms the time
    with an assertion; the §3.1 checks and the counter rule hold there as for a decision."""
    from tests.consent.softauthn import SoftPasskey, challenge_of, decision, payload

    monkeypatch.setattr(clock, "kernel_clock_synced", lambda: False)
    data = tmp_path / "data"
    cfg = config_mod.parse(
        {
            "hub": {"data_dir": str(data), "port": 0, "passkey_rp_id": "localhost"},
            "consent": {"trust_system_clock": False},
            "discovery": {"enabled": False},
        }
    )
    pk = SoftPasskey("localhost", "http://localhost:8080")
    async with running_hub(cfg) as s, aiohttp.ClientSession() as http:
        url, hub_id = s.base_url, s.hub_key.hub_id
        code = await s.store.run(pairing.issue)
        r = await http.post(
            url + "/api/v1/owner/enroll",
            json={"pairing_code": code, "passkey": pk.create(hub_id), "name": "phone"},
        )
        assert r.status == 201, await r.text()
        as_json = {"Content-Type": "application/json"}

        async def confirm(body: bytes) -> tuple[int, dict[str, Any]]:
            r = await http.post(url + "/api/v1/owner/clock", data=body, headers=as_json)
            return r.status, await r.json()

        confirm_time = {"decision": "confirm-time"}
        good = payload(hub_id, confirm_time)
        # An assertion made for other bytes, one without user verification, another relying party.
        other = payload(hub_id, confirm_time)
        status, body = await confirm(decision(pk, good, pk.assert_(challenge_of(other))))
        assert (status, body["error"]) == (403, "passkey_wrong_challenge")
        status, body = await confirm(decision(pk, good, uv=False))
        assert (status, body["error"]) == (403, "passkey_user_not_verified")
        status, body = await confirm(decision(pk, good, rp_id="evil.example"))
        assert (status, body["error"]) == (403, "passkey_bad_rp_id")
        # Another hub's confirmation, and a device clock 10 minutes off.
        status, body = await confirm(decision(pk, payload("not-this-hub", confirm_time)))
        assert (status, body["error"]) == (403, "wrong_hub")
        off = payload(hub_id, confirm_time, issued_at=rfc3339.format(int(time.time()) - 600))
        status, body = await confirm(decision(pk, off))
        assert (status, body["error"]) == (409, "clock_mismatch")
        assert s.consent is not None and not s.consent.clock.synced()

        accepted = decision(pk, good)
        status, body = await confirm(accepted)
        assert status == 201 and body["confirmed"] is True, body
        assert s.consent.clock.synced()
        status, body = await confirm(accepted)  # replayed as is
        assert (status, body["error"]) == (403, "jti_replayed")
        # A clone of the credential (the counter it shows was seen already) is refused and flagged.
        clone = SoftPasskey(
            "localhost", pk.origin, credential_id=pk.credential_id, key=pk.key, counter=pk.counter - 1
        )
        status, body = await confirm(decision(clone, payload(hub_id, confirm_time)))
        assert (status, body["error"]) == (403, "passkey_counter_regressed")

        entries = await _entries(s)
        confirmed = [e for e in entries if e["type"] == "clock.confirmed"]
        assert [e["actor"] for e in confirmed] == [f"owner:{pk.kid}"]
        flagged = [e["data"] for e in entries if e["type"] == "key.counter_regressed"]
        assert [(d["kid"], d["stored"], d["seen"]) for d in flagged] == [(pk.kid, pk.counter, pk.counter)]
        assert all(isinstance(d["decision_id"], str) and d["decision_id"] for d in flagged)
        # Now the passkey decides (the clock is confirmed for this boot).
        add_agency = {
            "decision": "add-agency",
            "subject": {"name": "PD", "sig_jwk": okp_public_jwk(Ed25519PrivateKey.generate().public_key()),
                        "recipient": _recipient()},
        }  # fmt: skip
        r = await http.post(
            url + "/api/v1/decisions", data=decision(pk, payload(hub_id, add_agency)), headers=as_json
        )
        assert r.status == 201, await r.text()


def _recipient() -> str:
    from pyrage import x25519

    return str(x25519.Identity.generate().to_public())
