"""Household members in the store (migration 0018, PROTOCOL §1.2): the invite code is spent once, a
removal takes the member's sessions with it, and `camhub owner reset` removes every member."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from hub import store
from hub.consent import owners
from hub.store import members as q
from hub.store import web as web_q


def _session(member_id: str | None, n: int, now: float) -> web_q.Session:
    return web_q.Session(f"s{n}", "csrf", now, now + 3600, now, "127.0.0.1", "test", member_id)


def test_invite_once_remove_with_sessions_and_reset_removes_everyone(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "camhub.sqlite")
    try:
        store.migrate(conn)
        now = time.time()
        code = hashlib.sha256(b"code").hexdigest()
        rights = {"front-door": {"live": True, "recordings": False}}
        assert q.invite(conn, "m-a", "Ann", rights, code, now + 60, now)
        assert not q.invite(conn, "m-b", "ann", {}, "other", now + 60, now)  # names ignore case
        assert q.join(conn, code, "hash", now) is not None
        assert q.join(conn, code, "hash", now) is None  # spent
        assert q.invite(conn, "m-c", "Cy", {}, hashlib.sha256(b"late").hexdigest(), now - 1, now)
        assert q.join(conn, hashlib.sha256(b"late").hexdigest(), "hash", now) is None  # expired
        web_q.create_session(conn, _session("m-a", 1, now))
        web_q.create_session(conn, _session(None, 2, now))
        assert web_q.live_session(conn, "s1", now).member_id == "m-a"  # type: ignore[union-attr]
        assert web_q.live_session(conn, "s2", now).member_id is None  # type: ignore[union-attr]

        removed = q.remove(conn, "m-a", now)
        assert removed is not None and removed[1] == 1
        assert web_q.live_session(conn, "s1", now) is None and web_q.live_session(conn, "s2", now) is not None
        assert q.member_by_name(conn, "Ann") is None and q.remove(conn, "m-a", now) is None
        # The name is free again for a new invite.
        assert q.invite(conn, "m-d", "Ann", rights, hashlib.sha256(b"again").hexdigest(), now + 60, now)

        result = owners.reset(conn, now, "box:test")
        assert q.members(conn) == [] and result.sessions_ended == 1
        entry = json.loads(
            bytes(conn.execute("SELECT entry FROM audit_entries ORDER BY seq DESC LIMIT 1").fetchone()[0])
        )
        assert entry["data"]["members_removed"] == ["m-c", "m-d"]
    finally:
        conn.close()


def test_a_member_passkey_is_never_an_owner_key_and_goes_with_removal_and_reset(tmp_path: Path) -> None:
    """Migration 0019: the member's passkey is spent with the code, lives apart from the owner keys,
    and removing the member, or `camhub owner reset`, deletes it."""
    from hub.store import consent as consent_q

    conn = store.connect(tmp_path / "camhub.sqlite")
    try:
        store.migrate(conn)
        now = time.time()
        codes = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("a", "b", "c")}
        for n, (name, code) in enumerate(codes.items()):
            assert q.invite(conn, f"m-{name}", name, {}, code, now + 60, now + n)
            assert q.pending_invite(conn, code, now) is not None

        def key(member_id: str) -> q.MemberPasskey:
            return q.MemberPasskey(
                member_id, f"kid-{member_id}", f"cred-{member_id}", b"cose", "localhost", 0
            )

        # The code must name that member: another member's code does not join this one.
        assert q.join_with_passkey(conn, codes["b"], "m-a", key("m-a"), now) is None
        for name, code in codes.items():
            assert q.join_with_passkey(conn, code, f"m-{name}", key(f"m-{name}"), now) is not None
            assert q.pending_invite(conn, code, now) is None  # spent
            assert q.member_by_name(conn, name) is not None  # a passkey member logs in by name
        assert q.join_with_passkey(conn, codes["a"], "m-a", key("m-a"), now) is None  # spent
        # Not an owner key to any owner key lookup.
        assert consent_q.owner_key(conn, "kid-m-a") is None and consent_q.passkey(conn, "kid-m-a") is None
        assert consent_q.passkeys(conn) == {} and consent_q.active_owner_keys(conn) == []

        assert q.remove(conn, "m-a", now) is not None
        assert q.member_passkey(conn, "m-a") is None and q.member_passkey(conn, "m-b") is not None
        owners.reset(conn, now, "box:test")
        assert q.member_passkey(conn, "m-b") is None and q.member_passkey(conn, "m-c") is None
        assert conn.execute("SELECT COUNT(*) FROM member_passkeys").fetchone()[0] == 0
    finally:
        conn.close()
