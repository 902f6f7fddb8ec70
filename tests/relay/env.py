"""Real relay parts for tests: `nats-server` processes (one node, or a 3-node JetStream cluster),
`camhub-relay` gateways, and a hub that dials out to them — all on 127.0.0.1, ephemeral ports,
started and stopped by the tests themselves. Waits poll with a deadline; nothing sleeps to wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, free_ports

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
RELAY = [sys.executable, "-m", "relay.cli"]


def need_nats() -> None:
    if not os.path.exists(NATS_SERVER):
        pytest.fail("nats-server is not installed (make sysdeps installs the Debian package)")


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class NatsNode:
    name: str
    port: int
    store: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = proc = subprocess.Popen([NATS_SERVER, *self.args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(
            lambda: proc.poll() is not None or _port_open(self.port), 15, f"nats-server {self.name} listening"
        )
        if proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"nats-server {self.name} exited with {proc.returncode}:\n{tail}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def single_node(tmp: Path) -> NatsNode:
    need_nats()
    port = free_port()
    store = tmp / "js"
    node = NatsNode(
        "n1", port, store, tmp / "nats.log", ["-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    )
    node.start()
    return node


def cluster(tmp: Path, size: int = 3) -> list[NatsNode]:
    need_nats()
    tmp.mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * size)
    client_ports, route_ports = ports[:size], ports[size:]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
    nodes = []
    for i in range(size):
        conf = tmp / f"n{i + 1}.conf"
        store = tmp / f"js{i + 1}"
        conf.write_text(
            f"server_name: n{i + 1}\nlisten: 127.0.0.1:{client_ports[i]}\n"
            f"jetstream {{ store_dir: {store} }}\n"
            f"cluster {{ name: c1, listen: 127.0.0.1:{route_ports[i]}, routes: [{routes}] }}\n"
        )
        nodes.append(
            NatsNode(f"n{i + 1}", client_ports[i], store, tmp / f"nats{i + 1}.log", ["-c", str(conf)])
        )
    for node in nodes:
        node.start()
    return nodes


@dataclass
class RelayProcess:
    nats: list[str]
    port: int
    log_path: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> None:
        args = [*RELAY, "--bind", "127.0.0.1", "--port", str(self.port), "--public-url", self.url]
        for url in self.nats:
            args += ["--nats", url]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*args, *self.extra], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: f"camhub-relay ready url={self.url}" in self.log()[offset:] or self.proc.poll() is not None,
                 timeout, "relay ready")  # fmt: skip
        assert self.proc.poll() is None, self.log()

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.proc.returncode


def start_relay(
    tmp: Path, nats: list[str], *extra: str, port: int | None = None, name: str = "relay"
) -> RelayProcess:
    relay = RelayProcess(nats, port or free_port(), tmp / f"{name}.log", list(extra))
    relay.start()
    return relay


def relay_config(nats: list[str], public_url: str, area: str | None = None, extra: str = "") -> str:
    urls = ", ".join(f'"{u}"' for u in nats)
    lines = f'\n[relay]\nurl = [{urls}]\npublic_url = "{public_url}"\nreconnect_max_s = 2\n{extra}'
    if area:
        lines += f'area = "{area}"\n'
    return lines


@contextlib.contextmanager
def stopping(*things: object) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()  # type: ignore[attr-defined]
