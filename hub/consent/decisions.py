"""Owner decisions (PROTOCOL.md §3): one JWS compact string per decision, verified exactly as listed.

Common to every kind (in this order):

1. the clock is known to be right (§6), else 503 `clock_unsynced`;
2. JWS syntax, `alg` in {`Ed25519`, `EdDSA`}, `typ` = `camhub-decision+jws` (`jws.parse`; 400 `jws_*`);
3. `kid` names an enrolled owner key (403 `unknown_owner_key`) that is not revoked (403
   `owner_key_revoked`), and the signature verifies with it (403 `jws_bad_signature`);
4. the payload is a JSON object with `v` = 1, a known `decision`, only the members that kind may carry,
   `issued_at` and `jti` (400 `invalid_decision`); `hub` is this hub (403 `wrong_hub`);
5. `jti` was never used before (403 `jti_replayed`). From here on the `jti` is spent even if the
   decision is refused below: a signed decision is evidence and can be replayed by nobody later,
   e.g. a revoke-key refused as "last key" cannot be replayed once a second key exists;
6. `issued_at` is not more than 60 s in the future (403 `issued_in_future`); for key and agency
   management it is within 300 s of the hub's clock either way (403 `stale_decision`).

Then per kind: approve / decline / revoke here; enroll-key / revoke-key in `owners`; add-agency /
remove-agency in `agencies`. All of it — steps 2-6, the kind's effect, and the key's state read once
more — runs in one call on the store's thread, the effect inside one `BEGIN IMMEDIATE` transaction,
so no gate check, no other decision and no other process can interleave with it (issue 12: checked in
one call and applied in a later one, "A revokes B" and "B enrols C" both succeeded). Accepted: the JWS
is stored verbatim in `decisions`, the response is `201 {"decision_id", "request_id"?}` and the audit
log gets `decision.accepted` (plus `key.*` or `agency.*`). Refused: `decision.rejected` with the code —
one entry each once the signature verified and the `jti` was new (the owner's own act); counted per
reason and minute before that, or for a replayed `jti` (anyone may send junk or replay a JWS they saw,
PROTOCOL §5).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camhub_protocol import jws, rfc3339
from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import public_key_from_jwk
from hub.consent import passkeys
from hub.consent.service import ConsentService
from hub.store import consent as q
from hub.store import transaction

DECISION_TYP = "camhub-decision+jws"
MAX_FUTURE_S = 60
MANAGEMENT_WINDOW_S = 300
MAX_GRANT_S = 30 * 86400
MAX_FETCHES_LIMIT = 100
MAX_JTI_CHARS = 256

COMMON_MEMBERS = frozenset({"v", "hub", "decision", "issued_at", "jti"})
REQUEST_MEMBERS = frozenset(
    {"request_id", "request_sha256", "recipient", "scope", "max_fetches", "not_after"}
)
MEMBERS: dict[str, frozenset[str]] = {
    "approve": COMMON_MEMBERS | REQUEST_MEMBERS,
    "decline": COMMON_MEMBERS | REQUEST_MEMBERS,
    "revoke": COMMON_MEMBERS | REQUEST_MEMBERS,
    "enroll-key": COMMON_MEMBERS | {"subject"},
    "revoke-key": COMMON_MEMBERS | {"subject"},
    "add-agency": COMMON_MEMBERS | {"subject"},
    "remove-agency": COMMON_MEMBERS | {"subject"},
    "hold": COMMON_MEMBERS | {"subject"},
    "release-hold": COMMON_MEMBERS | {"subject"},
}
MANAGEMENT = frozenset({"enroll-key", "revoke-key", "add-agency", "remove-agency", "hold", "release-hold"})
MAX_HOLD_S = 366 * 86400  # PROTOCOL §3: a hold's `until` is at most 366 days after issued_at


def invalid(detail: str) -> ConsentError:
    """The decision is malformed (400)."""
    return ConsentError("invalid_decision", detail, 400)


def refuse(code: str, detail: str) -> ConsentError:
    """The decision is well-formed but not acceptable (403)."""
    return ConsentError(code, detail, 403)


@dataclass(frozen=True)
class Decision:
    """A decision whose signature verified with an enrolled owner key."""

    id: str  # base64url SHA-256 of the compact JWS
    kid: str
    kind: str
    payload: dict[str, Any]
    compact: str  # the signed decision as stored: JWS compact string, or a passkey decision's JSON
    issued_at: float
    format: str = "jws"  # or "webauthn" (PROTOCOL §3.1)


@dataclass
class Outcome:
    """What an accepted decision did: the response body and the audit entries to write."""

    response: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    grant: q.GrantRecord | None = None
    grants_ended: bool = False


@dataclass(frozen=True)
class Context:
    hub_id: str
    now: float
    default_max_fetches: int
    rp_id: str  # the WebAuthn relying party for passkey decisions (§3.1)
    cameras: frozenset[str] = frozenset()  # this hub's camera ids (a hold names only these, §3.2)


Handler = Callable[[sqlite3.Connection, Context, Decision], Outcome]


def decision_id(compact: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(compact.encode("utf-8")).digest()).rstrip(b"=").decode()


def _handlers() -> dict[str, Handler]:
    from hub.consent import agencies, owners

    return {
        "approve": _approve,
        "decline": _decline,
        "revoke": _revoke,
        "enroll-key": owners.enroll_key,
        "revoke-key": owners.revoke_key,
        "add-agency": agencies.add_agency,
        "remove-agency": agencies.remove_agency,
        "hold": _hold,
        "release-hold": _release_hold,
    }


def verify_owner_jws_sync(
    conn: sqlite3.Connection, compact: bytes | str, typ: str
) -> tuple[jws.ParsedJWS, dict[str, Any]]:
    """Steps 2-3 on the store's thread: parse, find the unrevoked owner key by `kid`, verify."""
    parsed = jws.parse(compact, typ=typ)
    key = q.owner_key(conn, parsed.kid)
    if key is None:
        raise refuse("unknown_owner_key", "kid is not an enrolled owner key")
    if key.revoked_at is not None:
        raise refuse("owner_key_revoked", "this owner key was revoked")
    if q.passkey(conn, parsed.kid) is not None:
        # A passkey signs WebAuthn assertions, never a JWS (§3.1); its JWK may not even be Ed25519.
        raise refuse("key_format_mismatch", "this owner key is a passkey: send a passkey decision (§3.1)")
    payload = jws.decode_json(jws.verify(parsed, public_key_from_jwk(key.public_jwk)))
    if not isinstance(payload, dict):
        raise invalid("payload must be a JSON object")
    return parsed, payload


