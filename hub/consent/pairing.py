"""The one-time pairing code that enrols the first owner key (PROTOCOL.md §1).

Single use and expires after 15 minutes. Only a hash is stored (in the `meta` table), so the code is
not readable from the database after the fact, and `camhub pair` / `camhub owner reset` (separate
processes with a shell on the box) can replace it while the daemon runs.

Wrong tries are limited per client with exponential backoff capped at 60 s (`camhub_protocol.limits.Backoff`),
never by a lock: the old "5 wrong tries lock pairing until restart" let any stranger on the LAN lock
the owner out of their own new hub with five requests (issue 12). Guessing stays hopeless: 32^8
codes, a handful of tries per client per minute, and the code expires in 15 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field

from camhub_protocol.limits import Backoff
from hub.store import meta

# Crockford base32 without I, L, O, U: nothing to misread when typing it from a console.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LIFETIME_SECONDS = 15 * 60
# Wrong codes a client may type before it has to wait (2, 4, 8, ... s, at most 60 s).
FREE_WRONG_TRIES = 2
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
    """Per-client backoff after wrong codes (in memory: a restart forgets it)."""

    backoff: Backoff = field(default_factory=lambda: Backoff(free=FREE_WRONG_TRIES))

    def retry_after(self, client: str, mono: float) -> float:
        """Seconds until `client` may try a code again (0: now)."""
        return self.backoff.retry_after(client, mono)

    def redeem(self, conn: sqlite3.Connection, code: str, now: float, client: str, mono: float) -> bool:
        """True and the code is consumed if `code` is the current unexpired code; False (and one
        failure counted for `client`) otherwise. The caller checks `retry_after` first."""
        raw = meta.get(conn, META_KEY)
        record = json.loads(raw) if raw else None
        if (
            record is None
            or not isinstance(code, str)
            or now > record["expires_at"]
            or not hmac.compare_digest(record["sha256"], _digest(code))
        ):
            self.backoff.failed(client, mono)
            return False
        meta.delete(conn, META_KEY)
        self.backoff.succeeded(client)
        return True
