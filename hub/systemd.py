"""The sd_notify protocol (sd_notify(3)), so `Type=notify` units know when camhub is ready and alive.

Implemented directly (a datagram to $NOTIFY_SOCKET) rather than through libsystemd bindings: it is a
dozen lines, and the daemon must not need a C library to run outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from hub.supervisor import stop_task

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY=1 / WATCHDOG=1 / STOPPING=1 when NOTIFY_SOCKET is set; does nothing otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET") or None
        if self._address and self._address.startswith("@"):
            # Abstract namespace socket (sd_notify(3)): leading '@' stands for a NUL byte.
            self._address = "\0" + self._address[1:]
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_interval: float | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # Ping at half the deadline, as sd_watchdog_enabled(3) recommends.
            self.watchdog_interval = int(usec) / 1_000_000 / 2
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, state: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode("utf-8"), self._address)
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", state, exc)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
        if self.watchdog_interval and self._task is None:
            self._task = asyncio.create_task(self._watchdog(), name="sd-watchdog")

    async def _watchdog(self) -> None:
        assert self.watchdog_interval is not None
        while True:
            # The ping comes from the event loop itself, so a blocked loop stops the pings and
            # systemd restarts the daemon, which is the point of WatchdogSec.
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    async def stopping(self) -> None:
        self.notify("STOPPING=1")
        task, self._task = self._task, None
        await stop_task(task)
