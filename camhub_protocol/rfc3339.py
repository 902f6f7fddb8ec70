"""RFC 3339 UTC timestamps as PROTOCOL.md writes them: `2026-11-20T18:00:00Z` (always `Z`).

Parsing is strict (RFC 3339 §5.6 `date-time` with a `Z` offset, optional fraction): a protocol
where a signature covers a time must not have two spellings that mean different instants.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?[Zz]")


def parse(text: object) -> float:
    """Unix seconds from an RFC 3339 UTC string; ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("must be an RFC 3339 UTC time string")
    m = _RE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 UTC time ending in Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = float(m.group(7)) if m.group(7) else 0.0
    # RFC 3339 §5.7 allows a leap second 60; Unix time folds it into the next second.
    leap = second == 60
    dt = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=UTC)
    return dt.timestamp() + fraction + (1 if leap else 0)


def format(ts: float) -> str:
    """RFC 3339 UTC with `Z`; whole seconds when the time is whole, else milliseconds."""
    dt = datetime.fromtimestamp(ts, UTC)
    if abs(ts - round(ts)) < 1e-6:
        return datetime.fromtimestamp(round(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
