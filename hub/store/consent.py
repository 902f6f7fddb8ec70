"""Queries over the consent records (migration 0005): owner keys, agencies, requests, decisions,
grants, used `jti`s, seen nonces, deliveries and clock confirmations.

Plain synchronous functions taking a `sqlite3.Connection`, run on the store's one DB thread
(`await store.run(fn, ...)`), so a sequence of them inside `transaction(conn)` is atomic with
respect to every other consent check: a revoke and a gate check can never interleave.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from hub.store import transaction


@dataclass(frozen=True)
class OwnerKey:
    kid: str
    public_jwk: dict[str, str]
    name: str
    enrolled_at: float
    enrolled_by: str | None
    revoked_at: float | None


@dataclass(frozen=True)
class Agency:
    keyid: str
    name: str
    sig_jwk: dict[str, str]
    recipient: str
    added_at: float
    removed_at: float | None

    @property
    def active(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True)
class RequestRecord:
    id: str
    agency_keyid: str
    body_sha256: str
    kind: str
    cameras: tuple[str, ...]
    start_at: float | None
    end_at: float | None
    live_max_seconds: int | None
    received_at: float
    respond_by: float
    state: str


@dataclass(frozen=True)
class GrantRecord:
    id: str
    request_id: str
    recipient: str
    kind: str
    cameras: tuple[str, ...]
    start_at: float | None
    end_at: float | None
    live_max_seconds: int | None
    max_fetches: int
    not_after: float
    revoked_at: float | None
    approved_by: str  # owner kid that signed the approval
    live_started_at: float | None = None  # first livestream connection the gate let through
    ended_at: float | None = None  # when the gate saw its time run out: over for good
    audio: bool = False  # scope.audio: may the camera's sound leave with it (PROTOCOL §3)

    @property
    def ends_at(self) -> float:
        """When the approval stops allowing egress: `not_after`, or for a livestream whose window has
        opened, `live_max_seconds` after its first connection, whichever comes first."""
        if self.live_started_at is not None and self.live_max_seconds is not None:
            return min(self.not_after, self.live_started_at + self.live_max_seconds)
        return self.not_after


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    grant_id: str
    request_id: str
    camera_id: str
    start_at: float
    end_at: float
    path: str
    sha256: str
    bytes: int
    fetch_count: int


# --- owner keys -------------------------------------------------------------------------------


def _owner_key(row: sqlite3.Row) -> OwnerKey:
    return OwnerKey(
        row["kid"], json.loads(row["public_jwk"]), row["name"], row["enrolled_at"], row["enrolled_by"],
        row["revoked_at"],
    )  # fmt: skip


def owner_key(conn: sqlite3.Connection, kid: str) -> OwnerKey | None:
    row = conn.execute("SELECT * FROM owner_keys WHERE kid = ?", (kid,)).fetchone()
    return None if row is None else _owner_key(row)


def active_owner_keys(conn: sqlite3.Connection) -> list[OwnerKey]:
    rows = conn.execute("SELECT * FROM owner_keys WHERE revoked_at IS NULL ORDER BY enrolled_at").fetchall()
    return [_owner_key(r) for r in rows]


def insert_owner_key(
    conn: sqlite3.Connection, kid: str, public_jwk: dict[str, str], name: str, now: float, by: str | None
) -> None:
    """A new key row. Never an upsert: a kid that was ever enrolled (and maybe revoked) cannot come
    back, so the caller checks first and a conflict here is an IntegrityError, not a silent revival."""
    conn.execute(
        "INSERT INTO owner_keys (kid, public_jwk, name, enrolled_at, enrolled_by) VALUES (?, ?, ?, ?, ?)",
        (kid, json.dumps(public_jwk, sort_keys=True), name, now, by),
    )


def revoke_owner_key(conn: sqlite3.Connection, kid: str, now: float, by: str) -> None:
    conn.execute(
        "UPDATE owner_keys SET revoked_at = ?, revoked_by = ? WHERE kid = ? AND revoked_at IS NULL",
        (now, by, kid),
    )


@dataclass(frozen=True)
class Passkey:
    """What WebAuthn adds to an owner key (migration 0013, PROTOCOL §3.1)."""

    kid: str
    credential_id: str
    public_key: bytes  # COSE_Key
    rp_id: str
    sign_count: int


def passkey(conn: sqlite3.Connection, kid: str) -> Passkey | None:
    row = conn.execute(
        "SELECT kid, credential_id, public_key, rp_id, sign_count FROM owner_passkeys WHERE kid = ?", (kid,)
    ).fetchone()
    return None if row is None else Passkey(row[0], row[1], bytes(row[2]), row[3], row[4])


def passkeys(conn: sqlite3.Connection) -> dict[str, Passkey]:
    rows = conn.execute(
        "SELECT kid, credential_id, public_key, rp_id, sign_count FROM owner_passkeys"
    ).fetchall()
    return {r[0]: Passkey(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows}


def passkey_by_credential(conn: sqlite3.Connection, credential_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM owner_passkeys WHERE credential_id = ?", (credential_id,)).fetchone()
    return row is not None


def insert_passkey(conn: sqlite3.Connection, key: Passkey) -> None:
    conn.execute(
        "INSERT INTO owner_passkeys (kid, credential_id, public_key, rp_id, sign_count) VALUES (?, ?, ?, ?, ?)",
        (key.kid, key.credential_id, key.public_key, key.rp_id, key.sign_count),
    )


def set_passkey_sign_count(conn: sqlite3.Connection, kid: str, count: int) -> None:
    conn.execute("UPDATE owner_passkeys SET sign_count = ? WHERE kid = ?", (count, kid))


def ancestors(conn: sqlite3.Connection, kid: str) -> list[str]:
    """The keys that enrolled `kid`, its enroller's enroller, ... up to a root (nearest first)."""
    rows = conn.execute(
        "WITH RECURSIVE up(kid, depth) AS ("
        " SELECT enrolled_by, 1 FROM owner_keys WHERE kid = ? AND enrolled_by IS NOT NULL"
        " UNION SELECT k.enrolled_by, up.depth + 1 FROM owner_keys k JOIN up ON k.kid = up.kid"
        " WHERE k.enrolled_by IS NOT NULL AND up.depth < 1000)"
        " SELECT kid FROM up ORDER BY depth",
        (kid,),
    ).fetchall()
    return [r[0] for r in rows]


