"""Owner keys (PROTOCOL.md §1, §3): first enrolment with the pairing code, owner-signed `enroll-key`
/ `revoke-key` decisions, their lineage, and the reset from a shell on the box.

The pairing code (`pairing.py`) enrols only the *first* owner key: once any unrevoked owner key
exists, every further key needs an `enroll-key` JWS signed by a still-valid owner key, so a code
issued later with `camhub pair` cannot add a key behind the owner's back.

Lineage (issue 12). Each key remembers the key that enrolled it (`enrolled_by`; none for a key
enrolled with the pairing code, a *root*). The thief of one owner phone must not be able to take the
hub over, so:

- a key can never revoke the key that enrolled it, nor any of that key's ancestors (403
  `revoke_ancestor`): the phone cannot revoke the laptop that enrolled it, while the laptop can
  revoke the phone;
- revoking a key undoes what it did, in the same transaction: every key it enrolled (transitively)
  is revoked, every agency any of them added is removed (its open requests close, its grants are
  revoked), and every grant any of them approved is revoked. `revoke_plan` computes exactly that
  list, for the owner's confirmation screen and for the audit entry;
- a kid that was ever revoked can never be enrolled again (403 `owner_key_revoked`), and a key must
  be spelled canonically (`keys.public_key_from_jwk`), so no alias kid of a revoked key exists;
- the hub refuses a revoke that would leave no owner key at all (403 `last_owner_key`).

If the thief holds the root itself, the owner takes the box back with `camhub owner reset` (`reset`
below) from a shell on the box: physical or admin access already means full control of it.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import jwk_thumbprint, public_key_from_jwk
from camhub_protocol.limits import client_key
from hub.consent import passkeys
from hub.consent.decisions import Context, Decision, Outcome, invalid, refuse
from hub.consent.service import ConsentService
from hub.store import consent as q
from hub.store import transaction

MAX_NAME_CHARS = 64


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_NAME_CHARS:
        raise ConsentError("invalid_field", f"{what} must be 1-{MAX_NAME_CHARS} characters", 400)
    return value.strip()


def _public_jwk(value: Any, what: str) -> tuple[dict[str, str], str]:
    """A public Ed25519 OKP JWK with exactly the members we store; returns (jwk, thumbprint)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConsentError("invalid_jwk", f"{what} must be a JWK object", 400)
    try:
        public_key_from_jwk(value)
        kid = jwk_thumbprint(value)
    except ValueError as exc:
        raise ConsentError("invalid_jwk", f"{what}: {exc}", 400) from exc
    return {"kty": "OKP", "crv": "Ed25519", "x": value["x"]}, kid


def _passkey(rp_id: str, hub_id: str, value: Any) -> passkeys.NewPasskey:
    """A passkey registration (PROTOCOL §3.1 "Enrolment"); 400 `passkey_registration_invalid`."""
    try:
        return passkeys.register(passkeys.RelyingParty(rp_id), hub_id, value)
    except ValueError as exc:
        raise ConsentError("passkey_registration_invalid", str(exc)[:300], 400) from exc


def _insert(conn: sqlite3.Connection, kid: str, jwk: dict[str, str], name: str, now: float, by: str | None,
            passkey: passkeys.NewPasskey | None, rp_id: str) -> None:  # fmt: skip
    """One owner key row, and for a passkey its WebAuthn row, in the caller's transaction."""
    q.insert_owner_key(conn, kid, jwk, name, now, by)
    if passkey is not None:
        q.insert_passkey(
            conn, q.Passkey(kid, passkey.credential_id, passkey.cose_key, rp_id, passkey.sign_count)
        )


def _enrolled_event(kid: str, name: str, passkey: passkeys.NewPasskey | None, rp_id: str) -> dict[str, Any]:
    """`key.enrolled` data; for a passkey also what `camhub audit verify` needs to re-verify its
    decisions from the log alone (§3.1)."""
    data: dict[str, Any] = {"kid": kid, "name": name}
    if passkey is not None:
        data |= {"public_jwk": passkey.public_jwk, "credential_id": passkey.credential_id, "rp_id": rp_id}
    return data


def _subject(d: Decision) -> dict[str, Any]:
    subject = d.payload.get("subject")
    if not isinstance(subject, dict):
        raise invalid(f"{d.kind} needs a subject object")
    return subject


ENROLL_ROUTE = "POST /api/v1/owner/enroll"


