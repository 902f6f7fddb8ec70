"""The daemon as a real process: start, serve, stop on signals, data dir permissions, sd_notify."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
import socket
import stat
import time
import tracemalloc
import urllib.request
from pathlib import Path

import pytest

from camhub_protocol.keys import jwk_thumbprint
from hub import daemon
from hub.consent import pairing
from hub.store import connect
from tests.conftest import DaemonProcess, free_port, start_daemon, write_config


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.load(resp)


def test_serves_hub_identity_and_stops_on_sigterm(daemon: DaemonProcess) -> None:
    body = _get_json(daemon.url + "/api/v1/hub")
    assert body["hub_id"] == daemon.hub_id
    assert body["protocol"] == 1
    assert jwk_thumbprint(body["public_jwk"]) == body["hub_id"]
    assert daemon.pairing_code is not None

    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    log = daemon.log()
    assert "camhub stopping" in log
    for bad in ("Task was destroyed", "Traceback", "was never awaited", "Unclosed"):
        assert bad not in log


def test_sigint_stops_cleanly(daemon: DaemonProcess) -> None:
    assert daemon.stop(signal.SIGINT) == 0
    assert "Traceback" not in daemon.log()


def test_data_dir_layout_and_permissions(daemon: DaemonProcess, tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon.stop()
    for sub in ("", "segments", "events", "keys"):
        assert stat.S_IMODE((data / sub).stat().st_mode) == 0o700, sub
    key = data / "keys" / "hub.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "camhub.sqlite").stat().st_mode) == 0o600
    conn = connect(data / "camhub.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_hub_key_survives_restart(hub_config: Path, tmp_path: Path) -> None:
    first = start_daemon(hub_config, tmp_path / "1.log")
    first.wait_ready()
    assert first.stop() == 0
    second = start_daemon(hub_config, tmp_path / "2.log")
    second.wait_ready()
    try:
        assert second.hub_id == first.hub_id
    finally:
        assert second.stop() == 0


def test_pairing_code_from_the_log_is_the_valid_one(daemon: DaemonProcess, tmp_path: Path) -> None:
    daemon.stop()
    conn = connect(tmp_path / "data" / "camhub.sqlite")
    guard = pairing.PairingGuard()
    assert daemon.pairing_code is not None
    now = time.time()
    assert not guard.redeem(conn, "AAAA-AAAA", now, "10.0.0.5", 0.0)
    assert guard.redeem(conn, daemon.pairing_code.lower(), now, "10.0.0.5", 0.0)
    assert not guard.redeem(conn, daemon.pairing_code, now, "10.0.0.5", 0.0), "single use"


def test_pairing_code_stands_out_in_the_log(daemon: DaemonProcess) -> None:
    """The code is a box of its own at start (issue 13), not one line among many."""
    assert daemon.pairing_code is not None
    lines = daemon.log().splitlines()
    at = next(i for i, line in enumerate(lines) if f"pairing code: {daemon.pairing_code}" in line)
    assert set(lines[at - 1]) == {"*"} and len(lines[at - 1]) >= 60  # the box's top rule, right above
    box = lines[at - 1 : at + 6]
    assert set(box[-1]) == {"*"}
    assert any("type this code" in line for line in box)


def test_port_in_use_fails_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        cfg = write_config(tmp_path / "c.toml", tmp_path / "data", port)
        d = start_daemon(cfg, tmp_path / "d.log")
        assert d.proc.wait(30) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in d.log()
    assert "Traceback" not in d.log()


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(20)
        cfg = write_config(tmp_path / "c.toml", tmp_path / "data", free_port())
        # 200 ms watchdog: the daemon must ping every 100 ms.
        d = start_daemon(
            cfg, tmp_path / "d.log", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
        )
        try:
            messages: list[str] = []
            while not any(m.startswith("READY=1") for m in messages):
                messages.append(sock.recv(4096).decode())
            watchdogs = 0
            while watchdogs < 3:
                if sock.recv(4096).decode() == "WATCHDOG=1":
                    watchdogs += 1
            d.wait_ready()
            assert d.stop() == 0
            rest = []
            sock.settimeout(2)
            try:
                while True:
                    rest.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
            assert "STOPPING=1" in rest
        finally:
            if d.proc.poll() is None:
                d.stop()
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=serving http://127.0.0.1:" in ready


def test_no_notify_socket_no_datagrams(daemon: DaemonProcess) -> None:
    # Nothing to observe on a socket; the guarantee is that the daemon runs without NOTIFY_SOCKET.
    assert "NOTIFY_SOCKET" not in os.environ
    assert _get_json(daemon.url + "/api/v1/hub")["hub_id"] == daemon.hub_id


def test_unknown_route_gets_json_404(daemon: DaemonProcess) -> None:
    req = urllib.request.Request(daemon.url + "/api/v1/nope")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 404
    assert json.load(info.value)["error"] == "not_found"


@pytest.mark.parametrize("frames", [1, 4])
def test_sigusr1_under_tracemalloc_names_the_line_that_grew(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, frames: int
) -> None:
    """`python -m bench.soak --tracemalloc`: each SIGUSR1 compares with the first one and names the
    source lines holding more Python memory, biggest first."""
    monkeypatch.setattr(daemon, "_first_snapshot", None)

    async def two_signals() -> tuple[int, list[bytes]]:
        daemon.log_resource_stats()  # as the daemon's SIGUSR1 handler runs it: inside the loop
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        hoard = [bytes(1000) + bytes([i % 256]) for i in range(2000)]
        daemon.log_resource_stats()
        return line, hoard

    tracemalloc.start(frames)
    try:
        with caplog.at_level(logging.INFO, logger="hub.daemon"):
            line, hoard = asyncio.run(two_signals())
    finally:
        tracemalloc.stop()
    messages = [r.getMessage() for r in caplog.records if "camhub tracemalloc" in r.getMessage()]
    assert messages[0].endswith("baseline")
    assert messages[1].startswith("camhub tracemalloc traced_kb=")
    _, _, size, _, blocks, _ = messages[2].split()[:6]
    path = messages[2].split(" blocks ", 1)[1].split(" < ")
    # The allocating line first; with more frames, the callers after it (asyncio's, here).
    assert path[0] == f"{__file__}:{line}" and len(path) == min(frames, len(path)), messages
    assert (len(path) > 1) == (frames > 1), path
    assert int(size) >= 1900 and int(blocks) >= 2000, messages[2]
    assert len(hoard) == 2000
