"""Queries for the owner web UI (migration 0006): the password, sessions, devices awaiting enrolment.

Plain synchronous functions over a `sqlite3.Connection`; run them with `await store.run(fn, ...)`.
Session rows are keyed by the SHA-256 of the cookie value, never the value itself.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Session:
    id_sha256: str
    csrf: str
    created_at: float
    expires_at: float
    last_seen: float
    remote: str
    user_agent: str
    member_id: str | None = None  # None: the owner; else a household member (PROTOCOL §1.2)


def password_hash(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT hash FROM web_password WHERE id = 1").fetchone()
    return None if row is None else row[0]


def set_password_if_unset(conn: sqlite3.Connection, encoded: str, now: float) -> bool:
    """Store the first password; False (and nothing changes) if one is already set."""
    cur = conn.execute(
        "INSERT INTO web_password (id, hash, set_at) VALUES (1, ?, ?) ON CONFLICT(id) DO NOTHING",
        (encoded, now),
    )
    return cur.rowcount == 1


def replace_password(conn: sqlite3.Connection, encoded: str, now: float, kid: str | None = None) -> bool:
    """Change the password and end every session (a changed password must log out other browsers).

    With `kid`, only while that owner key is still enrolled and unrevoked, checked in the same
    transaction (its proof was verified earlier; a revoke in between must win). False: not changed.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if kid is not None:
            row = conn.execute(
                "SELECT 1 FROM owner_keys WHERE kid = ? AND revoked_at IS NULL", (kid,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return False
        conn.execute(
            "INSERT INTO web_password (id, hash, set_at) VALUES (1, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, set_at = excluded.set_at",
            (encoded, now),
        )
        conn.execute("DELETE FROM web_sessions")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def end_all_owner_access(conn: sqlite3.Connection) -> int:
    """Forget the password, every session and every device waiting to be enrolled (the box reset:
    a thief's password and logged-in browser go with the keys). Returns the sessions ended. Call
    inside the caller's transaction."""
    ended = conn.execute("DELETE FROM web_sessions").rowcount
    conn.execute("DELETE FROM web_password")
    conn.execute("DELETE FROM web_device_requests")
    return ended


def create_session(conn: sqlite3.Connection, session: Session) -> None:
    conn.execute(
        "INSERT INTO web_sessions"
        " (id_sha256, csrf, created_at, expires_at, last_seen, remote, user_agent, member_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session.id_sha256,
            session.csrf,
            session.created_at,
            session.expires_at,
            session.last_seen,
            session.remote,
            session.user_agent,
            session.member_id,
        ),
    )


def live_session(conn: sqlite3.Connection, id_sha256: str, now: float) -> Session | None:
    """The unexpired session with this id hash, its `last_seen` bumped; None otherwise."""
    row = conn.execute(
        "SELECT id_sha256, csrf, created_at, expires_at, last_seen, remote, user_agent, member_id"
        " FROM web_sessions WHERE id_sha256 = ? AND expires_at > ?",
        (id_sha256, now),
    ).fetchone()
    if row is None:
        return None
    # Only write when it matters: a page polling every second should not rewrite the row each time.
    if now - row["last_seen"] > 60:
        conn.execute("UPDATE web_sessions SET last_seen = ? WHERE id_sha256 = ?", (now, id_sha256))
    return Session(*row)


def delete_session(conn: sqlite3.Connection, id_sha256: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_sha256 = ?", (id_sha256,))


def delete_expired_sessions(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,)).rowcount


def session_count(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("SELECT COUNT(*) FROM web_sessions WHERE expires_at > ?", (now,)).fetchone()[0]


def add_device_request(
    conn: sqlite3.Connection, kid: str, public_jwk: dict[str, Any], name: str, now: float
) -> None:
    conn.execute(
        "INSERT INTO web_device_requests (kid, public_jwk, name, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(kid) DO UPDATE SET name = excluded.name",
        (kid, json.dumps(public_jwk, separators=(",", ":"), sort_keys=True), name, now),
    )


def device_requests(conn: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    """Devices that asked to be enrolled after `since`, newest first."""
    rows = conn.execute(
        "SELECT kid, public_jwk, name, created_at FROM web_device_requests WHERE created_at > ?"
        " ORDER BY created_at DESC LIMIT 20",
        (since,),
    ).fetchall()
    return [{"kid": r[0], "public_jwk": json.loads(r[1]), "name": r[2], "created_at": r[3]} for r in rows]


def delete_device_request(conn: sqlite3.Connection, kid: str) -> None:
    conn.execute("DELETE FROM web_device_requests WHERE kid = ?", (kid,))


def camera_status(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """camera_id -> the ingest status row (migration 0001), for the cameras page."""
    rows = conn.execute(
        "SELECT camera_id, online, last_frame_at, last_error, reconnect_count, updated_at FROM camera_status"
    ).fetchall()
    return {
        r[0]: {
            "online": bool(r[1]),
            "last_frame_at": r[2],
            "last_error": r[3],
            "reconnect_count": r[4],
            "updated_at": r[5],
        }
        for r in rows
    }


def grants_in_force(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    """Unrevoked, unexpired grants with the agency they go to, newest first (the owner's Revoke list)."""
    rows = conn.execute(
        "SELECT g.id, g.request_id, g.recipient, g.kind, g.cameras, g.start_at, g.end_at,"
        " g.live_max_seconds, g.max_fetches, g.not_after, g.audio, d.accepted_at, a.name AS agency_name,"
        " r.body AS request_body"
        " FROM grants g JOIN decisions d ON d.id = g.id"
        " JOIN consent_requests r ON r.id = g.request_id"
        " LEFT JOIN agencies a ON a.keyid = g.recipient"
        " WHERE g.revoked_at IS NULL AND g.ended_at IS NULL AND g.not_after > ?"
        " ORDER BY d.accepted_at DESC LIMIT 200",
        (now,),
    ).fetchall()
    out = []
    for r in rows:
        try:
            case_id = json.loads(bytes(r["request_body"])).get("case_id")
        except (ValueError, AttributeError):
            case_id = None
        out.append(
            {
                "id": r["id"],
                "request_id": r["request_id"],
                "recipient": r["recipient"],
                "agency_name": r["agency_name"],
                "case_id": case_id,
                "kind": r["kind"],
                "cameras": json.loads(r["cameras"]),
                "start_at": r["start_at"],
                "end_at": r["end_at"],
                "live_max_seconds": r["live_max_seconds"],
                "max_fetches": r["max_fetches"],
                "audio": bool(r["audio"]),
                "not_after": r["not_after"],
                "approved_at": r["accepted_at"],
            }
        )
    return out


def events_between(
    conn: sqlite3.Connection, camera_ids: list[str], start: float, end: float, limit: int = 50
) -> list[dict[str, Any]]:
    """Events of these cameras starting in [start, end), oldest first (timeline marks, inbox preview)."""
    if not camera_ids:
        return []
    marks = ",".join("?" * len(camera_ids))
    rows = conn.execute(
        f"SELECT id, camera_id, kind, start_at, end_at, score, thumbnail, source FROM events"
        f" WHERE camera_id IN ({marks}) AND start_at >= ? AND start_at < ? ORDER BY start_at LIMIT ?",
        (*camera_ids, start, end, limit),
    ).fetchall()
    return [
        {
            "id": r[0],
            "camera_id": r[1],
            "kind": r[2],
            "start_at": r[3],
            "end_at": r[4],
            "score": r[5],
            "has_thumbnail": r[6] is not None,
            "source": r[7],
        }
        for r in rows
    ]


def segment(conn: sqlite3.Connection, segment_id: int) -> tuple[str, str] | None:
    """(camera_id, path) of one segment, for serving its file to the owner."""
    row = conn.execute("SELECT camera_id, path FROM segments WHERE id = ?", (segment_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def segment_span(conn: sqlite3.Connection, segment_id: int) -> tuple[float, float] | None:
    """(start_at, end_at) of one segment, for the playback audit entry."""
    row = conn.execute("SELECT start_at, end_at FROM segments WHERE id = ?", (segment_id,)).fetchone()
    return None if row is None else (row[0], row[1])