async def verify_owner_jws(
    svc: ConsentService, compact: bytes | str, typ: str
) -> tuple[jws.ParsedJWS, dict[str, Any]]:
    """Steps 2-3; returns (parsed, payload). For a check that only reads (the key's state is not
    acted on later); a decision checks and applies in one transaction (`_verify_and_apply`)."""
    return await svc.store.run(verify_owner_jws_sync, compact, typ)


def check_common(payload: dict[str, Any], hub_id: str) -> tuple[str, float, str]:
    """Step 4 (syntax of the common members). Returns (kind, issued_at, jti)."""
    if payload.get("v") != 1 or isinstance(payload.get("v"), bool):
        raise invalid("v must be 1")
    kind = payload.get("decision")
    # isinstance first: a list or object here is unhashable and `in MEMBERS` would raise TypeError.
    if not isinstance(kind, str) or kind not in MEMBERS:
        raise invalid(f"decision must be one of {', '.join(MEMBERS)}")
    extra = sorted(set(payload) - MEMBERS[kind])
    if extra:
        raise invalid(f"members not allowed in {kind}: {', '.join(extra)}")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise invalid("jti must be a non-empty string")
    try:
        issued_at = rfc3339.parse(payload.get("issued_at"))
    except ValueError as exc:
        raise invalid(f"issued_at: {exc}") from exc
    if not isinstance(payload.get("hub"), str):
        raise invalid("hub must be a string")
    if payload["hub"] != hub_id:
        raise refuse("wrong_hub", "hub is not this hub's hub_id")
    return kind, issued_at, jti


