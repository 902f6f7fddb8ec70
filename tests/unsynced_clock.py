"""Run `camhub` in a process whose kernel will not say whether the clock is synchronised.

    python -m tests.unsynced_clock run --config camhub.toml

Machines that run the tests keep NTP time, so the kernel reports a synchronised clock and the hub's
PROTOCOL §6 guard (`hub/consent/clock.py`) never refuses anything: the owner's "confirm the hub's
clock" path would go untested. Setting the kernel's clock state needs CAP_SYS_TIME and would change
it for the whole machine, so instead this process installs a seccomp filter (Linux
`PR_SET_SECCOMP`, classic BPF) under which `adjtimex(2)` and `clock_adjtime(2)` fail with EPERM,
then runs the real CLI. The hub's probe then cannot learn the state and, as the product must, treats
the clock as not known to be right (fail closed). Nothing in `hub/` changes; children inherit the
filter, nothing else on the machine sees it.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import sys

from hub import cli
from hub.consent import clock

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF_0000
SECCOMP_RET_ERRNO = 0x0005_0000
# struct seccomp_data: int nr; __u32 arch; ...
OFFSET_NR, OFFSET_ARCH = 0, 4
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
# machine -> (AUDIT_ARCH_*, __NR_adjtimex, __NR_clock_adjtime)
ARCHES = {"x86_64": (0xC000_003E, 159, 305), "aarch64": (0xC000_00B7, 171, 266)}


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def deny_clock_state() -> None:
    """Make adjtimex/clock_adjtime fail with EPERM in this process and its children."""
    arch, nr_adjtimex, nr_clock_adjtime = ARCHES[platform.machine()]
    program = [
        SockFilter(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        SockFilter(BPF_JEQ_K, 0, 3, arch),  # another ABI: allow (jump to 5)
        SockFilter(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        SockFilter(BPF_JEQ_K, 2, 0, nr_adjtimex),  # -> 6
        SockFilter(BPF_JEQ_K, 1, 0, nr_clock_adjtime),  # -> 6
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        SockFilter(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
    ]
    filters = (SockFilter * len(program))(*program)
    prog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main() -> int:
    deny_clock_state()
    # The filter must hold before the daemon asks, or the test would pass for the wrong reason.
    assert not clock.kernel_clock_synced(), "adjtimex still answers under the seccomp filter"
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
