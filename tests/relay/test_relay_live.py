"""Live view through the relay (PROTOCOL §7.3): WHEP signalling through camhub-relay and NATS, media
through a TURN server (Debian's coturn, started here on 127.0.0.1) with DTLS-SRTP end to end between
the agency and the hub — neither offers an address of its own, only relayed candidates — and the
owner's revoke cuts it as on the LAN. The camera is the simulator; the hub records it."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camhub_protocol import rfc3339
from tests.consent.flow_env import http
from tests.faults.hubproc import SimProcess, hub_env
from tests.relay.env import relay_config, single_node, start_relay, stopping, wait_for
from tests.relay.test_relay_e2e import decide_through_relay

TURN = shutil.which("turnserver") or "/usr/bin/turnserver"
pytestmark = pytest.mark.skipif(not Path(TURN).exists(), reason="needs coturn (make sysdeps)")


class Coturn:
    def __init__(self, tmp: Path) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        low = random.randrange(40000, 60000, 200)
        self.log_path = tmp / "turn.log"
        self.out_path = tmp / "turn.out"
        log = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [TURN, "-n", "-v", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={self.port}",
             "--lt-cred-mech", "--user=camhub:turn-secret", "--realm=camhub", "--no-tls", "--no-dtls",
             "--allow-loopback-peers", "--no-cli", f"--min-port={low}", f"--max-port={low + 199}",
             f"--log-file={self.log_path}", "--simple-log", f"--pidfile={tmp / 'turn.pid'}", f"--userdb={tmp / 'turndb'}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_for(lambda: "Total General servers" in self.log() or self.proc.poll() is not None, 15, "coturn")
        assert self.proc.poll() is None, self.log() + self.out_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_live_through_the_relay_and_turn_and_a_revoke_cuts_it(tmp_path: Path) -> None:
    nats = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [nats.url])
    turn = Coturn(tmp_path)
    sim = SimProcess(tmp_path, 1)
    turn_toml = f'turn_url = "{turn.url}"\nturn_username = "camhub"\nturn_password = "turn-secret"\n'
    env = hub_env(
        tmp_path,
        sim.camera_toml("sim-1") + relay_config([nats.url], relay.url, extra=turn_toml),
        footage=False,
    )
    with stopping(nats, relay, turn, sim, env):
        hub_url = f"{relay.url}/hubs/{env.hub_id}"
        wait_for(lambda: http("GET", f"{hub_url}/api/v1/hub").status == 200, 30, "registered")
        key = str(env.agency.directory)

        def agency(*args: str, timeout: float = 120) -> dict[str, object]:
            proc = subprocess.run(
                [sys.executable, "-m", "hub.agency_client", args[0], "--relay", relay.url, "--hub", env.hub_id,
                 "--key", key, *args[1:]],
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return json.loads(proc.stdout)

        asked = agency("request", "--camera", "sim-1", "--live-max-seconds", "300", "--case-id", "L-1",
                       "--reason", "ongoing incident", "--contact", "desk@pd.example")  # fmt: skip
        rid = str(asked["id"])
        wait_for(lambda: env.poll(rid).status == 200, 30, "taken from the queue")
        decided = env.decide({
            "decision": "approve", "request_id": rid, "request_sha256": asked["request_sha256"],
            "scope": {"kind": "live", "cameras": ["sim-1"], "start": None, "end": None, "live_max_seconds": 300},
            "recipient": env.agency.keyid, "max_fetches": 1, "not_after": rfc3339.format(int(time.time()) + 3600),
        })  # fmt: skip
        assert decided.status == 201, decided.body
        state = agency("status", "--", rid)
        assert state["status"] == "live"
        assert str(state["live"]["url"]).startswith(f"{hub_url}/api/agency/v1/live/")  # type: ignore[index]

        turn_args = ["--turn", turn.url, "--turn-username", "camhub", "--turn-password", "turn-secret"]
        saved = agency("live", "--seconds", "3", "--out", str(tmp_path / "live.mp4"), *turn_args, "--", rid)
        assert int(saved["frames"]) > 10, saved  # type: ignore[arg-type]
        # The media went through TURN: coturn relayed the peers' DTLS-SRTP (both only offer relay candidates).
        wait_for(lambda: _relayed_bytes(turn.log()) > 50_000, 30, "coturn's usage report")
        # A long viewing, cut by the owner's revoke through the relay.
        viewer = subprocess.Popen(
            [sys.executable, "-m", "hub.agency_client", "live", "--relay", relay.url, "--hub", env.hub_id, "--key",
             key, "--seconds", "120", "--out", str(tmp_path / "long.mp4"), *turn_args, "--", rid],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            long_mp4 = tmp_path / "long.mp4"
            # Revoke once media flows through TURN (the saved file grows as frames arrive).
            wait_for(lambda: long_mp4.exists() and long_mp4.stat().st_size > 20_000, 60, "media flowing")
            assert _live_starts(env) == 2
            decide_through_relay(hub_url, env.sign({"decision": "revoke", "request_id": rid}))
            out, err = viewer.communicate(timeout=60)  # ends on the cut, long before its 120 s
        finally:
            if viewer.poll() is None:
                viewer.kill()
                viewer.wait()
        assert viewer.returncode == 0, out + err
        ends = [e for e in env.audit_entries() if e["type"] == "egress.live.end"]
        assert ends and ends[-1]["data"]["reason"] != "closed", ends
        assert int(json.loads(out)["frames"]) < 120 * 10


def _relayed_bytes(log: str) -> int:
    """Bytes coturn relayed for the peers (its `usage:` lines: rb = received bytes)."""
    return sum(int(m) for m in re.findall(r"usage: .*?rb=(\d+)", log))


def _live_starts(env: object) -> int:
    return len([e for e in env.audit_entries() if e["type"] == "egress.live.start"])  # type: ignore[attr-defined]