def active_descendants(conn: sqlite3.Connection, kid: str) -> list[str]:
    """Unrevoked keys enrolled by `kid`, by those, and so on (nearest first). A revoked key's own
    descendants were revoked with it, so walking through revoked keys finds nothing more."""
    rows = conn.execute(
        "WITH RECURSIVE down(kid, depth) AS ("
        " SELECT kid, 1 FROM owner_keys WHERE enrolled_by = ?"
        " UNION SELECT k.kid, down.depth + 1 FROM owner_keys k JOIN down ON k.enrolled_by = down.kid"
        " WHERE down.depth < 1000)"
        " SELECT d.kid FROM down d JOIN owner_keys k ON k.kid = d.kid WHERE k.revoked_at IS NULL"
        " ORDER BY d.depth, d.kid",
        (kid,),
    ).fetchall()
    return list(dict.fromkeys(r[0] for r in rows))


def _marks(values: list[str]) -> str:
    return ",".join("?" * len(values))


def agencies_added_by(conn: sqlite3.Connection, kids: list[str]) -> list[Agency]:
    """Trusted (not removed) agencies whose add-agency decision one of `kids` signed."""
    if not kids:
        return []
    rows = conn.execute(
        f"SELECT a.* FROM agencies a JOIN decisions d ON d.id = a.added_by"
        f" WHERE d.kid IN ({_marks(kids)}) AND a.removed_at IS NULL ORDER BY a.added_at",
        kids,
    ).fetchall()
    return [_agency(r) for r in rows]


