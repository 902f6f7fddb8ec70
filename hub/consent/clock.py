"""Is the wall clock trustworthy? (PROTOCOL.md §6)

A Raspberry Pi has no battery-backed clock: after a power cut it may boot in 1970 or at the last
saved time until NTP steps it. Every consent time check (signature `created`/`expires`, `respond_by`,
`issued_at`, `not_after`) would then be wrong, so until the clock is known to be synchronised the hub
refuses agency requests and owner decisions with 503 `clock_unsynced` — fail closed.

The clock counts as synchronised when any of these holds:

1. `[consent] trust_system_clock = true` (a box with an RTC, the demo, the tests);
2. the kernel says so: `adjtimex(2)` with `modes = 0` (read only, no privilege needed) returns a
   state other than `TIME_ERROR` and `STA_UNSYNC` is clear in `status` — what chrony, ntpd and
   systemd-timesyncd set once they have disciplined the clock;
3. an owner confirmed the time during this boot: `POST /api/v1/owner/clock` with a JWS signed by an
   enrolled owner key whose payload carries the owner device's own time, accepted when it agrees with
   the hub's clock within `clock_skew_seconds` (the owner's phone keeps network time; the hub does not
   set its clock from it, it only learns that its clock is right). Confirmations are stored with the
   kernel's boot id, so one confirmation never outlives a reboot (the moment the clock can be wrong).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# <sys/timex.h>
_TIME_ERROR = 5
_STA_UNSYNC = 0x0040
# Re-ask the kernel at most this often; adjtimex is cheap but requests can be many.
_PROBE_TTL_S = 5.0


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (glibc/musl, Linux); trailing padding as the kernel declares.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


def kernel_clock_synced() -> bool:
    """True if `adjtimex(2)` reports a disciplined clock; False when unsynced or not answerable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return False
    tx = _Timex()  # modes = 0: read only
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        return False
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


def boot_id() -> str:
    """The kernel's random id for this boot; a clock confirmation is valid for one boot only."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        # No procfs: tie the confirmation to this process instead (stricter, never looser).
        return f"process-{id(boot_id)}-{time.monotonic_ns()}"


_PROCESS_BOOT_ID = boot_id()


class ClockGuard:
    """Answers "may time-based consent checks run now?", caching the kernel probe briefly."""

    def __init__(self, trust_system_clock: bool, probe: Callable[[], bool] | None = None) -> None:
        self.trust_system_clock = trust_system_clock
        self._probe = probe or kernel_clock_synced
        self._confirmed = False
        self._cached: tuple[float, bool] | None = None
        self.boot_id = _PROCESS_BOOT_ID

    def confirm(self) -> None:
        """An owner confirmed the time for this boot."""
        self._confirmed = True

    def synced(self) -> bool:
        if self.trust_system_clock or self._confirmed:
            return True
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > _PROBE_TTL_S:
            self._cached = (now, self._probe())
        return self._cached[1]
