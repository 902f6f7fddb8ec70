"""Agencies the owner trusts (PROTOCOL.md §1, §3): `add-agency` / `remove-agency` owner decisions.

An agency is its Ed25519 signing key (`keyid` = RFC 7638 thumbprint of `sig_jwk`) and the age X25519
recipient its deliveries are encrypted to. Removal takes effect at once, in the same transaction: the
agency's key stops verifying (401 on its next call), its open requests close, its grants are revoked.
"""

from __future__ import annotations

import sqlite3

from pyrage import x25519

from camhub_protocol.errors import ConsentError
from hub.consent.decisions import Context, Decision, Outcome, invalid, refuse
from hub.consent.owners import _name, _public_jwk, _subject
from hub.store import consent as q


def parse_recipient(value: object) -> str:
    """An age X25519 recipient (`age1…`, age-encryption.org/v1 §X25519), as pyrage parses it."""
    if not isinstance(value, str) or not value.startswith("age1"):
        raise invalid("subject.recipient must be an age X25519 recipient (age1...)")
    try:
        x25519.Recipient.from_str(value)
    except Exception as exc:  # pyrage raises its own error types for bad bech32
        raise invalid(f"subject.recipient is not a valid age recipient: {exc}") from exc
    return value


def add_agency(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "add-agency", "subject": {"name", "sig_jwk", "recipient"}}`."""
    subject = _subject(d)
    extra = sorted(set(subject) - {"name", "sig_jwk", "recipient"})
    if extra:
        raise invalid(f"unknown subject members: {', '.join(extra)}")
    try:
        name = _name(subject.get("name"), "subject.name")
        jwk, keyid = _public_jwk(subject.get("sig_jwk"), "subject.sig_jwk")
    except ConsentError as exc:
        raise invalid(exc.detail) from exc
    recipient = parse_recipient(subject.get("recipient"))
    existing = q.agency(conn, keyid)
    if existing is not None and existing.active:
        raise refuse("agency_exists", "an agency with this signing key is already trusted")
    q.upsert_agency(conn, keyid, name, jwk, recipient, ctx.now, d.id)
    return Outcome(
        {"decision_id": d.id},
        events=[
            ("agency.added", {"keyid": keyid, "name": name, "recipient": recipient, "decision_id": d.id})
        ],
    )


def remove_agency(conn: sqlite3.Connection, ctx: Context, d: Decision) -> Outcome:
    """`{"decision": "remove-agency", "subject": {"keyid"}}`: open requests close, grants revoked."""
    subject = _subject(d)
    if set(subject) != {"keyid"} or not isinstance(subject["keyid"], str):
        raise invalid('remove-agency subject is {"keyid": "..."}')
    keyid = subject["keyid"]
    existing = q.agency(conn, keyid)
    if existing is None or not existing.active:
        raise refuse("unknown_agency", "no trusted agency has this keyid")
    closed, revoked = q.remove_agency(conn, keyid, ctx.now, d.id)
    return Outcome(
        {"decision_id": d.id},
        events=[
            (
                "agency.removed",
                {"keyid": keyid, "decision_id": d.id, "requests_closed": closed, "grants_revoked": revoked},
            )
        ],
        grants_ended=True,
    )
