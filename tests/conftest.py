"""Shared fixtures: a real hub daemon process on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings

# Under mutmut (`make mutate`, docs/MUTATION.md) every mutant must meet the same examples, or a
# mutant's verdict would depend on the draw; and a loaded machine must not fail a run on a deadline.
if "MUTANT_UNDER_TEST" in os.environ:
    settings.register_profile("mutmut", derandomize=True, deadline=None)
    settings.load_profile("mutmut")

# Under mutmut, tests stop at the first failure (-x): run the modules that need no hub first, so a
# mutant a unit test kills does not wait for a hub to start and a hundred HTTP tests to pass first.
# A mutant of a protocol library (RFC 9421, JWS, RFC 9162, signed notes, the stand-alone verifier) is
# judged by the library's own tests only: every hub test reaches those functions, and running them all
# for each surviving library mutant would make `make mutate` take hours (docs/MUTATION.md).
HUB_MODULES = ("test_protocol_rules", "test_api_rejections", "test_delivery_in_flight", "test_flow_e2e",
               "test_api_clock")  # fmt: skip
LIBRARIES = ("camhub_protocol.",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    if mutant is None:
        return
    if mutant.startswith(LIBRARIES):
        dropped = [item for item in items if item.path.stem in HUB_MODULES]
        items[:] = [item for item in items if item.path.stem not in HUB_MODULES]
        config.hook.pytest_deselected(items=dropped)
    items.sort(key=lambda item: item.path.stem in HUB_MODULES)  # stable: modules stay together


READY_RE = re.compile(r"camhub ready url=(\S+) hub_id=(\S+)")
PAIRING_RE = re.compile(r"pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports. Calling free_port() n times can hand out one port twice (each socket is
    closed before the next bind), which is how a nats cluster's client and route listeners once met."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def write_config(
    path: Path, data_dir: Path, port: int, extra: str = "", consent: str = "", hub: str = ""
) -> Path:
    """A daemon config on 127.0.0.1:`port`; `consent` and `hub` add lines to those tables."""
    path.write_text(
        f"""
[hub]
name = "test-hub"
data_dir = "{data_dir}"
bind = "127.0.0.1"
port = {port}
{hub}

[consent]
trust_system_clock = true
{consent}

[discovery]
enabled = false
{extra}
"""
    )
    return path


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[str]
    log_path: Path
    url: str = ""
    hub_id: str = ""
    pairing_code: str | None = None
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if m := PAIRING_RE.search(text):
                self.pairing_code = m.group(1)
            if m := READY_RE.search(text):
                self.url, self.hub_id = m.group(1), m.group(2)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_daemon(
    config: Path, log_path: Path, env: dict[str, str] | None = None, module: str = "hub"
) -> DaemonProcess:
    """`python -m hub run --config …`; `module` names another entry point that ends in the same CLI
    (e.g. `tests.unsynced_clock`, which first hides the kernel's clock state)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "run", "--config", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=full_env,
        text=True,
    )
    log_file.close()
    return DaemonProcess(proc=proc, log_path=log_path)


@pytest.fixture
def hub_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "camhub.toml", tmp_path / "data", free_port())


@pytest.fixture
def daemon(hub_config: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(hub_config, tmp_path / "daemon.log")
    try:
        d.wait_ready()
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()