def check_times(kind: str, issued_at: float, now: float) -> None:
    """Step 6."""
    if issued_at > now + MAX_FUTURE_S:
        raise refuse("issued_in_future", f"issued_at is more than {MAX_FUTURE_S} s in the future")
    if kind in MANAGEMENT and abs(issued_at - now) > MANAGEMENT_WINDOW_S:
        raise refuse("stale_decision", f"issued_at must be within {MANAGEMENT_WINDOW_S} s of the hub's clock")


def verify_passkey_sync(
    conn: sqlite3.Connection, rp_id: str, body: bytes
) -> tuple[passkeys.SignedDecision, dict[str, Any]]:
    """Steps 2-3 for a passkey decision (§3.1): parse, find the unrevoked passkey by `kid`, verify
    the assertion (challenge = SHA-256 of the payload, origin, rpId, UP and UV, signature)."""
    signed = passkeys.parse(body)
    key = q.owner_key(conn, signed.kid)
    if key is None:
        raise refuse("unknown_owner_key", "kid is not an enrolled owner key")
    if key.revoked_at is not None:
        raise refuse("owner_key_revoked", "this owner key was revoked")
    passkey = q.passkey(conn, signed.kid)
    if passkey is None:
        raise refuse("key_format_mismatch", "this owner key signs JWS, not WebAuthn assertions")
    passkeys.verify(passkeys.RelyingParty(rp_id), passkey, signed)
    return signed, passkeys.payload_of(signed)


@dataclass
class Attempt:
    """What is known about a posted decision as it is checked, for its audit entry if refused."""

    kid: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # True once the signature verified with an enrolled key and the jti was new: a refusal from here
    # on is an owner's own and audited one by one. Before (or a replay), anyone could have sent it.
    accountable: bool = False
    decision: Decision | None = None
    counter: tuple[int, int] | None = None  # (stored, seen) when a passkey's counter went backwards


def _verify_and_apply(conn: sqlite3.Connection, ctx: Context, compact: bytes, attempt: Attempt) -> Outcome:
    """Steps 2-6 and the kind's effect, on the store's one thread.

    The signing key's state is read again inside the transaction that applies the effect (issue 12):
    verified in one database call and applied in a later one, "A revokes B" and "B enrols C" sent
    together both succeeded and C stayed active. Inside one transaction (and `BEGIN IMMEDIATE`, so
    another process such as `camhub owner reset` cannot interleave either) the second of the two
    sees the first.
    """
    signed: passkeys.SignedDecision | None = None
    if passkeys.is_passkey_body(compact):
        signed, payload = verify_passkey_sync(conn, ctx.rp_id, compact)
        kid, text, fmt = signed.kid, signed.canonical, passkeys.FORMAT
    else:
        parsed, payload = verify_owner_jws_sync(conn, compact, DECISION_TYP)
        kid, text, fmt = parsed.kid, compact.decode("ascii"), "jws"
    attempt.kid, attempt.payload = kid, payload
    kind, issued_at, jti = check_common(payload, ctx.hub_id)
    decision = Decision(decision_id(text), kid, kind, payload, text, issued_at, fmt)
    attempt.decision = decision
    # Step 5: spend the jti in its own (autocommit) statement so it stays spent if the kind refuses.
    if not q.use_jti(conn, jti, ctx.now):
        raise refuse("jti_replayed", "this jti was already used")
    attempt.accountable = True
    if signed is not None:
        # §3.1: after the jti, so a replay is `jti_replayed` and only a fresh assertion whose counter
        # did not grow reads as a second copy of the credential. Kept (autocommit) even if refused below.
        passkey = q.passkey(conn, kid)
        assert passkey is not None
        if passkeys.counter_regressed(passkey.sign_count, signed.sign_count):
            attempt.counter = (passkey.sign_count, signed.sign_count)
            raise refuse(
                "passkey_counter_regressed",
                f"signature counter {signed.sign_count} is not above {passkey.sign_count}: a cloned authenticator?",
            )
        q.set_passkey_sign_count(conn, kid, signed.sign_count)
    check_times(kind, issued_at, ctx.now)
    with transaction(conn):
        key = q.owner_key(conn, kid)
        if key is None or key.revoked_at is not None:
            raise refuse("owner_key_revoked", "this owner key was revoked")
        outcome = _handlers()[kind](conn, ctx, decision)
        q.insert_decision(
            conn, decision.id, decision.kind, decision.kid, payload.get("request_id"),
            decision.compact, decision.issued_at, ctx.now, decision.format,
        )  # fmt: skip
        if outcome.grant is not None:
            q.insert_grant(conn, outcome.grant)
    return outcome


