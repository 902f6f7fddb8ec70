"""Give camhub's threads their names in the kernel too.

Python names its threads (`camhub-rtsp-front`, `camhub-db_0`) only for itself: before 3.14 every
thread of the daemon shows as `python` in `top -H`, `ps -L`, `/proc/<pid>/task/<tid>/comm` and
systemd's per-thread accounting, so an owner whose box runs hot cannot tell the camera reader from
the database thread, and bench/daemon_bench.py could not split the daemon's CPU by what it does.
Each thread calls `name_os_thread()` as it starts (a `ThreadPoolExecutor` takes it as its
`initializer`); the event loop's thread is named `camhub`, which is also the name `ps` and `top`
show for the process.

Linux keeps 15 bytes of a name (TASK_COMM_LEN), so the `camhub-` prefix, which the process name
already says, is dropped: `rtsp-front`, `rec-front_0`, `db_0`, `motion-front`. Elsewhere this is a
no-op.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

_PR_SET_NAME = 15  # <linux/prctl.h>
_COMM_BYTES = 15  # TASK_COMM_LEN 16, less the NUL
PREFIX = "camhub-"


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()


def os_name(name: str) -> str:
    """What the kernel will show for a thread named `name`: no `camhub-` prefix, ≤ 15 bytes."""
    short = name.removeprefix(PREFIX) or name
    return short.encode("utf-8")[:_COMM_BYTES].decode("utf-8", "ignore")


def name_os_thread(name: str | None = None) -> None:
    """Name the calling thread in the kernel: `name`, or its Python name. Never raises."""
    if _prctl is None:
        return
    if name is None:
        name = threading.current_thread().name
    _prctl(_PR_SET_NAME, os_name(name).encode("utf-8"), 0, 0, 0)