def unrevoked_grants_approved_by(conn: sqlite3.Connection, kids: list[str]) -> list[GrantRecord]:
    """Grants not yet revoked whose approval one of `kids` signed (expired ones included: revoking
    them changes nothing the agency can get, and the record then says who ended them)."""
    if not kids:
        return []
    rows = conn.execute(
        f"{_GRANT_SELECT} WHERE d.kid IN ({_marks(kids)}) AND g.revoked_at IS NULL ORDER BY d.accepted_at",
        kids,
    ).fetchall()
    return [_grant(r) for r in rows]


def unrevoked_grants(conn: sqlite3.Connection) -> list[GrantRecord]:
    rows = conn.execute(f"{_GRANT_SELECT} WHERE g.revoked_at IS NULL ORDER BY d.accepted_at").fetchall()
    return [_grant(r) for r in rows]


def revoke_grant(conn: sqlite3.Connection, grant_id: str, now: float, by: str) -> None:
    conn.execute(
        "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
        (now, by, grant_id),
    )


# --- agencies ---------------------------------------------------------------------------------


def _agency(row: sqlite3.Row) -> Agency:
    return Agency(
        row["keyid"], row["name"], json.loads(row["sig_jwk"]), row["recipient"], row["added_at"],
        row["removed_at"],
    )  # fmt: skip


def agency(conn: sqlite3.Connection, keyid: str) -> Agency | None:
    row = conn.execute("SELECT * FROM agencies WHERE keyid = ?", (keyid,)).fetchone()
    return None if row is None else _agency(row)


def agencies(conn: sqlite3.Connection, include_removed: bool = False) -> list[Agency]:
    sql = "SELECT * FROM agencies" + ("" if include_removed else " WHERE removed_at IS NULL")
    return [_agency(r) for r in conn.execute(sql + " ORDER BY added_at").fetchall()]


def upsert_agency(
    conn: sqlite3.Connection,
    keyid: str,
    name: str,
    sig_jwk: dict[str, str],
    recipient: str,
    now: float,
    by: str,
) -> None:
    conn.execute(
        "INSERT INTO agencies (keyid, name, sig_jwk, recipient, added_at, added_by) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(keyid) DO UPDATE SET name = excluded.name, sig_jwk = excluded.sig_jwk,"
        " recipient = excluded.recipient, added_at = excluded.added_at, added_by = excluded.added_by,"
        " removed_at = NULL, removed_by = NULL",
        (keyid, name, json.dumps(sig_jwk, sort_keys=True), recipient, now, by),
    )


def remove_agency(conn: sqlite3.Connection, keyid: str, now: float, by: str) -> tuple[int, int]:
    """Mark removed, close its open requests, revoke its grants. Returns (requests closed, grants revoked)."""
    conn.execute(
        "UPDATE agencies SET removed_at = ?, removed_by = ? WHERE keyid = ? AND removed_at IS NULL",
        (now, by, keyid),
    )
    closed = conn.execute(
        "UPDATE consent_requests SET state = 'closed' WHERE agency_keyid = ? AND state IN ('pending', 'approved')",
        (keyid,),
    ).rowcount
    revoked = conn.execute(
        "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE recipient = ? AND revoked_at IS NULL",
        (now, by, keyid),
    ).rowcount
    return closed, revoked


# --- requests ---------------------------------------------------------------------------------


def _request(row: sqlite3.Row) -> RequestRecord:
    return RequestRecord(
        row["id"], row["agency_keyid"], row["body_sha256"], row["kind"], tuple(json.loads(row["cameras"])),
        row["start_at"], row["end_at"], row["live_max_seconds"], row["received_at"], row["respond_by"],
        row["state"],
    )  # fmt: skip


_REQUEST_COLS = (
    "id, agency_keyid, body_sha256, kind, cameras, start_at, end_at, live_max_seconds, received_at,"
    " respond_by, state"
)


