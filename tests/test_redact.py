"""Camera passwords never reach the log, and never blank the daemon's own contract lines either.

A camera whose password is `camhub` (the simulator's default, and a word in `camhub ready url=`)
once made the whole daemon look dead: the exact-secret scan blanked the ready line. The real daemon
runs here with such a camera (at an address nobody answers, so FFmpeg quotes the URL with its
credentials in every retry) and its log is read as an owner or install.sh would read it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hub import redact
from tests.conftest import free_port, start_daemon, write_config


def test_a_password_that_is_a_word_of_the_ready_line_leaves_it_whole(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens: every open fails and FFmpeg quotes the URL
    config = write_config(
        tmp_path / "camhub.toml", tmp_path / "data", free_port(),
        extra=f'[[cameras]]\nid = "door"\nurl = "rtsp://127.0.0.1:{dead}/main"\nusername = "admin"\npassword = "camhub"\n',
    )  # fmt: skip
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        daemon.wait_ready()  # reads `camhub ready url=` and the pairing banner from the log
        assert daemon.pairing_code is not None
        log = daemon.log()
        assert "camhub ready url=http://127.0.0.1:" in log
        assert f"127.0.0.1:{dead}" in log, "the test needs the camera's failures in the log"
        assert "admin:camhub@" not in log and ":camhub@" not in log
        assert "*** ready" not in log
    finally:
        daemon.stop()


def test_the_exact_secret_scan_runs_on_everything_but_plain_lines() -> None:
    redact.add_secrets(["hunter2-secret"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "library said %s", ("hunter2-secret",), None)
    redact.RedactingFilter().filter(record)
    assert record.getMessage() == "library said ***"
    # A plain line gets structural redaction still: userinfo in a URL never survives.
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "ready url=%s", ("rtsp://u:p@h/x",), None)
    plain.__dict__.update(redact.PLAIN)
    redact.RedactingFilter().filter(plain)
    assert plain.getMessage() == "ready url=rtsp://h/x"
