"""The hub's real wiring (`hub.daemon.running_hub`) on its own event loop in a thread of the test process.

Same routes, same consent service, same SQLite file and loopback HTTP as `camhub run` in a subprocess
(`tests.conftest.DaemonProcess`), with the same small interface (`url`, `hub_id`, `pairing_code`,
`log()`, `wait_ready()`, `stop()`), so `flow_env.HubEnv` drives either. Two things only a hub in the
test process allows:

- mutation testing (`make mutate`, docs/MUTATION.md): mutmut learns which tests reach a function by
  recording calls in the test process, and a subprocess daemon's calls are invisible to it;
- `call()` runs a coroutine on the hub's loop and `services` is the live `Services`, e.g. to move the
  consent service's clock (`ConsentService.now`) past a grant's `not_after` in the middle of a
  transfer without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from hub import config as config_mod
from hub.daemon import running_hub
from hub.services import Services
from tests.conftest import PAIRING_RE

T = TypeVar("T")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class ThreadHub:
    """`running_hub(config)` in a thread until `stop()`."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.url = ""
        self.hub_id = ""
        self.pairing_code: str | None = None
        self.services: Services | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._log = _Lines()
        self._thread = threading.Thread(target=self._run, name=f"hub-{config_path.name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        logger = logging.getLogger("hub")
        level = logger.level
        logger.addHandler(self._log)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by wait_ready()/stop() in the test's thread
            self._error = exc
        finally:
            logger.removeHandler(self._log)
            logger.setLevel(level)
            self._ready.set()

    async def _main(self) -> None:
        config = config_mod.load(self.config_path)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with running_hub(config) as services:
            self.services = services
            self.url = services.base_url
            self.hub_id = services.hub_key.hub_id
            if m := PAIRING_RE.search(self.log()):
                self.pairing_code = m.group(1)
            self._ready.set()
            await self._stopping.wait()

    def log(self) -> str:
        return "\n".join(self._log.lines) + "\n"

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self._ready.wait(timeout):
            raise AssertionError(f"hub not ready within {timeout} s:\n{self.log()}")
        if self._error is not None or not self.url:
            raise AssertionError(f"hub failed to start:\n{self.log()}") from self._error

    def call(self, fn: Callable[[Services], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run `fn(services)` on the hub's loop and return its result (from the test's thread)."""
        assert self._loop is not None and self.services is not None
        services = self.services

        async def run() -> T:
            return await fn(services)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the hub (the same order as the daemon's SIGTERM path); 0 on a clean stop."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"hub did not stop within {timeout} s")
        return 0 if self._error is None else 1


def started(config_path: Path) -> ThreadHub:
    hub = ThreadHub(config_path)
    hub.wait_ready()
    return hub