def insert_request(conn: sqlite3.Connection, record: RequestRecord, body: bytes) -> None:
    conn.execute(
        "INSERT INTO consent_requests (id, agency_keyid, body, body_sha256, kind, cameras, start_at, end_at,"
        " live_max_seconds, received_at, respond_by, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.id, record.agency_keyid, body, record.body_sha256, record.kind, json.dumps(record.cameras),
            record.start_at, record.end_at, record.live_max_seconds, record.received_at, record.respond_by,
            record.state,
        ),
    )  # fmt: skip


def request(conn: sqlite3.Connection, request_id: str) -> RequestRecord | None:
    row = conn.execute(f"SELECT {_REQUEST_COLS} FROM consent_requests WHERE id = ?", (request_id,)).fetchone()
    return None if row is None else _request(row)


def request_of_agency(conn: sqlite3.Connection, request_id: str, keyid: str) -> RequestRecord | None:
    """One indexed lookup whether the id is unknown or another agency's: same work either way (§2.2)."""
    row = conn.execute(
        f"SELECT {_REQUEST_COLS} FROM consent_requests WHERE id = ? AND agency_keyid = ?", (request_id, keyid)
    ).fetchone()
    return None if row is None else _request(row)


def request_body(conn: sqlite3.Connection, request_id: str) -> bytes | None:
    row = conn.execute("SELECT body FROM consent_requests WHERE id = ?", (request_id,)).fetchone()
    return None if row is None else bytes(row[0])


def requests(conn: sqlite3.Connection, state: str | None = None, limit: int = 500) -> list[RequestRecord]:
    if state is None:
        rows = conn.execute(
            f"SELECT {_REQUEST_COLS} FROM consent_requests ORDER BY received_at DESC LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_REQUEST_COLS} FROM consent_requests WHERE state = ? ORDER BY received_at DESC LIMIT ?",
            (state, limit),
        ).fetchall()
    return [_request(r) for r in rows]


def set_request_state(conn: sqlite3.Connection, request_id: str, state: str) -> None:
    conn.execute("UPDATE consent_requests SET state = ? WHERE id = ?", (state, request_id))


# --- decisions, jti ---------------------------------------------------------------------------


def jti_used(conn: sqlite3.Connection, jti: str) -> bool:
    return conn.execute("SELECT 1 FROM used_jti WHERE jti = ?", (jti,)).fetchone() is not None


def use_jti(conn: sqlite3.Connection, jti: str, now: float) -> bool:
    """Record `jti`; False if it was already used (single use forever, §3)."""
    cur = conn.execute("INSERT OR IGNORE INTO used_jti (jti, used_at) VALUES (?, ?)", (jti, now))
    return cur.rowcount == 1


def insert_decision(
    conn: sqlite3.Connection,
    decision_id: str,
    kind: str,
    kid: str,
    request_id: str | None,
    jws: str,
    issued_at: float,
    now: float,
    format: str = "jws",
) -> None:
    """`jws` is the signed decision verbatim: the JWS compact string, or for a passkey decision
    (`format` "webauthn", PROTOCOL §3.1) its canonical JSON with the assertion."""
    conn.execute(
        "INSERT INTO decisions (id, kind, kid, request_id, jws, issued_at, accepted_at, format)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (decision_id, kind, kid, request_id, jws, issued_at, now, format),
    )


def decision_jws(conn: sqlite3.Connection, decision_id: str) -> str | None:
    row = conn.execute("SELECT jws FROM decisions WHERE id = ?", (decision_id,)).fetchone()
    return None if row is None else row[0]


# --- grants -----------------------------------------------------------------------------------

_GRANT_SELECT = (
    "SELECT g.id, g.request_id, g.recipient, g.kind, g.cameras, g.start_at, g.end_at, g.live_max_seconds,"
    " g.max_fetches, g.not_after, g.revoked_at, d.kid AS approved_by, g.live_started_at, g.ended_at,"
    " g.audio"
    " FROM grants g JOIN decisions d ON d.id = g.id"
)