async def enroll_first(svc: ConsentService, body: Any, remote: str) -> dict[str, str]:
    """`POST /api/v1/owner/enroll` `{"pairing_code","public_jwk","name"}` → `{"kid"}` (201)."""
    if not isinstance(body, dict):
        raise ConsentError("invalid_json", "body must be a JSON object", 400)
    extra = sorted(set(body) - {"pairing_code", "public_jwk", "passkey", "name"})
    if extra:
        raise ConsentError("unknown_field", f"unknown fields: {', '.join(extra)}", 400)
    code = body.get("pairing_code")
    if not isinstance(code, str):
        raise ConsentError("invalid_field", "pairing_code must be a string", 400)
    rp_id = svc.config.hub.rp_id
    passkey: passkeys.NewPasskey | None = None
    if "passkey" in body:
        if "public_jwk" in body:
            raise ConsentError("invalid_field", "send public_jwk or passkey, not both", 400)
        passkey = _passkey(rp_id, svc.hub_id, body["passkey"])
        jwk, kid = passkey.public_jwk, passkey.kid
    else:
        jwk, kid = _public_jwk(body.get("public_jwk"), "public_jwk")
    name = _name(body.get("name"), "name")
    client = client_key(remote)
    wait = svc.pairing.retry_after(client, time.monotonic())
    if wait > 0:
        await svc.record_unauthenticated("pairing.failed", ENROLL_ROUTE, "rate_limited", {"remote": remote})
        raise ConsentError(
            "rate_limited", f"too many wrong pairing codes; try again in {math.ceil(wait)} s", 429,
            retry_after=wait,
        )  # fmt: skip
    now = svc.now()

    def enroll(conn: sqlite3.Connection) -> tuple[str, str] | None:
        if q.active_owner_keys(conn):
            return (
                "already_paired",
                "an owner key is already enrolled; add keys with an owner-signed enroll-key",
            )
        if not svc.pairing.redeem(conn, code, now, client, time.monotonic()):
            return "bad_pairing_code", "wrong, used or expired pairing code"
        with transaction(conn):
            if q.owner_key(conn, kid) is not None or (
                passkey is not None and q.passkey_by_credential(conn, passkey.credential_id)
            ):
                # The code is spent: a revoked key must not come back, not even from the box.
                return "owner_key_revoked", "this key was enrolled before and revoked; make a new key"
            _insert(conn, kid, jwk, name, now, None, passkey, rp_id)
        return None

    problem = await svc.store.run(enroll)
    if problem is not None:
        reason, detail = problem
        await svc.record_unauthenticated(
            "pairing.failed", ENROLL_ROUTE, reason, {"remote": remote, "detail": detail}
        )
        raise ConsentError("bad_pairing_code" if reason != "owner_key_revoked" else reason, detail, 403)
    await svc.record(
        "key.enrolled", f"owner:{kid}", _enrolled_event(kid, name, passkey, rp_id) | {"via": "pairing_code"}
    )
    return {"kid": kid}


