"""A delivery stops in the middle when its approval ends (PROTOCOL §2.3, §3 "takes effect at once";
THREAT_MODEL "a revoke during a transfer").

`deliveries.stream` re-asks the gate before every 1 MiB chunk after the first. Here an agency fetches
a ~25 MB delivery through a deliberately slow client (a small receive buffer, and it stops reading
after the response headers), so the hub is still holding most of the file when the approval ends:
revoked by the owner, expired (the consent service's clock moved past `not_after`), or the agency
removed. Then the client reads on, and must get a short body (fewer bytes than Content-Length, a
prefix of the file, the connection closed) while the audit log shows the fetch (`egress.delivery`)
and its end (`egress.delivery.stopped` with the gate's code). A later fetch is refused.

The hub runs in the test process (`thread_hub.ThreadHub`) so the clock can be moved mid-transfer.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
import pytest

from hub.agency_client import Agency
from tests.consent.flow_env import FPS, AgencyKeys, HubEnv, new_agency, record_footage, start_hub_env

LOUD = "loud-door"  # a camera whose footage is large: lossless noise
LOUD_S = 6
CHUNK = 1024 * 1024
# The hub can have at most its socket send buffer (net.ipv4.tcp_wmem max, 4 MiB by default) plus
# aiohttp's write buffer in flight to a client that does not read; the delivery must be well larger.
MIN_DELIVERY = 16 * CHUNK
RECV_BUFFER = 16 * 1024


def _noise_source(path: Path) -> Path:
    """4 s of 640x360 noise, lossless H.264 (incompressible: ~5 MB/s), keyframe every second."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        s.options = {"g": str(FPS), "keyint_min": str(FPS), "bf": "0", "preset": "ultrafast", "qp": "0",
                     "sc_threshold": "0"}  # fmt: skip
        for i in range(4 * FPS):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (360, 640, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _loud_footage(data_dir: Path, config: Path, t0: float) -> None:
    record_footage(
        data_dir, config, t0, LOUD_S, camera=LOUD, source=_noise_source(data_dir.parent / "noise.mp4")
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    # The front door's footage has sound (test_a_clip_carries_sound_only_when_the_grant_says_so).
    env = start_hub_env(
        tmp_path_factory.mktemp("hub"), in_process=True, before_start=_loud_footage, audio=True
    )
    try:
        yield env
    finally:
        env.stop()


def _fulfilled(hub: HubEnv, agency: AgencyKeys) -> tuple[str, dict[str, Any]]:
    """A request for the loud camera, approved; returns (request id, its one delivery)."""
    start, end = hub.t0 + 1, hub.t0 + LOUD_S - 1
    rid, sha = hub.submit(start, end, agency=agency, cameras=[LOUD])
    r = hub.decide(hub.approval(rid, sha, start, end, agency=agency, cameras=[LOUD], max_fetches=5))
    assert r.status == 201, r.body
    deadline = time.monotonic() + hub.deadline_s
    while (state := hub.poll(rid, agency=agency).json())["status"] != "fulfilled":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    (delivery,) = state["deliveries"]
    assert delivery["bytes"] >= MIN_DELIVERY, delivery
    return rid, delivery


class SlowFetch:
    """A signed GET of a delivery over a raw socket that reads only when told to."""

    def __init__(self, hub: HubEnv, agency: AgencyKeys, url: str) -> None:
        headers = Agency(agency.directory, hub.url).sign_headers("GET", url, b"", None)
        host, port = hub.authority.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)  # before connect: the window
        self.sock.settimeout(hub.deadline_s)
        self.sock.connect((host, int(port)))
        lines = [f"GET {urlsplit(url).path} HTTP/1.1", f"Host: {hub.authority}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            data = self.sock.recv(4096)
            assert data, f"connection closed before the headers: {raw!r}"
            raw += data
        head, self.body = raw.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}

    def read_to_end(self) -> bytes:
        """Read until the hub closes the connection (or the whole body arrived)."""
        try:
            while len(self.body) < int(self.headers["content-length"]):
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                self.body += data
        finally:
            self.sock.close()
        return self.body


def _stopped_mid_transfer(
    hub: HubEnv, agency: AgencyKeys, end_approval: Callable[[str], None], code: str
) -> str:
    """Fetch slowly, end the approval after the headers, read on; returns the delivery URL."""
    rid, delivery = _fulfilled(hub, agency)
    path = hub.data_dir / "deliveries" / (delivery["url"].rsplit("/", 1)[-1] + ".age")
    on_disk = path.read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == delivery["sha256"]
    since = hub.last_seq()

    fetch = SlowFetch(hub, agency, delivery["url"])
    assert fetch.status == 200, fetch.body[:200]
    assert fetch.headers["content-type"] == "application/vnd.camhub.delivery+age"
    assert int(fetch.headers["content-length"]) == delivery["bytes"] == len(on_disk)
    end_approval(rid)  # while the hub waits for the slow client to take more
    body = fetch.read_to_end()

    # A short body: the transfer stopped at a chunk boundary, at least one whole chunk short.
    assert len(body) <= delivery["bytes"] - CHUNK, (len(body), delivery["bytes"])
    assert on_disk.startswith(body)
    assert body.startswith(b"age-encryption.org/v1\n")
    entries = hub.audit_entries(since)
    types = [e["type"] for e in entries]
    started = [e for e in entries if e["type"] == "egress.delivery"]
    assert len(started) == 1 and started[0]["data"]["request_id"] == rid, types
    stopped = [e for e in entries if e["type"] == "egress.delivery.stopped"]
    assert len(stopped) == 1, types
    assert stopped[0]["data"] == {"delivery_id": started[0]["data"]["delivery_id"], "code": code}
    assert stopped[0]["actor"] == f"agency:{agency.keyid}"
    assert types.index("egress.delivery") < types.index("egress.delivery.stopped")
    return str(delivery["url"])


def test_revoke_stops_a_delivery_in_flight(hub: HubEnv, tmp_path: Path) -> None:
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Revoked PD")

    def revoke(rid: str) -> None:
        assert hub.decide({"decision": "revoke", "request_id": rid}).status == 201

    url = _stopped_mid_transfer(hub, agency, revoke, "grant_revoked")
    _refused(hub, agency, url, 403, "grant_revoked")


def test_expiry_stops_a_delivery_in_flight(hub: HubEnv, tmp_path: Path) -> None:
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Expiring PD")
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None

    def expire(rid: str) -> None:
        # The approval's not_after is an hour away; the hub's clock jumps two hours.
        consent.now = lambda: time.time() + 7200

    try:
        _stopped_mid_transfer(hub, agency, expire, "grant_expired")
    finally:
        consent.now = time.time


def test_a_fetch_after_the_grant_ran_out_on_the_monotonic_clock(hub: HubEnv, tmp_path: Path) -> None:
    # PROTOCOL §6: an approval's end also runs on the monotonic clock, so a wall clock set back (here:
    # the monotonic clock two hours on, the wall clock where it was) does not keep it open.
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Monotonic PD")
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    _, delivery = _fulfilled(hub, agency)
    real = consent.deadlines.monotonic
    consent.deadlines.monotonic = lambda: real() + 7200
    try:
        _refused(hub, agency, delivery["url"], 403, "grant_expired")
    finally:
        consent.deadlines.monotonic = real


def test_the_monotonic_clock_alone_stops_a_delivery_in_flight(hub: HubEnv, tmp_path: Path) -> None:
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Monotonic PD 2")
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    real = consent.deadlines.monotonic

    def run_out(rid: str) -> None:
        consent.deadlines.monotonic = lambda: real() + 7200

    try:
        _stopped_mid_transfer(hub, agency, run_out, "grant_expired")
    finally:
        consent.deadlines.monotonic = real


def test_removing_the_agency_stops_a_delivery_in_flight(hub: HubEnv, tmp_path: Path) -> None:
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Removed PD")

    def remove(rid: str) -> None:
        assert hub.decide({"decision": "remove-agency", "subject": {"keyid": agency.keyid}}).status == 201

    url = _stopped_mid_transfer(hub, agency, remove, "not_permitted")
    _refused(hub, agency, url, 401, "unknown_key")


def test_a_delivery_whose_footage_aged_out_is_not_found(hub: HubEnv, tmp_path: Path) -> None:
    # PROTOCOL §3.2: a delivery ages like its footage. Once the camera's max age has passed, the
    # retention pass deletes the file and keeps the row; a fetch is then 404 `not_found` (as an id
    # that never existed), not the gate's 403, and nothing leaves.
    agency = new_agency(tmp_path / "pd")
    hub.add_agency(agency, "Aged PD")
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    _, delivery = _fulfilled(hub, agency)
    path = hub.data_dir / "deliveries" / (delivery["url"].rsplit("/", 1)[-1] + ".age")
    consent.now = lambda: time.time() + 60 * 86400  # past the default 30-day max age
    try:
        assert hub.hub.call(lambda services: services.consent.expire_copies()) >= 1
    finally:
        consent.now = time.time
    assert not path.exists()
    _refused(hub, agency, delivery["url"], 404, "not_found")


def test_a_clip_carries_sound_only_when_the_grant_says_so(hub: HubEnv) -> None:
    # PROTOCOL §3 scope.audio: the build cuts the camera's sound only under a grant that allows it;
    # delivery.built says what left with the video (tests/consent/test_audio_consent.py probes the
    # clips themselves).
    codecs = []
    for audio in (True, False, None):  # None: scope.audio left out, as by a client from before it (= false)
        since = hub.last_seq()
        start, end = hub.t0 + 10, hub.t0 + 20
        rid, sha = hub.submit(start, end)
        r = hub.decide(hub.approval(rid, sha, start, end, audio=audio))
        assert r.status == 201, r.body
        hub.wait_status(rid, "fulfilled")
        (built,) = [e for e in hub.audit_entries(since) if e["type"] == "delivery.built"]
        codecs.append(built["data"]["audio_codec"])
    assert codecs == ["aac", None, None]


def _refused(hub: HubEnv, agency: AgencyKeys, url: str, status: int, code: str) -> None:
    """The next fetch: the status and code, its audit entry, a JSON error body, no egress."""
    since = hub.last_seq()
    r = hub.signed("GET", urlsplit(url).path, agency=agency)
    assert (r.status, r.is_json_error, r.json()["error"]) == (status, True, code), r.body[:200]
    new = hub.audit_entries(since)
    assert [e for e in new if e["type"] == "request.rejected" and e["data"]["code"] == code], new
    assert not [e for e in new if e["type"].startswith("egress.")], new
