"""Commands run on the box against the hub's database (`camhub owner requests|reset`, `camhub audit
export`) answer a wrong --config with one clear line and an exit code, never a traceback (an empty
config pointed them at /var/lib/camhub and they died with StoreError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def camhub(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *argv], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", [["owner", "requests"], ["owner", "reset"], ["audit", "export", "out"]])
def test_a_config_without_a_hub_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "camhub.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "nothing-here"}"\n')
    command = [str(tmp_path / c) if c == "out" else c for c in command]
    r = camhub(*command, "--config", str(config))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"no hub database at {tmp_path / 'nothing-here' / 'camhub.sqlite'}: is --config the hub's configuration?"
    ]
    assert not (tmp_path / "nothing-here").exists()  # nothing was created where no hub lives


def test_an_unreadable_or_broken_config_is_its_problem_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("x = [\n")
    for path, words in ((broken, "invalid TOML"), (tmp_path / "absent.toml", "cannot read")):
        r = camhub("owner", "requests", "--config", str(path))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"{path}: {words}")


def test_approving_a_clip_without_both_ends_is_refused_before_signing(tmp_path: Path) -> None:
    """The hub would answer 400 invalid_decision; the CLI says what is missing and sends nothing
    (the URL here answers nothing: a request would fail differently)."""
    key = tmp_path / "owner.jwk"
    assert camhub("owner", "keygen", str(key)).returncode == 0
    base = ["owner", "approve", "--url", "http://127.0.0.1:9", "--key", str(key), "--request-id", "r1",
            "--request-sha256", "0" * 64, "--recipient", "age1x", "--camera", "cam1"]  # fmt: skip
    for ends in ([], ["--start", "2026-12-05T00:00:00Z"], ["--end", "2026-12-05T00:01:00Z"]):
        r = camhub(*base, *ends)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip() == (
            "camhub owner approve: a clip approval needs --start and --end "
            "(a livestream approval needs --live-max-seconds)"
        )
