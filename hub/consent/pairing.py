"""The one-time pairing code that enrols the first owner key (PROTOCOL.md §1).

Single use, expires after 15 minutes, and 5 wrong tries lock it until the daemon restarts. Only a
hash is stored (in the `meta` table), so the code is not readable from the database after the fact,
and `camhub pair` (a separate process with a shell on the box) can replace it while the daemon runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass

from hub.store import meta

# Crockford base32 without I, L, O, U: nothing to misread when typing it from a console.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LIFETIME_SECONDS = 15 * 60
MAX_WRONG_TRIES = 5
META_KEY = "pairing_code"


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def _normalise(code: str) -> str:
    code = code.strip().upper().replace("-", "").replace(" ", "")
    return code.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def _digest(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode("ascii", "replace")).hexdigest()


def issue(conn: sqlite3.Connection, now: float | None = None) -> str:
    """Make a fresh code, replacing any earlier one. Returns the code to show on the console."""
    code = new_code()
    now = time.time() if now is None else now
    record = {"sha256": _digest(code), "expires_at": now + LIFETIME_SECONDS}
    meta.put(conn, META_KEY, json.dumps(record))
    return code


@dataclass
class PairingGuard:
    """In-memory wrong-try counter: the lock lasts until restart, as the protocol says."""

    wrong_tries: int = 0

    @property
    def locked(self) -> bool:
        return self.wrong_tries >= MAX_WRONG_TRIES

    def redeem(self, conn: sqlite3.Connection, code: str, now: float | None = None) -> bool:
        """True and the code is consumed if `code` is the current unexpired code; False otherwise."""
        if self.locked:
            return False
        now = time.time() if now is None else now
        raw = meta.get(conn, META_KEY)
        record = json.loads(raw) if raw else None
        if (
            record is None
            or not isinstance(code, str)
            or now > record["expires_at"]
            or not hmac.compare_digest(record["sha256"], _digest(code))
        ):
            self.wrong_tries += 1
            return False
        meta.delete(conn, META_KEY)
        return True