def enroll_key(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "enroll-key", "subject": {"public_jwk" | "passkey", "name"}}` (§3, §3.1)."""
    subject = _subject(d)
    extra = sorted(set(subject) - {"public_jwk", "passkey", "name"})
    if extra or ("public_jwk" in subject) == ("passkey" in subject):
        raise invalid("enroll-key subject is {public_jwk or passkey, name}")
    passkey: passkeys.NewPasskey | None = None
    try:
        if "passkey" in subject:
            passkey = _passkey(ctx.rp_id, ctx.hub_id, subject["passkey"])
            jwk, kid = passkey.public_jwk, passkey.kid
        else:
            jwk, kid = _public_jwk(subject.get("public_jwk"), "subject.public_jwk")
        name = _name(subject.get("name"), "subject.name")
    except ConsentError as exc:
        raise invalid(exc.detail) from exc
    existing = q.owner_key(conn, kid)
    if existing is not None and existing.revoked_at is None:
        raise refuse("key_exists", "this owner key is already enrolled")
    if passkey is not None and existing is None and q.passkey_by_credential(conn, passkey.credential_id):
        raise refuse("key_exists", "a passkey with this credential id is already enrolled")
    if existing is not None:
        raise refuse("owner_key_revoked", "this key was revoked and can never be enrolled again")
    _insert(conn, kid, jwk, name, ctx.now, d.kid, passkey, ctx.rp_id)
    event = _enrolled_event(kid, name, passkey, ctx.rp_id)
    event |= {"via": "enroll-key", "enrolled_by": d.kid, "decision_id": d.id}
    return Outcome({"decision_id": d.id}, events=[("key.enrolled", event)])


@dataclass(frozen=True)
class RevokePlan:
    """Everything revoking `kid` does (PROTOCOL §3 revoke-key), computed in one transaction."""

    kid: str
    keys: list[q.OwnerKey]  # `kid` first, then every key it enrolled, transitively
    agencies: list[q.Agency]  # trusted agencies added by any of those keys
    grants: list[q.GrantRecord]  # unrevoked grants approved by any of those keys, or going to those agencies
    active_keys_left: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "keys": [{"kid": k.kid, "name": k.name} for k in self.keys],
            "agencies": [{"keyid": a.keyid, "name": a.name} for a in self.agencies],
            "grants": [
                {"id": g.id, "request_id": g.request_id, "recipient": g.recipient, "kind": g.kind}
                for g in self.grants
            ],
            "active_keys_left": self.active_keys_left,
        }


def revoke_plan(conn: sqlite3.Connection, kid: str) -> RevokePlan | None:
    """What revoking `kid` would revoke and remove; None if it is not an enrolled, unrevoked key."""
    key = q.owner_key(conn, kid)
    if key is None or key.revoked_at is not None:
        return None
    keys = [key, *(k for k in map(lambda c: q.owner_key(conn, c), q.active_descendants(conn, kid)) if k)]
    kids = [k.kid for k in keys]
    agencies = q.agencies_added_by(conn, kids)
    grants = {g.id: g for g in q.unrevoked_grants_approved_by(conn, kids)}
    for agency in agencies:
        for g in q.live_grants_for(conn, agency.keyid):  # every unrevoked grant to that agency
            grants.setdefault(g.id, g)
    left = len(q.active_owner_keys(conn)) - len(keys)
    return RevokePlan(kid, keys, agencies, list(grants.values()), left)


def revoke_key(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "revoke-key", "subject": {"kid"}}` (§3): never an ancestor of the signer, never
    the last key; the key's descendants, agencies and grants go with it."""
    subject = _subject(d)
    if set(subject) != {"kid"} or not isinstance(subject["kid"], str):
        raise invalid('revoke-key subject is {"kid": "..."}')
    kid = subject["kid"]
    plan = revoke_plan(conn, kid)
    if plan is None:
        raise refuse("unknown_owner_key", "subject.kid is not an enrolled, unrevoked owner key")
    if kid in q.ancestors(conn, d.kid):
        raise refuse(
            "revoke_ancestor", "a key cannot revoke the key that enrolled it, nor that key's ancestors"
        )
    if plan.active_keys_left <= 0:
        raise refuse("last_owner_key", "the hub refuses to revoke the last remaining owner key")
    requests_closed = 0
    for key in plan.keys:
        q.revoke_owner_key(conn, key.kid, ctx.now, d.id)
    for agency in plan.agencies:
        closed, _ = q.remove_agency(conn, agency.keyid, ctx.now, d.id)
        requests_closed += closed
    for grant in plan.grants:
        q.revoke_grant(conn, grant.id, ctx.now, d.id)
    return Outcome(
        {"decision_id": d.id},
        events=[
            (
                "key.revoked",
                {
                    "kid": kid,
                    "decision_id": d.id,
                    "keys_revoked": [k.kid for k in plan.keys],
                    "agencies_removed": [a.keyid for a in plan.agencies],
                    "grants_revoked": [g.id for g in plan.grants],
                    "requests_closed": requests_closed,
                },
            )
        ],
        grants_ended=True,
    )


@dataclass(frozen=True)
class ResetResult:
    keys_revoked: list[str]
    grants_revoked: list[str]
    sessions_ended: int
    pairing_code: str


def reset(conn: sqlite3.Connection, now: float, actor: str) -> ResetResult:
    """`camhub owner reset` (on the box): revoke every owner key and grant, end every owner session,
    remove every household member, forget the password and devices waiting to be enrolled, issue a fresh pairing code and write the
    `owner.reset` audit entry — one transaction, so the box is never half reset. Footage, the audit
    log, agencies and their requests are kept. Safe while the daemon runs: it reads all of this
    from the database at every check (sessions, the gate, live watchdogs within 0.5 s) and picks up
    the audit entry at its next append (`AuditLog.append`)."""
    from camhub_protocol.merkle import leaf_hash
    from hub.consent import pairing
    from hub.consent.audit import canonical_entry, rfc3339_now
    from hub.store import audit as audit_q
    from hub.store import members as members_q
    from hub.store import web as web_q

    with transaction(conn):
        keys = [k.kid for k in q.active_owner_keys(conn)]
        grants = [g.id for g in q.unrevoked_grants(conn)]
        for kid in keys:
            q.revoke_owner_key(conn, kid, now, "owner-reset")
        for grant_id in grants:
            q.revoke_grant(conn, grant_id, now, "owner-reset")
        sessions = web_q.end_all_owner_access(conn)
        # Household members (PROTOCOL §1.2) go too: a thief with the owner's session could have
        # invited themselves, and would otherwise keep watching after the reset.
        members = members_q.remove_all(conn, now)
        code = pairing.issue(conn, now)
        data = {
            "keys_revoked": keys,
            "grants_revoked": grants,
            "sessions_ended": sessions,
            "members_removed": members,
        }
        time_text = rfc3339_now()

        def make(seq: int) -> tuple[bytes, bytes]:
            entry = canonical_entry(seq, time_text, "owner.reset", actor, data)
            return entry, leaf_hash(entry)

        audit_q.insert_next_entry(conn, make)
    return ResetResult(keys, grants, sessions, code)
