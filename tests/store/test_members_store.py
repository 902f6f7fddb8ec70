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
