"""Queries for household members (migrations 0018, 0019; PROTOCOL §1.2): invites, rights, passwords,
and the members' passkeys (a login only: kept in `member_passkeys`, never in `owner_keys`).

Plain synchronous functions over a `sqlite3.Connection`; run them with `await store.run(fn, ...)`.
Invite codes are kept only as their SHA-256, like session ids. No function here touches
`owner_keys`: a member can never become a signer.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

Rights = dict[str, dict[str, bool]]
RIGHTS = ("live", "recordings")


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    rights: Rights
    password_hash: str | None
    invite_expires_at: float | None
    created_at: float
    joined_at: float | None

    def may(self, camera: str, right: str) -> bool:
        return bool(self.rights.get(camera, {}).get(right))

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "rights": self.rights,
            "created_at": self.created_at,
            "joined": self.joined_at is not None,
            "invite_expires_at": None if self.joined_at is not None else self.invite_expires_at,
        }


_COLUMNS = "id, name, rights, password_hash, invite_expires_at, created_at, joined_at"


def _member(row: Any) -> Member:
    return Member(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5], row[6])


def _dump(rights: Rights) -> str:
    return json.dumps(rights, separators=(",", ":"), sort_keys=True)


def invite(
    conn: sqlite3.Connection,
    member_id: str,
    name: str,
    rights: Rights,
    code_sha256: str,
    expires_at: float,
    now: float,
) -> bool:
    """A new member with a pending invite; False if the name is taken (ignoring case)."""
    try:
        conn.execute(
            "INSERT INTO members (id, name, rights, invite_sha256, invite_expires_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (member_id, name, _dump(rights), code_sha256, expires_at, now),
        )
    except sqlite3.IntegrityError:
        return False
    return True


def join(conn: sqlite3.Connection, code_sha256: str, password_hash: str, now: float) -> Member | None:
    """Spend an unexpired invite code and set the member's password, in one statement; the member,
    or None (wrong, spent or expired code, removed member)."""
    row = conn.execute(
        "UPDATE members SET password_hash = ?, joined_at = ?, invite_sha256 = NULL"
        " WHERE invite_sha256 = ? AND invite_expires_at > ? AND removed_at IS NULL"
        f" RETURNING {_COLUMNS}",
        (password_hash, now, code_sha256, now),
    ).fetchone()
    return None if row is None else _member(row)


def pending_invite(conn: sqlite3.Connection, code_sha256: str, now: float) -> Member | None:
    """The member an unexpired, unspent invite code names, without spending it (the join page needs
    the id for the passkey challenge, PROTOCOL §1.2), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM members WHERE invite_sha256 = ? AND invite_expires_at > ?"
        " AND removed_at IS NULL",
        (code_sha256, now),
    ).fetchone()
    return None if row is None else _member(row)


@dataclass(frozen=True)
class MemberPasskey:
    member_id: str
    kid: str
    credential_id: str
    public_key: bytes  # COSE_Key
    rp_id: str
    sign_count: int


def join_with_passkey(
    conn: sqlite3.Connection, code_sha256: str, member_id: str, passkey: MemberPasskey, now: float
) -> Member | None:
    """Spend the invite code of `member_id` and store its passkey, in one transaction; None if the
    code no longer names that member (spent meanwhile, expired, removed) or the credential is taken."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "UPDATE members SET joined_at = ?, invite_sha256 = NULL"
            " WHERE id = ? AND invite_sha256 = ? AND invite_expires_at > ? AND removed_at IS NULL"
            f" RETURNING {_COLUMNS}",
            (now, member_id, code_sha256, now),
        ).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return None
        conn.execute(
            "INSERT INTO member_passkeys"
            " (member_id, kid, credential_id, public_key, rp_id, sign_count, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (member_id, passkey.kid, passkey.credential_id, passkey.public_key, passkey.rp_id,
             passkey.sign_count, now),
        )  # fmt: skip
        conn.execute("COMMIT")
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK")
        return None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return _member(row)


def member_passkey(conn: sqlite3.Connection, member_id: str) -> MemberPasskey | None:
    row = conn.execute(
        "SELECT member_id, kid, credential_id, public_key, rp_id, sign_count FROM member_passkeys"
        " WHERE member_id = ?",
        (member_id,),
    ).fetchone()
    return None if row is None else MemberPasskey(*row)


def set_member_passkey_sign_count(conn: sqlite3.Connection, member_id: str, sign_count: int) -> None:
    conn.execute("UPDATE member_passkeys SET sign_count = ? WHERE member_id = ?", (sign_count, member_id))


def member(conn: sqlite3.Connection, member_id: str) -> Member | None:
    """A member still in the household, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM members WHERE id = ? AND removed_at IS NULL", (member_id,)
    ).fetchone()
    return None if row is None else _member(row)


def member_by_name(conn: sqlite3.Connection, name: str) -> Member | None:
    """A joined member still in the household, by name ignoring case (their login), or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM members WHERE lower(name) = lower(?) AND removed_at IS NULL"
        " AND joined_at IS NOT NULL",
        (name,),
    ).fetchone()
    return None if row is None else _member(row)


def members(conn: sqlite3.Connection) -> list[Member]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM members WHERE removed_at IS NULL ORDER BY created_at"
    ).fetchall()
    return [_member(r) for r in rows]


def set_rights(conn: sqlite3.Connection, member_id: str, rights: Rights) -> Member | None:
    conn.execute(
        "UPDATE members SET rights = ? WHERE id = ? AND removed_at IS NULL", (_dump(rights), member_id)
    )
    return member(conn, member_id)


def remove(conn: sqlite3.Connection, member_id: str, now: float) -> tuple[Member, int] | None:
    """Remove a member and end every session of theirs, in one transaction: (member, sessions ended)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = member(conn, member_id)
        if found is None:
            conn.execute("ROLLBACK")
            return None
        conn.execute(
            "UPDATE members SET removed_at = ?, invite_sha256 = NULL, password_hash = NULL WHERE id = ?",
            (now, member_id),
        )
        ended = conn.execute("DELETE FROM web_sessions WHERE member_id = ?", (member_id,)).rowcount
        conn.execute("DELETE FROM member_passkeys WHERE member_id = ?", (member_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found, ended


def remove_all(conn: sqlite3.Connection, now: float) -> list[str]:
    """Remove every member (`camhub owner reset`: whoever held the owner's session may have invited
    themselves); their sessions go with every other in the same reset. Call inside the caller's
    transaction. Returns the ids removed."""
    rows = conn.execute(
        "UPDATE members SET removed_at = ?, invite_sha256 = NULL, password_hash = NULL"
        " WHERE removed_at IS NULL RETURNING id",
        (now,),
    ).fetchall()
    conn.execute("DELETE FROM member_passkeys")
    return sorted(r[0] for r in rows)
