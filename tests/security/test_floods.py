"""A stranger on the LAN with no credentials (issue 12, PROTOCOL §1.1 and §5): floods cost the hub
a few audit entries and no footage, limits are per client and never lock anyone out, and requests for
another host name (DNS rebinding) get 421. Against real daemons on 127.0.0.1 (the simulator records
while the flood runs).
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws
from camhub_protocol.keys import okp_public_jwk
from hub.api.guards import ROUTES, SESSION_GUARDS
from tests.conftest import DaemonProcess, free_port, start_daemon, write_config
from tests.faults.hubproc import SimProcess, db, hub_env, until

JUNK_CALLS = 3000
DB_BUDGET_BYTES = 512 * 1024


class Client:
    """Keep-alive HTTP from a chosen loopback source address (another source is another client)."""

    def __init__(self, url: str, source: str = "127.0.0.1") -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.source = parts.hostname or "127.0.0.1", parts.port or 80, source
        self._conn: http.client.HTTPConnection | None = None

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=30, source_address=(self.source, 0)
                )
            try:
                self._conn.request(method, path, body, headers or {})
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def db_bytes(data_dir: Path) -> int:
    """The database's size as a reader sees it (main file and WAL together: page_count covers both)."""
    conn = sqlite3.connect(f"file:{data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return (
            conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        )
    finally:
        conn.close()


