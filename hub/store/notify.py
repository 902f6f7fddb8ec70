"""Owner notification settings and Web Push subscriptions (migration 0015, PROTOCOL §8)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PushSubscription:
    id: str
    endpoint: str
    p256dh: str
    auth: str
    name: str
    created_at: float


def settings(conn: sqlite3.Connection) -> dict[str, Any]:
    row = conn.execute("SELECT settings FROM owner_notifications WHERE id = 1").fetchone()
    return {} if row is None else json.loads(row[0])


def put_settings(conn: sqlite3.Connection, table: dict[str, Any], now: float) -> None:
    conn.execute(
        """
        INSERT INTO owner_notifications (id, settings, updated_at) VALUES (1, ?, ?)
        ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at
        """,
        (json.dumps(table), now),
    )


def subscriptions(conn: sqlite3.Connection) -> list[PushSubscription]:
    rows = conn.execute(
        "SELECT id, endpoint, p256dh, auth, name, created_at FROM push_subscriptions ORDER BY created_at, id"
    ).fetchall()
    return [PushSubscription(*r) for r in rows]


def put_subscription(conn: sqlite3.Connection, sub: PushSubscription, limit: int) -> tuple[str, bool] | None:
    """Insert, or replace the keys of the same endpoint: (id, created). None when `limit` is reached."""
    row = conn.execute("SELECT id FROM push_subscriptions WHERE endpoint = ?", (sub.endpoint,)).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE push_subscriptions SET p256dh = ?, auth = ?, name = ? WHERE id = ?",
            (sub.p256dh, sub.auth, sub.name, row[0]),
        )
        return str(row[0]), False
    (count,) = conn.execute("SELECT COUNT(*) FROM push_subscriptions").fetchone()
    if count >= limit:
        return None
    conn.execute(
        "INSERT INTO push_subscriptions (id, endpoint, p256dh, auth, name, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (sub.id, sub.endpoint, sub.p256dh, sub.auth, sub.name, sub.created_at),
    )
    return sub.id, True


def delete_subscription(conn: sqlite3.Connection, sub_id: str) -> bool:
    return conn.execute("DELETE FROM push_subscriptions WHERE id = ?", (sub_id,)).rowcount > 0


def pending_requests(conn: sqlite3.Connection, now: float) -> int:
    """Requests waiting for the owner (what the Home Assistant sensor shows)."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM consent_requests WHERE state = 'pending' AND respond_by > ?", (now,)
    ).fetchone()
    return int(count)
