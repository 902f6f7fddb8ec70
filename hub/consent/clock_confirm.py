"""The owner confirms the hub's clock (PROTOCOL.md §6): `POST /api/v1/owner/clock`.

Signed like a decision: a JWS (`application/jose`) or a passkey assertion (§3.1, `application/json`),
so an owner whose only keys are passkeys is not stuck until the box finds network time. Payload
`{"v":1, "hub":"<hub_id>", "decision":"confirm-time", "issued_at":"<the owner device's now>",
"jti":"<random>"}`. Accepted (201 `{"confirmed": true, "hub_time", "boot_id"}`) when `issued_at`
agrees with the hub's clock within `[consent] clock_skew_seconds`: the owner's phone keeps network
time, so agreement means the hub's clock is right. Otherwise 409 `clock_mismatch` with the hub's time
in the detail (fix the clock, e.g. enable NTP, and confirm again). The hub never sets its clock from
a network message. A confirmation lasts until the next boot (the kernel's boot id), because a reboot
without an RTC is exactly when the clock goes wrong. Audited as `clock.confirmed` / `clock.rejected`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from camhub_protocol import rfc3339
from camhub_protocol.errors import ConsentError
from hub.consent import passkeys
from hub.consent.decisions import (
    DECISION_TYP,
    decision_id,
    invalid,
    refuse,
    verify_owner_jws,
    verify_passkey_sync,
)
from hub.consent.service import ConsentService
from hub.store import consent as q

MEMBERS = frozenset({"v", "hub", "decision", "issued_at", "jti"})


async def confirm_clock(svc: ConsentService, compact: bytes) -> dict[str, Any]:
    kid: str | None = None
    signed: passkeys.SignedDecision | None = None
    regressed: tuple[int, int] | None = None  # (stored, seen): a passkey's counter went backwards
    try:
        if passkeys.is_passkey_body(compact):
            signed, payload = await svc.store.run(verify_passkey_sync, svc.config.hub.rp_id, compact)
            kid = signed.kid
        else:
            parsed, payload = await verify_owner_jws(svc, compact, DECISION_TYP)
            kid = parsed.kid
        if set(payload) != MEMBERS or payload.get("v") != 1 or payload.get("decision") != "confirm-time":
            raise invalid(
                f"a time confirmation has exactly {', '.join(sorted(MEMBERS))}, decision confirm-time"
            )
        if payload.get("hub") != svc.hub_id:
            raise refuse("wrong_hub", "hub is not this hub's hub_id")
        jti = payload.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise invalid("jti must be a non-empty string")
        try:
            owner_time = rfc3339.parse(payload.get("issued_at"))
        except ValueError as exc:
            raise invalid(f"issued_at: {exc}") from exc
        now = svc.now()
        skew = svc.config.consent.clock_skew_seconds

        def record(conn: sqlite3.Connection) -> None:
            nonlocal regressed
            if not q.use_jti(conn, jti, now):
                raise refuse("jti_replayed", "this jti was already used")
            if signed is not None:
                # §3.1's counter rule, after the jti exactly as for a decision: a clone is flagged.
                passkey = q.passkey(conn, signed.kid)
                if passkey is None:
                    raise refuse("owner_key_revoked", "this owner key was revoked")
                if passkeys.counter_regressed(passkey.sign_count, signed.sign_count):
                    regressed = (passkey.sign_count, signed.sign_count)
                    raise refuse(
                        "passkey_counter_regressed",
                        f"signature counter {signed.sign_count} is not above {passkey.sign_count}: a cloned authenticator?",
                    )
                q.set_passkey_sign_count(conn, signed.kid, signed.sign_count)
            if abs(owner_time - now) > skew:
                raise ConsentError(
                    "clock_mismatch",
                    f"the hub's clock says {rfc3339.format(now)}, {owner_time - now:+.0f} s from yours",
                    409,
                )
            q.insert_clock_confirmation(conn, kid, owner_time, now, svc.clock.boot_id, compact.decode())

        await svc.store.run(record)
    except ConsentError as exc:
        data = {"code": exc.code, "detail": exc.detail}
        if regressed is not None and signed is not None:
            await svc.record(
                "key.counter_regressed",
                f"owner:{signed.kid}",
                {
                    "kid": signed.kid,
                    "stored": regressed[0],
                    "seen": regressed[1],
                    "decision_id": decision_id(signed.canonical),
                },
            )
        if kid is not None and exc.code != "jti_replayed":
            await svc.record("clock.rejected", f"owner:{kid}", data)
        else:
            # Anyone can post junk or replay a confirmation they saw: counted, not logged one by one.
            await svc.record_unauthenticated("clock.rejected", "POST /api/v1/owner/clock", exc.code, data)
        raise
    svc.clock.confirm()
    await svc.record(
        "clock.confirmed",
        f"owner:{kid}",
        {
            "owner_time": rfc3339.format(owner_time),
            "hub_time": rfc3339.format(now),
            "boot_id": svc.clock.boot_id,
        },
    )
    return {"confirmed": True, "hub_time": rfc3339.format(now), "boot_id": svc.clock.boot_id}
