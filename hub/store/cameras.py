"""Per-camera status rows (online, last frame, last error, reconnect count)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from hub.store import transaction


@dataclass(frozen=True)
class CameraStatus:
    camera_id: str
    online: bool
    last_frame_at: float | None
    last_error: str | None
    reconnect_count: int
    updated_at: float


def upsert(
    conn: sqlite3.Connection,
    camera_id: str,
    *,
    online: bool,
    last_frame_at: float | None = None,
    last_error: str | None = None,
    reconnected: bool = False,
) -> None:
    """Record the camera's state; `last_frame_at`/`last_error` keep their old value when None."""
    conn.execute(
        """
        INSERT INTO camera_status (camera_id, online, last_frame_at, last_error, reconnect_count, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(camera_id) DO UPDATE SET
            online = excluded.online,
            last_frame_at = COALESCE(excluded.last_frame_at, camera_status.last_frame_at),
            last_error = COALESCE(excluded.last_error, camera_status.last_error),
            reconnect_count = camera_status.reconnect_count + excluded.reconnect_count,
            updated_at = excluded.updated_at
        """,
        (camera_id, int(online), last_frame_at, last_error, int(reconnected), time.time()),
    )


def upsert_live(conn: sqlite3.Connection, live: list[tuple[str, bool, float | None]]) -> None:
    """The status loop's tick: (camera_id, online, last_frame_at) of every camera in one transaction,
    not one commit per camera (the store thread's CPU per camera halved with 4 cameras)."""
    with transaction(conn):
        for camera_id, online, last_frame_at in live:
            upsert(conn, camera_id, online=online, last_frame_at=last_frame_at)


def all_status(conn: sqlite3.Connection) -> dict[str, CameraStatus]:
    rows = conn.execute(
        "SELECT camera_id, online, last_frame_at, last_error, reconnect_count, updated_at FROM camera_status"
    ).fetchall()
    return {
        r["camera_id"]: CameraStatus(
            camera_id=r["camera_id"],
            online=bool(r["online"]),
            last_frame_at=r["last_frame_at"],
            last_error=r["last_error"],
            reconnect_count=r["reconnect_count"],
            updated_at=r["updated_at"],
        )
        for r in rows
    }


def mark_all_offline(conn: sqlite3.Connection) -> None:
    """At start and clean stop nothing is streaming; a stale 'online' would mislead the owner."""
    conn.execute("UPDATE camera_status SET online = 0, updated_at = ?", (time.time(),))
