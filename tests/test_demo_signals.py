"""`camhub demo` answers SIGUSR1 like `camhub run`: the README tells an owner to `kill -USR1` the hub
for its `camhub stats` line, and the default action of that signal would end the demo instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace")
        if text in log:
            return log
        assert proc.poll() is None, f"demo exited {proc.returncode}:\n{log[-2000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{path.read_text(errors='replace')[-2000:]}")


def test_sigusr1_logs_the_stats_line_and_the_demo_keeps_running(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "demo", "--cameras", "0", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "data")],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        _wait_for(log, "camhub demo: open", proc)
        proc.send_signal(signal.SIGUSR1)
        text = _wait_for(log, "camhub stats", proc, timeout=10)
        line = next(ln for ln in text.splitlines() if "camhub stats" in ln)
        for key in ("rss_kb=", "heap_kb=", "heap_free_kb=", "sqlite_kb=", "sqlite_cache_kb="):
            assert key in line, line
        assert proc.poll() is None, "SIGUSR1 ended the demo"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
