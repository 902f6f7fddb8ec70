"""Owner keys (PROTOCOL.md §1, §3): first enrolment with the pairing code, then owner-signed
`enroll-key` / `revoke-key` decisions.

The pairing code (`pairing.py`) enrols only the *first* owner key: once any unrevoked owner key
exists, every further key needs an `enroll-key` JWS signed by a still-valid owner key, so a code
issued later with `camhub pair` cannot add a key behind the owner's back. Revoking a key also revokes
every grant that key approved (a lost phone's approvals must not outlive it; §2.4 cuts its live
streams), and the hub refuses to revoke the last remaining key (the box would have no owner).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hub.consent.decisions import Context, Decision, Outcome, invalid, refuse
from hub.consent.errors import ConsentError
from hub.consent.keys import jwk_thumbprint, public_key_from_jwk
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


def _subject(d: Decision) -> dict[str, Any]:
    subject = d.payload.get("subject")
    if not isinstance(subject, dict):
        raise invalid(f"{d.kind} needs a subject object")
    return subject


async def enroll_first(svc: ConsentService, body: Any, remote: str) -> dict[str, str]:
    """`POST /api/v1/owner/enroll` `{"pairing_code","public_jwk","name"}` → `{"kid"}` (201)."""
    if not isinstance(body, dict):
        raise ConsentError("invalid_json", "body must be a JSON object", 400)
    extra = sorted(set(body) - {"pairing_code", "public_jwk", "name"})
    if extra:
        raise ConsentError("unknown_field", f"unknown fields: {', '.join(extra)}", 400)
    code = body.get("pairing_code")
    if not isinstance(code, str):
        raise ConsentError("invalid_field", "pairing_code must be a string", 400)
    jwk, kid = _public_jwk(body.get("public_jwk"), "public_jwk")
    name = _name(body.get("name"), "name")
    now = svc.now()

    def enroll(conn: sqlite3.Connection) -> str | None:
        if q.active_owner_keys(conn):
            return "an owner key is already enrolled; add keys with an owner-signed enroll-key"
        if not svc.pairing.redeem(conn, code, now):
            return "wrong, used or expired pairing code" + (
                " (locked until restart)" if svc.pairing.locked else ""
            )
        with transaction(conn):
            q.insert_owner_key(conn, kid, jwk, name, now, None)
        return None

    problem = await svc.store.run(enroll)
    if problem is not None:
        await svc.record("pairing.failed", "unauthenticated", {"remote": remote, "detail": problem})
        raise ConsentError("bad_pairing_code", problem, 403)
    await svc.record("key.enrolled", f"owner:{kid}", {"kid": kid, "name": name, "via": "pairing_code"})
    return {"kid": kid}


def enroll_key(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "enroll-key", "subject": {"public_jwk", "name"}}` (§3)."""
    subject = _subject(d)
    extra = sorted(set(subject) - {"public_jwk", "name"})
    if extra:
        raise invalid(f"unknown subject members: {', '.join(extra)}")
    try:
        jwk, kid = _public_jwk(subject.get("public_jwk"), "subject.public_jwk")
        name = _name(subject.get("name"), "subject.name")
    except ConsentError as exc:
        raise invalid(exc.detail) from exc
    existing = q.owner_key(conn, kid)
    if existing is not None and existing.revoked_at is None:
        raise refuse("key_exists", "this owner key is already enrolled")
    q.insert_owner_key(conn, kid, jwk, name, ctx.now, d.kid)
    return Outcome(
        {"decision_id": d.id},
        events=[("key.enrolled", {"kid": kid, "name": name, "via": "enroll-key", "decision_id": d.id})],
    )


def revoke_key(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "revoke-key", "subject": {"kid"}}` (§3); never the last remaining key."""
    subject = _subject(d)
    if set(subject) != {"kid"} or not isinstance(subject["kid"], str):
        raise invalid('revoke-key subject is {"kid": "..."}')
    kid = subject["kid"]
    key = q.owner_key(conn, kid)
    if key is None or key.revoked_at is not None:
        raise refuse("unknown_owner_key", "subject.kid is not an enrolled, unrevoked owner key")
    if len(q.active_owner_keys(conn)) <= 1:
        raise refuse("last_owner_key", "the hub refuses to revoke the last remaining owner key")
    q.revoke_owner_key(conn, kid, ctx.now, d.id)
    ended = q.revoke_grants_approved_by(conn, kid, ctx.now, d.id)
    return Outcome(
        {"decision_id": d.id},
        events=[("key.revoked", {"kid": kid, "decision_id": d.id, "grants_revoked": ended})],
        grants_ended=True,
    )