def audit(data_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT entry FROM audit_entries ORDER BY seq")]
    finally:
        conn.close()


def junk_jws() -> bytes:
    """A well-formed JWS by a key the hub never enrolled, or plain garbage: what a stranger sends."""
    if secrets.randbelow(2):
        return secrets.token_urlsafe(40).encode()
    key = Ed25519PrivateKey.generate()
    from camhub_protocol.keys import jwk_thumbprint

    kid = jwk_thumbprint(okp_public_jwk(key.public_key()))
    return jws.sign(b'{"v":1}', key, kid, "camhub-decision+jws").encode()


def test_3000_junk_calls_grow_the_database_by_less_than_512_kib_while_recording_goes_on(
    tmp_path: Path,
) -> None:
    sim = SimProcess(tmp_path, 1)
    env = hub_env(tmp_path, "[storage]\nsegment_seconds = 1\n" + sim.camera_toml("sim-1"), footage=False)
    try:

        def segments() -> list[sqlite3.Row]:
            conn = db(env.data_dir)
            try:
                return conn.execute(
                    "SELECT start_at, end_at FROM segments WHERE camera_id = 'sim-1'"
                ).fetchall()
            finally:
                conn.close()

        until(lambda: len(segments()) >= 3, 60, "recording to start")
        before_bytes, before_entries = db_bytes(env.data_dir), len(audit(env.data_dir))
        started = time.time()
        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + 240

        def flood(worker: int, calls: int) -> None:
            client = Client(env.url)
            try:
                for i in range(calls):
                    if time.monotonic() > deadline:
                        return
                    if (worker + i) % 2:
                        status, _, _ = client.call(
                            "POST", "/api/v1/decisions", junk_jws(), {"Content-Type": "application/jose"}
                        )
                    else:
                        status, _, _ = client.call(
                            "GET", f"/api/agency/v1/requests/{secrets.token_urlsafe(16)}"
                        )
                    with lock:
                        statuses[status] += 1
            finally:
                client.close()

        workers = [threading.Thread(target=flood, args=(w, JUNK_CALLS // 6)) for w in range(6)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(300)
        ended = time.time()
        assert sum(statuses.values()) == JUNK_CALLS, statuses
        assert set(statuses) <= {400, 401, 403, 429}, statuses
        assert statuses[429] > 0, statuses  # the per-client limit answered most of it

        grown = db_bytes(env.data_dir) - before_bytes
        assert grown < DB_BUDGET_BYTES, f"the database grew by {grown} bytes"
        new_entries = audit(env.data_dir)[before_entries:]
        assert len(new_entries) <= 20, [e["type"] for e in new_entries]
        # Recording went on meanwhile: the flood's whole span is covered by segments without a gap.
        until(lambda: any(s["end_at"] >= ended for s in segments()), 30, "a segment after the flood")
        spans = sorted((s["start_at"], s["end_at"]) for s in segments())
        covering = [sp for sp in spans if sp[1] >= started and sp[0] <= ended]
        assert covering and covering[0][0] <= started and covering[-1][1] >= ended, (covering, started, ended)
        for (_, end_a), (start_b, _) in itertools.pairwise(covering):
            assert start_b - end_a < 0.5, ("a gap in recording during the flood", end_a, start_b)
        conn = db(env.data_dir)
        try:
            gaps = conn.execute(
                "SELECT * FROM recording_gaps WHERE camera_id = 'sim-1' AND end_at >= ? AND start_at <= ?",
                (started, ended),
            ).fetchall()
        finally:
            conn.close()
        assert not gaps, [dict(g) for g in gaps]

        # Counted, not lost: after the daemon stops (which writes the last counts), the entries for
        # each route add up to every refused call.
        env.stop()
        counts: Counter[str] = Counter()
        for e in audit(env.data_dir)[before_entries:]:
            if e["actor"] == "unauthenticated" and "count" in e["data"]:
                counts[e["data"]["route"]] += e["data"]["count"]
        assert counts["POST /api/v1/decisions"] == JUNK_CALLS // 2, counts
        assert counts["GET /api/agency/v1/requests/{id}"] == JUNK_CALLS // 2, counts
    finally:
        env.stop()
        sim.stop()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon with a tiny per-client bucket: 5 calls at once, then one every 2 s."""
    config = write_config(tmp_path / "camhub.toml", tmp_path / "data", free_port())
    config.write_text(
        config.read_text().replace("[hub]\n", "[hub]\nrate_limit_per_s = 0.5\nrate_limit_burst = 5\n", 1)
    )
    d = start_daemon(config, tmp_path / "daemon.log")
    try:
        d.wait_ready()
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()


def test_every_route_without_a_session_is_limited_per_client(limited: DaemonProcess) -> None:
    stranger = Client(limited.url)
    for _ in range(5):
        assert stranger.call("GET", "/api/v1/hub")[0] == 200
    # The bucket is empty: every route a stranger can call is refused before its handler runs,
    # with Retry-After; session routes (owner or member) are not limited (a 401 costs nothing).
    checked = 0
    for (method, path), declared in sorted(ROUTES.items()):
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        status, headers, body = stranger.call(method, concrete, b"{}", {"Content-Type": "application/json"})
        if declared.guard in SESSION_GUARDS:  # owner or household member session (PROTOCOL §1.2)
            assert status != 429, (method, path)
            continue
        assert status == 429, (method, path, status, body[:200])
        assert json.loads(body)["error"] == "rate_limited"
        assert 1 <= int(headers["retry-after"]) <= 2, headers
        checked += 1
    assert checked >= 15
    # A path no route matches is limited too.
    assert stranger.call("GET", "/no/such/path")[0] == 429
    # Another client is not slowed down by this one: limits are per client, never global.
    neighbour = Client(limited.url, source="127.0.0.2")
    assert neighbour.call("GET", "/api/v1/hub")[0] == 200
    # And the stranger may call again after Retry-After: a wait, not a lock.
    time.sleep(2.1)
    assert stranger.call("GET", "/api/v1/hub")[0] == 200


def test_wrong_pairing_codes_slow_one_client_down_but_never_lock_pairing(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    """Before issue 12, five wrong codes locked pairing until a restart: a stranger could keep the
    owner from ever enrolling. Now: exponential backoff per client, at most 60 s."""
    assert daemon.pairing_code is not None
    stranger = Client(daemon.url)
    owner = Client(daemon.url, source="127.0.0.2")

    def enrol(client: Client, code: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        key = Ed25519PrivateKey.generate()
        body = json.dumps({"pairing_code": code, "public_jwk": okp_public_jwk(key.public_key()), "name": "x"})
        status, headers, data = client.call(
            "POST", "/api/v1/owner/enroll", body.encode(), {"Content-Type": "application/json"}
        )
        return status, headers, json.loads(data)

    wrong, waits = 0, []
    deadline = time.monotonic() + 120
    while wrong < 6 and time.monotonic() < deadline:
        status, headers, answer = enrol(stranger, "AAAA-AAAA")
        if status == 429:
            assert answer["error"] == "rate_limited"
            waits.append(int(headers["retry-after"]))
            assert 1 <= waits[-1] <= 60
            # Another client is not held up by the stranger's backoff.
            assert enrol(owner, "BBBB-BBBB")[2]["error"] == "bad_pairing_code"
            time.sleep(min(waits[-1], 20))
            continue
        assert (status, answer["error"]) == (403, "bad_pairing_code")
        wrong += 1
    assert wrong == 6 and waits, (wrong, waits)
    # The right code from the client that typed six wrong ones enrols after at most one more wait.
    first_try = time.monotonic()
    while True:
        status, headers, answer = enrol(stranger, daemon.pairing_code)
        if status != 429:
            break
        assert int(headers["retry-after"]) <= 60
        time.sleep(int(headers["retry-after"]))
    assert status == 201, answer
    assert time.monotonic() - first_try <= 70
    # Counted in the audit log, not an entry per try.
    entries = [
        json.loads(r[0])
        for r in db(Path(str(daemon.log_path.parent / "data"))).execute("SELECT entry FROM audit_entries")
    ]
    failed = [e for e in entries if e["type"] == "pairing.failed"]
    assert 1 <= len(failed) <= 2, failed


def test_other_host_names_are_misdirected(daemon: DaemonProcess) -> None:
    """DNS rebinding: a page on `evil.example` resolving to the hub drives it from the owner's
    browser with `Host: evil.example`. Only the hub's own names and addresses are answered."""
    client = Client(daemon.url)
    port = client.port
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "test-hub.local.evil.example",
        "192.168.1.1",
        "[fe80::1]",
    ):
        status, _, body = client.call("GET", "/api/v1/hub", headers={"Host": host})
        assert status == 421, (host, status)
        assert json.loads(body)["error"] == "misdirected_request"
        status, _, _ = client.call(
            "POST", "/api/v1/decisions", b"x.y.z", {"Host": host, "Content-Type": "application/jose"}
        )
        assert status == 421, host
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"test-hub.local:{port}",
        "TEST-HUB.LOCAL.",
        "test-hub",
    ):
        status, _, body = client.call("GET", "/api/v1/hub", headers={"Host": host})
        assert status == 200 and b"hub_id" in body, (host, status)