DECISIONS_ROUTE = "POST /api/v1/decisions"


async def submit(svc: ConsentService, compact: bytes, route: str = DECISIONS_ROUTE) -> dict[str, Any]:
    """Verify and apply one decision posted to `POST /api/v1/decisions` (through a relay: `route`
    `relay POST /api/v1/decisions`, what refusals are counted under); returns the 201 body."""
    await svc.require_clock("owner", "decision")
    attempt = Attempt()
    try:
        ctx = Context(
            svc.hub_id, svc.now(), svc.config.consent.max_fetches, svc.config.hub.rp_id,
            frozenset(c.id for c in svc.config.cameras),
        )  # fmt: skip
        outcome = await svc.store.run(_verify_and_apply, ctx, compact, attempt)
    except ConsentError as exc:
        payload = attempt.payload
        data: dict[str, Any] = {"code": exc.code, "detail": exc.detail[:300]}
        if attempt.kid is not None:
            data["kid"] = attempt.kid
        for member in ("decision", "request_id", "jti"):
            if isinstance(payload.get(member), str):
                data[member] = payload[member][:256]
        if attempt.counter is not None and attempt.kid is not None and attempt.decision is not None:
            stored, seen = attempt.counter
            await svc.record(
                "key.counter_regressed",
                f"owner:{attempt.kid}",
                {"kid": attempt.kid, "stored": stored, "seen": seen, "decision_id": attempt.decision.id},
            )
        if attempt.accountable and attempt.kid is not None:
            await svc.record("decision.rejected", f"owner:{attempt.kid}", data)
        else:
            await svc.record_unauthenticated("decision.rejected", route, exc.code, data)
        raise
    decision = attempt.decision
    assert decision is not None
    if outcome.grants_ended:
        # At once, before the audit entries and the holds refresh below (each a database round trip):
        # the revoke is committed, and every live session re-checks the gate now (issue 17: cut within
        # 100 ms; the sessions' 0.5 s re-check is only the fallback).
        svc.grants_changed()
    actor = f"owner:{decision.kid}"
    await svc.record(
        "decision.accepted",
        actor,
        {
            "decision_id": decision.id,
            "decision": decision.kind,
            "request_id": decision.payload.get("request_id"),
            **(
                {"webauthn": json.loads(decision.compact)}
                if decision.format == passkeys.FORMAT
                else {"jws": decision.compact}
            ),
        },
    )
    if outcome.grant is not None:
        svc.deadlines.arm(outcome.grant, svc.now())  # PROTOCOL §6: its end runs on the monotonic clock too
    for type_, data in outcome.events:
        await svc.record(type_, actor, data)
    await svc.refresh_holds()
    if outcome.grant is not None and outcome.grant.kind == "clip":
        from hub.consent import deliveries

        svc.spawn(deliveries.build_for_grant(svc, outcome.grant))
    return outcome.response


# --- approve, decline, revoke -----------------------------------------------------------------


def _open_request(conn: sqlite3.Connection, ctx: Context, d: Decision) -> q.RequestRecord:
    """hub, request_id, request_sha256 and recipient match a stored request that is still open."""
    p = d.payload
    for member in ("request_id", "request_sha256", "recipient"):
        if not isinstance(p.get(member), str):
            raise invalid(f"{member} must be a string")
    record = q.request(conn, p["request_id"])
    if record is None:
        raise refuse("unknown_request", "no request with this request_id")
    if p["request_sha256"].lower() != record.body_sha256:
        raise refuse("request_digest_mismatch", "request_sha256 is not the digest of the stored request")
    if p["recipient"] != record.agency_keyid:
        raise refuse("recipient_mismatch", "recipient is not the agency that made the request")
    agency = q.agency(conn, record.agency_keyid)
    if record.state != "pending" or ctx.now >= record.respond_by or agency is None or not agency.active:
        raise refuse("request_closed", "the request is no longer open for a decision")
    return record