def _grant(row: sqlite3.Row) -> GrantRecord:
    return GrantRecord(
        row["id"], row["request_id"], row["recipient"], row["kind"], tuple(json.loads(row["cameras"])),
        row["start_at"], row["end_at"], row["live_max_seconds"], row["max_fetches"], row["not_after"],
        row["revoked_at"], row["approved_by"], row["live_started_at"], row["ended_at"], bool(row["audio"]),
    )  # fmt: skip


def insert_grant(conn: sqlite3.Connection, g: GrantRecord) -> None:
    conn.execute(
        "INSERT INTO grants (id, request_id, recipient, kind, cameras, start_at, end_at, live_max_seconds,"
        " max_fetches, not_after, audio) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            g.id, g.request_id, g.recipient, g.kind, json.dumps(g.cameras), g.start_at, g.end_at,
            g.live_max_seconds, g.max_fetches, g.not_after, int(g.audio),
        ),
    )  # fmt: skip


def end_grant(conn: sqlite3.Connection, grant_id: str, now: float) -> None:
    """The gate saw this grant's time run out: record it, so no later wall clock reopens it."""
    conn.execute("UPDATE grants SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (now, grant_id))


def start_live_window(conn: sqlite3.Connection, grant_id: str, now: float) -> None:
    """Open a livestream grant's window at its first connection; later calls change nothing."""
    conn.execute(
        "UPDATE grants SET live_started_at = ? WHERE id = ? AND live_started_at IS NULL", (now, grant_id)
    )


def grant(conn: sqlite3.Connection, grant_id: str) -> GrantRecord | None:
    row = conn.execute(f"{_GRANT_SELECT} WHERE g.id = ?", (grant_id,)).fetchone()
    return None if row is None else _grant(row)


def grants_for_request(conn: sqlite3.Connection, request_id: str) -> list[GrantRecord]:
    rows = conn.execute(f"{_GRANT_SELECT} WHERE g.request_id = ? ORDER BY d.accepted_at", (request_id,))
    return [_grant(r) for r in rows.fetchall()]


def live_grants_for(conn: sqlite3.Connection, recipient: str) -> list[GrantRecord]:
    rows = conn.execute(f"{_GRANT_SELECT} WHERE g.recipient = ? AND g.revoked_at IS NULL", (recipient,))
    return [_grant(r) for r in rows.fetchall()]


def revoke_grants_for_request(conn: sqlite3.Connection, request_id: str, now: float, by: str) -> int:
    return conn.execute(
        "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE request_id = ? AND revoked_at IS NULL",
        (now, by, request_id),
    ).rowcount


def revoke_grants_approved_by(conn: sqlite3.Connection, kid: str, now: float, by: str) -> int:
    return conn.execute(
        "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE revoked_at IS NULL"
        " AND id IN (SELECT id FROM decisions WHERE kid = ?)",
        (now, by, kid),
    ).rowcount


@dataclass(frozen=True)
class HoldLimits:
    """How far agency holds may reach back (PROTOCOL §2.1, §3.2): footage at most the camera's max age
    plus `respond_by_s` old. Empty (no max age known): agency holds are cut only to receipt time."""

    max_age_s: dict[str, float] = field(default_factory=dict)
    default_max_age_s: float | None = None
    respond_by_s: float = 7 * 86400.0

    def oldest(self, camera: str, now: float) -> float | None:
        age = self.max_age_s.get(camera, self.default_max_age_s)
        return None if age is None else now - age - self.respond_by_s


def _agency_rows(conn: sqlite3.Connection, now: float) -> list[tuple[str, sqlite3.Row]]:
    rows = [
        ("pending_request", r)
        for r in conn.execute(
            "SELECT r.id AS request_id, NULL AS grant_id, r.agency_keyid AS agency, r.cameras, r.start_at,"
            " r.end_at, r.received_at, r.respond_by AS until, r.body FROM consent_requests r"
            " WHERE r.kind = 'clip' AND r.state = 'pending' AND r.respond_by > ? ORDER BY r.received_at",
            (now,),
        ).fetchall()
    ]
    # An approval holds only until its deliveries are built: from then on the delivery is the copy.
    rows += [
        ("approval", r)
        for r in conn.execute(
            "SELECT g.request_id, g.id AS grant_id, g.recipient AS agency, g.cameras, g.start_at, g.end_at,"
            " r.received_at, g.not_after AS until, r.body FROM grants g"
            " JOIN consent_requests r ON r.id = g.request_id WHERE g.kind = 'clip'"
            " AND g.revoked_at IS NULL AND g.ended_at IS NULL AND g.not_after > ?"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.grant_id = g.id) ORDER BY g.not_after",
            (now,),
        ).fetchall()
    ]
    return rows


