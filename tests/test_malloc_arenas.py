"""The hub's long-running processes cap glibc malloc's arenas (hub/daemon.py limit_malloc_arenas).

Each probe runs in a fresh interpreter: an arena cap only applies to arenas not yet made. Four threads
allocate at once (past pymalloc's 512-byte limit, so through malloc), then glibc's `malloc_stats()`
prints one `Arena N:` block per arena on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hub import daemon

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt and malloc_stats",
)

PROBE = """
import asyncio, ctypes, sys, threading
from hub import cli

THREADS = 4  # within the default executor's workers (min(32, cores + 4))
barrier = threading.Barrier(THREADS)


def allocate():
    barrier.wait()  # all at once, so each finds the arenas busy
    keep = [bytes(4096) for _ in range(2000)]
    barrier.wait()
    return len(keep)


async def main():
    if sys.argv[1] == "daemon":  # the hub's own runner: `camhub run` and `camhub demo` go through it
        await asyncio.gather(*(asyncio.to_thread(allocate) for _ in range(THREADS)))
    else:
        threads = [threading.Thread(target=allocate) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


if sys.argv[1] == "daemon":
    cli._run_daemon(main())
else:
    asyncio.run(main())
ctypes.CDLL(None).malloc_stats()
"""


def _arenas(mode: str, env: dict[str, str] | None = None) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | (env or {}),
        check=True,
    )
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def test_the_daemons_runner_caps_malloc_at_two_arenas() -> None:
    # The probe can see more than two: without the hub's runner, four threads get arenas of their own.
    assert _arenas("plain") > daemon.MALLOC_ARENAS
    assert _arenas("daemon") <= daemon.MALLOC_ARENAS


def test_an_operators_malloc_arena_max_is_kept() -> None:
    assert _arenas("daemon", {"MALLOC_ARENA_MAX": "3"}) == 3


def test_the_cap_is_not_set_over_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert daemon.limit_malloc_arenas() is False