def _scope_audio(scope: dict[str, Any]) -> bool:
    """`scope.audio` (PROTOCOL §3): may the camera's sound leave? Absent means no."""
    audio = scope.get("audio", False)
    if not isinstance(audio, bool):
        raise invalid("scope.audio must be true or false")
    return audio


def _scope(
    p: dict[str, Any], record: q.RequestRecord
) -> tuple[tuple[str, ...], float | None, float | None, int | None]:
    scope = p.get("scope")
    if not isinstance(scope, dict):
        raise invalid("approve needs a scope object")
    extra = sorted(set(scope) - {"kind", "cameras", "start", "end", "live_max_seconds", "audio"})
    if extra:
        raise invalid(f"unknown scope members: {', '.join(extra)}")
    cameras = scope.get("cameras")
    if not isinstance(cameras, list) or not cameras or not all(isinstance(c, str) for c in cameras):
        raise invalid("scope.cameras must be a non-empty list of camera ids")
    if len(set(cameras)) != len(cameras):
        raise invalid("scope.cameras lists a camera twice")
    if scope.get("kind") not in ("clip", "live"):
        raise invalid("scope.kind must be clip or live")
    if scope["kind"] != record.kind:
        raise refuse("scope_exceeds_request", "scope.kind differs from the request's kind")
    if not set(cameras) <= set(record.cameras):
        raise refuse("scope_exceeds_request", "scope.cameras is not a subset of the requested cameras")
    if record.kind == "clip":
        if scope.get("live_max_seconds") is not None:
            raise invalid("scope.live_max_seconds must be null for a clip")
        try:
            start, end = rfc3339.parse(scope.get("start")), rfc3339.parse(scope.get("end"))
        except ValueError as exc:
            raise invalid(f"scope.start/end: {exc}") from exc
        if not start < end:
            raise invalid("scope.end must be after scope.start")
        assert record.start_at is not None and record.end_at is not None
        if start < record.start_at or end > record.end_at:
            raise refuse("scope_exceeds_request", "scope time range is not inside the request's")
        return tuple(cameras), start, end, None
    if scope.get("start") is not None or scope.get("end") is not None:
        raise invalid("scope.start/end must be null for a livestream")
    live = scope.get("live_max_seconds")
    if isinstance(live, bool) or not isinstance(live, int) or live < 1:
        raise invalid("scope.live_max_seconds must be a positive integer")
    assert record.live_max_seconds is not None
    if live > record.live_max_seconds:
        raise refuse("scope_exceeds_request", "scope.live_max_seconds exceeds the request's")
    return tuple(cameras), None, None, live