def _cut(
    limits: HoldLimits, camera: str, start: float, end: float, received: float, now: float
) -> tuple[float, float] | None:
    """An agency hold's range as retention applies it: never past receipt, never older than allowed."""
    end = min(end, received)
    oldest = limits.oldest(camera, now)
    if oldest is not None:
        start = max(start, oldest)
    return (start, end) if start <= end else None


def holds(
    conn: sqlite3.Connection, now: float, limits: HoldLimits | None = None
) -> list[tuple[str, float, float]]:
    """(camera, start, end) retention must keep now (PROTOCOL §3.2): owner holds in force, pending clip
    requests and approvals not yet built, the last two cut by `limits`."""
    limits = limits or HoldLimits()
    out: list[tuple[str, float, float]] = []
    for _, row in _agency_rows(conn, now):
        for camera in json.loads(row["cameras"]):
            cut = _cut(limits, camera, row["start_at"], row["end_at"], row["received_at"], now)
            if cut is not None:
                out.append((camera, *cut))
    for hold in owner_holds(conn, now):
        for camera in hold.cameras:
            out.append((camera, hold.start_at, hold.end_at))
    # Many agencies asking for the same incident hold the same range once (retention checks every
    # segment against every hold).
    return list(dict.fromkeys(out))


def owner_hold_ranges(conn: sqlite3.Connection, now: float) -> list[tuple[str, float, float]]:
    """(camera, start, end) of the owner's holds in force: what keeps deliveries and exports (§3.2)."""
    return [(c, h.start_at, h.end_at) for h in owner_holds(conn, now) for c in h.cameras]


def holds_detail(
    conn: sqlite3.Connection, now: float, limits: HoldLimits | None = None
) -> list[dict[str, object]]:
    """What `holds` keeps, who asked and why, for the owner: owner holds, each pending clip request
    (until its respond_by; declining it releases the hold) and each approval not yet built."""
    limits = limits or HoldLimits()
    out: list[dict[str, object]] = []
    for h in owner_holds(conn, now):
        key = owner_key(conn, h.kid)
        out.append(
            {"reason": "owner_hold", "hold_id": h.id, "kid": h.kid, "key_name": key.name if key else None,
             "asked_by": h.asked_by, "why": h.reason, "cameras": list(h.cameras), "start": h.start_at,
             "end": h.end_at, "until": h.until}
        )  # fmt: skip
    for reason, r in _agency_rows(conn, now):
        agency_row = agency(conn, r["agency"])
        try:
            why = json.loads(r["body"]).get("reason")
        except (ValueError, AttributeError):
            why = None
        cams = json.loads(r["cameras"])
        cuts = [_cut(limits, c, r["start_at"], r["end_at"], r["received_at"], now) for c in cams]
        kept = [c for c in cuts if c is not None]
        entry: dict[str, object] = {
            "reason": reason, "request_id": r["request_id"], "agency": r["agency"],
            "agency_name": agency_row.name if agency_row else None,
            "asked_by": agency_row.name if agency_row else r["agency"], "why": why, "cameras": cams,
            "start": min((c[0] for c in kept), default=r["start_at"]),
            "end": max((c[1] for c in kept), default=r["end_at"]), "until": r["until"],
        }  # fmt: skip
        if r["grant_id"] is not None:
            entry["grant_id"] = r["grant_id"]
        out.append(entry)
    return out


