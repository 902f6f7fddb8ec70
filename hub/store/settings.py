"""The owner's settings overlay (migration 0008): cameras added in the web UI and storage overrides;
privacy masks per camera (migration 0016).

Rows hold the TOML-shaped tables as JSON; `hub/settings.py` validates them with `hub.config`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def cameras(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every camera table the owner added, oldest first."""
    rows = conn.execute("SELECT camera FROM owner_cameras ORDER BY added_at, id").fetchall()
    return [json.loads(r[0]) for r in rows]


def put_camera(conn: sqlite3.Connection, camera_id: str, table: dict[str, Any], now: float) -> None:
    conn.execute(
        """
        INSERT INTO owner_cameras (id, camera, added_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT(id) DO UPDATE SET camera = excluded.camera, updated_at = excluded.updated_at
        """,
        (camera_id, json.dumps(table), now, now),
    )


def delete_camera(conn: sqlite3.Connection, camera_id: str) -> bool:
    return conn.execute("DELETE FROM owner_cameras WHERE id = ?", (camera_id,)).rowcount > 0


def storage(conn: sqlite3.Connection) -> dict[str, Any]:
    row = conn.execute("SELECT storage FROM owner_storage WHERE id = 1").fetchone()
    return {} if row is None else json.loads(row[0])


def put_storage(conn: sqlite3.Connection, table: dict[str, Any], now: float) -> None:
    conn.execute(
        """
        INSERT INTO owner_storage (id, storage, updated_at) VALUES (1, ?, ?)
        ON CONFLICT(id) DO UPDATE SET storage = excluded.storage, updated_at = excluded.updated_at
        """,
        (json.dumps(table), now),
    )


def privacy(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """camera id -> the privacy table the owner set in the web UI (migration 0016)."""
    rows = conn.execute("SELECT camera_id, privacy FROM owner_privacy ORDER BY camera_id").fetchall()
    return {r[0]: json.loads(r[1]) for r in rows}


def put_privacy(conn: sqlite3.Connection, camera_id: str, table: dict[str, Any] | None, now: float) -> None:
    """Set (or, with None, forget: back to camhub.toml's) one camera's privacy table."""
    if table is None:
        conn.execute("DELETE FROM owner_privacy WHERE camera_id = ?", (camera_id,))
        return
    conn.execute(
        """
        INSERT INTO owner_privacy (camera_id, privacy, updated_at) VALUES (?, ?, ?)
        ON CONFLICT(camera_id) DO UPDATE SET privacy = excluded.privacy, updated_at = excluded.updated_at
        """,
        (camera_id, json.dumps(table), now),
    )