def _approve(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    p = d.payload
    record = _open_request(conn, ctx, d)
    cameras, start, end, live = _scope(p, record)
    audio = _scope_audio(p["scope"])
    try:
        not_after = rfc3339.parse(p.get("not_after"))
    except ValueError as exc:
        raise invalid(f"not_after: {exc}") from exc
    if not_after <= ctx.now:
        raise refuse("not_after_passed", "not_after is not later than now")
    if not_after > d.issued_at + MAX_GRANT_S:
        raise refuse("not_after_too_late", "not_after is more than 30 days after issued_at")
    max_fetches = p.get("max_fetches", ctx.default_max_fetches)
    if (
        isinstance(max_fetches, bool)
        or not isinstance(max_fetches, int)
        or not 1 <= max_fetches <= MAX_FETCHES_LIMIT
    ):
        raise invalid(f"max_fetches must be an integer in 1..{MAX_FETCHES_LIMIT}")
    q.set_request_state(conn, record.id, "approved")
    grant = q.GrantRecord(
        d.id, record.id, record.agency_keyid, record.kind, cameras, start, end, live, max_fetches, not_after,
        None, d.kid, audio=audio,
    )  # fmt: skip
    return Outcome({"decision_id": d.id, "request_id": record.id}, grant=grant)


def _decline(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    if d.payload.get("scope") is not None:
        raise invalid("a decline has no scope")
    record = _open_request(conn, ctx, d)
    q.set_request_state(conn, record.id, "declined")
    return Outcome({"decision_id": d.id, "request_id": record.id})


def _revoke(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    p = d.payload
    if not isinstance(p.get("request_id"), str):
        raise invalid("revoke names a request_id")
    if p.get("scope") is not None:
        raise invalid("a revoke has no scope")
    record = q.request(conn, p["request_id"])
    if record is None:
        raise refuse("unknown_request", "no request with this request_id")
    if "request_sha256" in p and p["request_sha256"] != record.body_sha256:
        raise refuse("request_digest_mismatch", "request_sha256 is not the digest of the stored request")
    if "recipient" in p and p["recipient"] != record.agency_keyid:
        raise refuse("recipient_mismatch", "recipient is not the agency that made the request")
    if q.revoke_grants_for_request(conn, record.id, ctx.now, d.id) == 0:
        raise refuse("no_active_grant", "the request has no grant to revoke")
    return Outcome({"decision_id": d.id, "request_id": record.id}, grants_ended=True)


# --- hold, release-hold (PROTOCOL §3, §3.2) -----------------------------------------------------


def _text(value: Any, member: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise invalid(f"{member} must be 1..{limit} characters")
    return value


def _hold(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "hold", "subject": {"cameras", "start", "end", "until", "reason", "asked_by"}}`."""
    subject = d.payload.get("subject")
    members = {"cameras", "start", "end", "until", "reason", "asked_by"}
    if not isinstance(subject, dict) or set(subject) != members:
        raise invalid(f"hold subject is {{{', '.join(sorted(members))}}}")
    cameras = subject["cameras"]
    if (
        not isinstance(cameras, list)
        or not 1 <= len(cameras) <= 64
        or not all(isinstance(c, str) for c in cameras)
        or len(set(cameras)) != len(cameras)
    ):
        raise invalid("subject.cameras must be 1..64 distinct camera ids")
    try:
        start, end, until = (rfc3339.parse(subject[k]) for k in ("start", "end", "until"))
    except (ValueError, TypeError) as exc:
        raise invalid("start, end and until must be RFC 3339 times") from exc
    reason = _text(subject["reason"], "subject.reason", 500)
    asked_by = _text(subject["asked_by"], "subject.asked_by", 200)
    if not start < end:
        raise invalid("start must be before end")
    if end > ctx.now + MAX_FUTURE_S:
        raise invalid("a hold cannot keep footage that is not recorded yet (end is in the future)")
    if until <= ctx.now or until > d.issued_at + MAX_HOLD_S:
        raise invalid("until must be later than now and at most 366 days after issued_at")
    unknown = sorted(set(cameras) - ctx.cameras)
    if unknown:
        raise refuse("unknown_camera", f"this hub has no camera {', '.join(unknown)}")
    hold = q.OwnerHold(d.id, d.kid, tuple(cameras), start, end, until, reason, asked_by)
    q.insert_owner_hold(conn, hold, ctx.now)
    return Outcome(
        {"decision_id": d.id, "hold_id": d.id},
        events=[
            (
                "hold.placed",
                {
                    "hold_id": d.id,
                    "cameras": cameras,
                    "start": subject["start"],
                    "end": subject["end"],
                    "until": subject["until"],
                    "reason": reason,
                    "asked_by": asked_by,
                },
            )
        ],
    )


def _release_hold(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    subject = d.payload.get("subject")
    if (
        not isinstance(subject, dict)
        or set(subject) != {"hold_id"}
        or not isinstance(subject["hold_id"], str)
    ):
        raise invalid('release-hold subject is {"hold_id": "..."}')
    if not q.release_owner_hold(conn, subject["hold_id"], ctx.now, d.id):
        raise refuse("unknown_hold", "no hold in force has this hold_id")
    return Outcome(
        {"decision_id": d.id, "hold_id": subject["hold_id"]},
        events=[("hold.released", {"hold_id": subject["hold_id"], "decision_id": d.id})],
    )
