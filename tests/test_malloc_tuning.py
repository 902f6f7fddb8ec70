"""The hub's long-running processes set glibc malloc up for months of running (hub/daemon.py
tune_malloc): at most two arenas, and a fixed mmap threshold.

Each probe runs in a fresh interpreter: an arena cap only applies to arenas not yet made, and the
threshold is raised by what was freed before. ARENAS: four threads allocate at once (past pymalloc's
512-byte limit, so through malloc), then glibc's `malloc_stats()` prints one `Arena N:` block per arena
on stderr. THRESHOLD: in a thread of its own, a 512 KiB block is freed (which raises glibc's own
thresholds past it), then a 256 KiB block is allocated; mallinfo2's count of mapped blocks says
whether it got a mapping.
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


THRESHOLD = """
import ctypes, sys, threading
from hub import cli, daemon

libc = daemon._libc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
mapped = []


def probe():
    # The first thread to allocate gets a fresh arena: no free chunk left over from start-up (imports
    # compiling bytecode leave big ones in the main heap) can serve the block instead of a mapping.
    libc.free(libc.malloc(512 * 1024))
    before = libc.mallinfo2().hblks
    block = libc.malloc(256 * 1024)
    mapped.append(libc.mallinfo2().hblks - before)
    libc.free(block)


async def main():
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return mapped[0]


if sys.argv[1] == "daemon":
    print(cli._run_daemon(main()))
else:
    import asyncio
    print(asyncio.run(main()))
"""

_MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")


def _probe(code: str, mode: str, env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in _MALLOC_ENV} | (env or {}),
        check=True,
    )


def _arenas(mode: str, env: dict[str, str] | None = None) -> int:
    out = _probe(PROBE, mode, env)
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def _mapped(mode: str, env: dict[str, str] | None = None) -> bool:
    """Whether a 256 KiB block allocated after a 512 KiB one was freed got a mapping of its own."""
    return int(_probe(THRESHOLD, mode, env).stdout.strip()) == 1


def test_the_daemons_runner_caps_malloc_at_two_arenas() -> None:
    # The probe can see more than two: without the hub's runner, four threads get arenas of their own.
    assert _arenas("plain") > daemon.MALLOC_ARENAS
    assert _arenas("daemon") <= daemon.MALLOC_ARENAS


def test_an_operators_malloc_arena_max_is_kept() -> None:
    assert _arenas("daemon", {"MALLOC_ARENA_MAX": "3"}) == 3


def test_the_cap_is_not_set_over_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert daemon.limit_malloc_arenas() is False


def test_the_daemons_runner_keeps_big_blocks_out_of_the_arenas() -> None:
    # Without the hub's runner glibc has raised its threshold past 256 KiB: the block comes from an arena.
    assert not _mapped("plain")
    assert _mapped("daemon")


def test_an_operators_mmap_threshold_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 MiB from the environment: the 256 KiB block stays in the arena, as the operator asked.
    assert not _mapped("daemon", {"MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)})
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(1024 * 1024))
    assert daemon.fix_malloc_thresholds() is False
