"""Owner routes answer only the home network (issue 12, PROTOCOL §1.1): a leaked password or session
cookie must not work from the internet. The hub runs in a network namespace of its own that has only
loopback, where `8.8.8.8` plays a client on the internet and `192.168.1.20` one on the LAN (both
addresses exist only inside the namespace; nothing leaves the machine).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import READY_RE, free_port, write_config
from tests.web.conftest import PASSWORD, seed

INTERNET, LAN = "8.8.8.8", "192.168.1.20"

# Runs inside the namespace: one HTTPS call per line of the plan, from the given source address to
# the hub's address of the same network, printing the statuses as JSON.
PROBE = r"""
import http.client, json, ssl, sys
cafile, port, plan = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
out = []
for source, method, path, body, headers in plan:
    conn = http.client.HTTPSConnection(source, port, context=ctx, timeout=20, source_address=(source, 0))
    conn.request(method, path, body.encode() if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    out.append([resp.status, doc if isinstance(doc, dict) else None, resp.getheader("Set-Cookie")])
    conn.close()
print(json.dumps(out))
"""


class Namespace:
    def __init__(self) -> None:
        self.name = f"camhub-{secrets.token_hex(4)}"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace()
    made = subprocess.run(["ip", "netns", "add", ns.name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace (needs root and iproute2): {made.stderr.strip()}")
    try:
        for cmd in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{INTERNET}/32", "dev", "lo"],
            ["ip", "addr", "add", f"{LAN}/32", "dev", "lo"],
        ):
            assert ns.run(*cmd).returncode == 0
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


def start_hub(ns: Namespace, tmp: Path, owner_remote: bool) -> tuple[subprocess.Popen[str], Path, int]:
    data_dir = tmp / "data"
    seed(data_dir, password=True, segments_at=None)
    https_port = free_port()
    config = write_config(tmp / "camhub.toml", data_dir, free_port())
    hub_keys = f'bind = "0.0.0.0"\nhttps_port = {https_port}\nowner_remote = {str(owner_remote).lower()}\n'
    config.write_text(config.read_text().replace('bind = "127.0.0.1"\n', hub_keys, 1))
    log = tmp / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, sys.executable, "-m", "hub", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 30
    while not READY_RE.search(log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc, data_dir / "keys" / "web-ca.crt", https_port


def probe(ns: Namespace, cafile: Path, port: int, plan: list[list[object]]) -> list[list[object]]:
    done = ns.run(sys.executable, "-c", PROBE, str(cafile), str(port), json.dumps(plan))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _login(source: str) -> list[object]:
    body = json.dumps({"password": PASSWORD})
    return [source, "POST", "/api/v1/session/login", body, {"Content-Type": "application/json"}]


@pytest.mark.parametrize("owner_remote", [False, True])
def test_owner_routes_answer_only_the_home_network(
    netns: Namespace, tmp_path: Path, owner_remote: bool
) -> None:
    proc, cafile, port = start_hub(netns, tmp_path, owner_remote)
    try:
        login_lan, login_internet = probe(netns, cafile, port, [_login(LAN), _login(INTERNET)])
        assert login_lan[0] == 200, login_lan
        cookie = str(login_lan[2]).split(";", 1)[0]
        owner_get = {"Cookie": cookie}
        results = probe(
            netns,
            cafile,
            port,
            [
                [INTERNET, "GET", "/api/v1/owner/cameras", None, owner_get],  # a stolen cookie
                [INTERNET, "GET", "/api/v1/owner/audit/entries", None, owner_get],
                [INTERNET, "POST", "/api/v1/owner/enroll", "{}", {"Content-Type": "application/json"}],
                [LAN, "GET", "/api/v1/owner/cameras", None, owner_get],
                [INTERNET, "GET", "/api/v1/hub", None, {}],  # public identity: anyone
                # A JWS is its own authentication wherever it comes from: judged, not refused.
                [INTERNET, "POST", "/api/v1/decisions", "x.y.z", {"Content-Type": "application/jose"}],
            ],
        )
        cameras_internet, audit_internet, enroll_internet, cameras_lan, hub_info, decision = results
        assert cameras_lan[0] == 200
        assert hub_info[0] == 200
        assert decision[0] == 400 and decision[1]["error"].startswith("jws_"), decision
        if owner_remote:
            assert login_internet[0] == 200
            assert cameras_internet[0] == 200 and audit_internet[0] == 200
        else:
            for refused in (login_internet, cameras_internet, audit_internet, enroll_internet):
                assert refused[0] == 403 and refused[1] == {
                    "error": "owner_not_local",
                    "detail": refused[1]["detail"],
                }, refused
                assert refused[2] is None  # no session cookie handed out
    finally:
        proc.terminate()
        proc.wait(15)