@dataclass(frozen=True)
class OwnerHold:
    id: str
    kid: str
    cameras: tuple[str, ...]
    start_at: float
    end_at: float
    until: float
    reason: str
    asked_by: str


def owner_holds(conn: sqlite3.Connection, now: float) -> list[OwnerHold]:
    rows = conn.execute(
        "SELECT id, kid, cameras, start_at, end_at, until, reason, asked_by FROM owner_holds"
        " WHERE released_at IS NULL AND until > ? ORDER BY created_at, id",
        (now,),
    ).fetchall()
    return [OwnerHold(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6], r[7]) for r in rows]


def insert_owner_hold(conn: sqlite3.Connection, hold: OwnerHold, now: float) -> None:
    conn.execute(
        "INSERT INTO owner_holds (id, kid, cameras, start_at, end_at, until, reason, asked_by, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (hold.id, hold.kid, json.dumps(list(hold.cameras)), hold.start_at, hold.end_at, hold.until,
         hold.reason, hold.asked_by, now),
    )  # fmt: skip


def release_owner_hold(conn: sqlite3.Connection, hold_id: str, now: float, by: str) -> bool:
    return (
        conn.execute(
            "UPDATE owner_holds SET released_at = ?, released_by = ? WHERE id = ? AND released_at IS NULL"
            " AND until > ?",
            (now, by, hold_id, now),
        ).rowcount
        > 0
    )


# --- copies of footage that age like it (deliveries, exports; PROTOCOL §3.2) ---------------------


def deliveries_to_expire(
    conn: sqlite3.Connection, cutoffs: dict[str, float], default: float | None
) -> list[DeliveryRecord]:
    """Unexpired deliveries whose newest footage ended before its camera's cutoff (now − max age)."""
    rows = conn.execute("SELECT * FROM deliveries WHERE expired_at IS NULL ORDER BY end_at").fetchall()
    out = []
    for row in rows:
        cutoff = cutoffs.get(row["camera_id"], default)
        if cutoff is not None and row["end_at"] < cutoff:
            out.append(_delivery(row))
    return out


def expire_delivery(conn: sqlite3.Connection, delivery_id: str, now: float) -> None:
    conn.execute(
        "UPDATE deliveries SET expired_at = ? WHERE id = ? AND expired_at IS NULL", (now, delivery_id)
    )


