"""Threads carry their names into the kernel (hub/threadname.py): `top -H`, `ps -L` and the bench
read them from /proc, where Python before 3.14 leaves every thread called `python`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from hub.threadname import name_os_thread, os_name
from tests.conftest import DaemonProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names threads on Linux only")


def _comm(pid: int | str, tid: int | str | None = None) -> str:
    path = Path(f"/proc/{pid}/comm") if tid is None else Path(f"/proc/{pid}/task/{tid}/comm")
    return path.read_text().rstrip("\n")


def _named_in_thread(python_name: str, os_name_arg: str | None = None) -> str:
    seen: list[str] = []

    def body() -> None:
        name_os_thread(os_name_arg)
        seen.append(_comm("self", threading.get_native_id()))

    t = threading.Thread(target=body, name=python_name)
    t.start()
    t.join()
    return seen[0]


def test_a_thread_is_named_without_the_camhub_prefix_in_15_bytes() -> None:
    assert _named_in_thread("camhub-rtsp-front") == "rtsp-front"
    # The kernel keeps 15 bytes: a long camera id is cut, never spills into another field.
    assert _named_in_thread("camhub-rtsp-front-door-camera") == "rtsp-front-door"
    assert _named_in_thread("worker", "camhub") == "camhub"
    # A cut through a multi-byte character drops the partial character rather than writing junk.
    name = "camhub-rtsp-a" + "é" * 5  # 16 bytes without the prefix: byte 15 is half an é
    assert os_name(name) == "rtsp-aéééé"
    assert _named_in_thread(name) == "rtsp-aéééé"


def test_the_daemon_and_its_database_thread_are_named(daemon: DaemonProcess) -> None:
    pid = daemon.proc.pid
    assert _comm(pid) == "camhub"  # what `ps` and `top` show for the process
    names = {_comm(pid, tid.name) for tid in Path(f"/proc/{pid}/task").iterdir()}
    assert "db_0" in names, names