def delivery_expired(conn: sqlite3.Connection, delivery_id: str) -> bool:
    row = conn.execute("SELECT expired_at FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return row is not None and row[0] is not None


# --- nonces -----------------------------------------------------------------------------------


def record_nonce(conn: sqlite3.Connection, keyid: str, nonce: str, now: float, window_s: float) -> bool:
    """True if `nonce` was not seen for `keyid` within `window_s`; records it either way."""
    row = conn.execute(
        "SELECT seen_at FROM seen_nonces WHERE keyid = ? AND nonce = ?", (keyid, nonce)
    ).fetchone()
    if row is not None and row[0] > now - window_s:
        return False
    conn.execute(
        "INSERT INTO seen_nonces (keyid, nonce, seen_at) VALUES (?, ?, ?)"
        " ON CONFLICT(keyid, nonce) DO UPDATE SET seen_at = excluded.seen_at",
        (keyid, nonce, now),
    )
    return True


@dataclass(frozen=True)
class RelayRefusal:
    id: str
    agency_keyid: str
    code: str
    detail: str
    respond_by: float


def insert_relay_refusal(conn: sqlite3.Connection, refusal: RelayRefusal, now: float) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO relay_refusals (id, agency_keyid, code, detail, respond_by, refused_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (refusal.id, refusal.agency_keyid, refusal.code, refusal.detail[:500], refusal.respond_by, now),
    )


def relay_refusal(conn: sqlite3.Connection, request_id: str, keyid: str) -> RelayRefusal | None:
    row = conn.execute(
        "SELECT id, agency_keyid, code, detail, respond_by FROM relay_refusals"
        " WHERE id = ? AND agency_keyid = ?",
        (request_id, keyid),
    ).fetchone()
    return None if row is None else RelayRefusal(row[0], row[1], row[2], row[3], row[4])


def relay_request_known(conn: sqlite3.Connection, request_id: str) -> bool:
    """Whether the hub already took (or refused) a queued request with this id (§7.2 replays)."""
    return (
        conn.execute("SELECT 1 FROM consent_requests WHERE id = ?", (request_id,)).fetchone() is not None
        or conn.execute("SELECT 1 FROM relay_refusals WHERE id = ?", (request_id,)).fetchone() is not None
    )


def prune_relay_refusals(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM relay_refusals WHERE respond_by < ?", (now,)).rowcount


def prune_nonces(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM seen_nonces WHERE seen_at <= ?", (before,)).rowcount


def nonce_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM seen_nonces").fetchone()[0])


# --- deliveries -------------------------------------------------------------------------------


def _delivery(row: sqlite3.Row) -> DeliveryRecord:
    return DeliveryRecord(
        row["id"], row["grant_id"], row["request_id"], row["camera_id"], row["start_at"], row["end_at"],
        row["path"], row["sha256"], row["bytes"], row["fetch_count"],
    )  # fmt: skip


def insert_delivery(conn: sqlite3.Connection, d: DeliveryRecord, now: float) -> None:
    conn.execute(
        "INSERT INTO deliveries (id, grant_id, request_id, camera_id, start_at, end_at, path, sha256, bytes,"
        " fetch_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.id, d.grant_id, d.request_id, d.camera_id, d.start_at, d.end_at, d.path, d.sha256, d.bytes,
            d.fetch_count, now,
        ),
    )  # fmt: skip


def insert_deliveries(conn: sqlite3.Connection, records: list[DeliveryRecord], now: float) -> None:
    """All deliveries of one grant in one transaction: the agency sees all of them or none."""
    with transaction(conn):
        for d in records:
            insert_delivery(conn, d, now)


def delivery_paths(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT path FROM deliveries").fetchall()]


def delivery(conn: sqlite3.Connection, delivery_id: str) -> DeliveryRecord | None:
    row = conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return None if row is None else _delivery(row)


def deliveries_for_request(conn: sqlite3.Connection, request_id: str) -> list[DeliveryRecord]:
    rows = conn.execute(
        "SELECT * FROM deliveries WHERE request_id = ? ORDER BY camera_id, id", (request_id,)
    ).fetchall()
    return [_delivery(r) for r in rows]


def count_fetch(conn: sqlite3.Connection, delivery_id: str, max_fetches: int) -> int | None:
    """Take one fetch if fewer than `max_fetches` were taken; returns the new count or None."""
    cur = conn.execute(
        "UPDATE deliveries SET fetch_count = fetch_count + 1 WHERE id = ? AND fetch_count < ?",
        (delivery_id, max_fetches),
    )
    if cur.rowcount != 1:
        return None
    return int(conn.execute("SELECT fetch_count FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()[0])


# --- clock ------------------------------------------------------------------------------------


def insert_clock_confirmation(
    conn: sqlite3.Connection, kid: str, owner_time: float, hub_time: float, boot_id: str, jws: str
) -> None:
    conn.execute(
        "INSERT INTO clock_confirmations (kid, owner_time, hub_time, boot_id, jws) VALUES (?, ?, ?, ?, ?)",
        (kid, owner_time, hub_time, boot_id, jws),
    )


def clock_confirmed_on_boot(conn: sqlite3.Connection, boot_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM clock_confirmations WHERE boot_id = ? LIMIT 1", (boot_id,)).fetchone()
    return row is not None
