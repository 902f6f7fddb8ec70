"""A real hub daemon with real recorded footage, an enrolled owner key and a trusted agency.

Footage: the daemon does not run the recorder in these tests, so real H.264 (PyAV/libx264) is cut into
segments and indexed in the daemon's data dir by `hub.record.segmenter.Segmenter` (the recorder's own
public writer) before the daemon starts; deliveries then read it through `hub.record.clip`.

Everything else goes over HTTP the way independent clients do: the owner through
`hub.consent.owner_client`, the agency through `hub.agency_client` and raw RFC 9421 signing for the
negative cases. Audit entries are read straight from the daemon's SQLite file (WAL allows a
concurrent reader), which only tests do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import httpsig, jws, rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub import config as config_mod
from hub import datadir
from hub.agency_client import Agency
from hub.agency_client import keygen as agency_keygen
from hub.consent import owner_client
from hub.ingest.rtsp import FileSource
from hub.ingest.source import MediaPacket, SourceEnded
from hub.record.segmenter import Segmenter
from hub.store import Store
from tests.conftest import DaemonProcess, free_port, start_daemon, write_config
from tests.consent.thread_hub import ThreadHub
from tests.record.media import make_h264, read_packets

CAMERA = "front-door"
FPS = 15
FOOTAGE_S = 90
SEGMENT_S = 4.0
DECISION_TYP = "camhub-decision+jws"


def _h264_aac(path: Path, seconds: int) -> Path:
    """`seconds` of H.264 (keyframe every 1 s, no B-frames) with a 440 Hz AAC tone beside it."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-bf", "0", "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", "32k", "-ac", "1", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


async def _read_all(path: Path) -> list[MediaPacket]:
    """Every packet of `path`, video and audio, as a camera with audio on would deliver them."""
    src = FileSource("test", path, realtime=False, audio=True)
    await src.open()
    out: list[MediaPacket] = []
    try:
        async for p in src.packets():
            out.append(p)
    except SourceEnded:
        pass  # the whole file was read
    finally:
        await src.close()
    return out


def record_footage(
    data_dir: Path,
    config_path: Path,
    t0: float,
    seconds: int = FOOTAGE_S,
    *,
    camera: str = CAMERA,
    source: Path | None = None,
    noise: bool = False,
    audio: bool = False,
) -> None:
    """Index `seconds` of real H.264 (keyframe every 1 s) for `camera` starting at wall time `t0`,
    looping `source` (default: a small 4 s clip; `noise`: about 1 MB a second, for deliveries large
    enough to be stopped mid-transfer; `audio`: `seconds` of H.264 with an AAC track recorded beside
    it, as a camera whose sound the owner turned on)."""
    cfg = config_mod.load(config_path)
    datadir.prepare(cfg)
    if audio:
        source = _h264_aac(data_dir.parent / "source.mp4", seconds)
    elif source is None:
        source = make_h264(data_dir.parent / "source.mp4", seconds=4.0, fps=FPS, gop=FPS, noise=noise)

    async def run() -> None:
        if audio:
            pkts = await _read_all(source)
        else:
            _, pkts = await read_packets(source, seconds * FPS)
        base = next(p for p in pkts if not p.audio)
        base_s = float(base.dts * base.time_base)
        # Audio is stamped on the video's clock (FileSource): both arrive by that clock.
        arrived: list[MediaPacket] = [
            dataclasses.replace(p, arrival=t0 + float(p.dts * p.time_base) - base_s) for p in pkts
        ]
        store = await Store.open(cfg.db_path)
        try:
            seg = Segmenter(camera, cfg.segments_dir, store, segment_s=SEGMENT_S)

            def work() -> None:
                for p in arrived:
                    assert p.params is not None
                    seg.write(p, p.params)
                seg.finish()

            await asyncio.to_thread(work)
        finally:
            await store.close()

    asyncio.run(run())


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json_error(self) -> bool:
        """An error body of the one shape the API answers with, and nothing else (no media)."""
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            return False
        doc = self.json()
        # docs/PROTOCOL.md: `{"error": "<code>", "detail": "…"}`, the detail a string for people.
        return isinstance(doc, dict) and set(doc) == {"error", "detail"} and isinstance(doc["detail"], str)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Response(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers.items()), exc.read())


@dataclass
class AgencyKeys:
    directory: Path
    key: Ed25519PrivateKey
    keyid: str
    sig_jwk: dict[str, str]
    recipient: str


def new_agency(directory: Path) -> AgencyKeys:
    info = agency_keygen(directory)
    key = owner_client.load_key(directory / "agency.key")
    return AgencyKeys(directory, key, info["keyid"], info["sig_jwk"], info["recipient"])


@dataclass
class HubEnv:
    """One running hub plus the keys of its owner and of one trusted agency."""

    tmp: Path
    config: Path
    data_dir: Path
    daemon: DaemonProcess | ThreadHub
    owner: Ed25519PrivateKey
    agency: AgencyKeys
    t0: float
    extra_daemons: list[DaemonProcess | ThreadHub] = field(default_factory=list)
    # How long a test waits for the hub to do something (build a delivery, log a line). A hub in the
    # test process has nothing to start; short, so a mutant that stops it fails fast (docs/MUTATION.md).
    deadline_s: float = 60.0

    @property
    def url(self) -> str:
        return self.daemon.url

    @property
    def hub_id(self) -> str:
        return self.daemon.hub_id

    @property
    def authority(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def owner_kid(self) -> str:
        return jwk_thumbprint(okp_public_jwk(self.owner.public_key()))

    def client(self, agency: AgencyKeys | None = None) -> Agency:
        return Agency((agency or self.agency).directory, self.url)

    # --- owner side ---------------------------------------------------------------------------

    def sign(self, fields: dict[str, Any], key: Ed25519PrivateKey | None = None, **overrides: Any) -> str:
        key = key or self.owner
        payload = {
            "v": 1,
            "hub": self.hub_id,
            **fields,
            "issued_at": rfc3339.format(int(time.time())),
            "jti": secrets.token_urlsafe(16),
            **overrides,
        }
        kid = jwk_thumbprint(okp_public_jwk(key.public_key()))
        return jws.sign(json.dumps(payload).encode(), key, kid, DECISION_TYP)

    def post_decision(self, compact: str) -> Response:
        return http(
            "POST", self.url + "/api/v1/decisions", compact.encode(), {"Content-Type": "application/jose"}
        )

    def decide(
        self, fields: dict[str, Any], key: Ed25519PrivateKey | None = None, **overrides: Any
    ) -> Response:
        return self.post_decision(self.sign(fields, key, **overrides))

    def add_agency(self, agency: AgencyKeys, name: str = "Agency") -> None:
        r = self.decide(
            {
                "decision": "add-agency",
                "subject": {"name": name, "sig_jwk": agency.sig_jwk, "recipient": agency.recipient},
            }
        )
        assert r.status == 201, r.body

    def approval(
        self, request_id: str, sha256: str, start: float, end: float, agency: AgencyKeys | None = None,
        cameras: list[str] | None = None, not_after: float | None = None, max_fetches: int = 3,
        audio: bool | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """An approval of a clip; `audio` None leaves `scope.audio` out (a client from before it)."""
        return {
            "decision": "approve",
            "request_id": request_id,
            "request_sha256": sha256,
            "recipient": (agency or self.agency).keyid,
            "scope": {
                "kind": "clip",
                "cameras": cameras or [CAMERA],
                "start": rfc3339.format(start),
                "end": rfc3339.format(end),
                "live_max_seconds": None,
                **({} if audio is None else {"audio": audio}),
            },
            "max_fetches": max_fetches,
            "not_after": rfc3339.format(not_after or time.time() + 3600),
        }

    # --- agency side --------------------------------------------------------------------------

    def request_body(self, start: float, end: float, /, **overrides: Any) -> bytes:
        doc: dict[str, Any] = {
            "hub": self.hub_id,
            "case_id": "2026-000123",
            "kind": "clip",
            "cameras": [CAMERA],
            "start": rfc3339.format(start),
            "end": rfc3339.format(end),
            "live_max_seconds": None,
            "reason": "Package theft reported at 18:10",
            "legal_basis": {"type": "consent", "reference": None},
            "contact": "Det. J. Rivera, +1-555-0100",
        }
        doc.update(overrides)
        return json.dumps(doc).encode()

    def signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        agency: AgencyKeys | None = None,
        content_type: str | None = None,
        key: Ed25519PrivateKey | None = None,
        extra_headers: dict[str, str] | None = None,
        mutate: Any = None,
        **sign_kwargs: Any,
    ) -> Response:
        """One RFC 9421 signed call; `mutate(headers)` may tamper with the headers after signing."""
        agency = agency or self.agency
        path_only, _, query = path.partition("?")
        headers: list[tuple[str, str]] = []
        if content_type is None and body:
            content_type = "application/json"
        if content_type:
            headers.append(("Content-Type", content_type))
        sign_kwargs.setdefault("created", int(time.time()))
        headers += httpsig.sign_request(
            method=method, authority=self.authority, path=path_only, query=query or None, headers=headers,
            body=body, private_key=key or agency.key, keyid=agency.keyid, scheme="http", **sign_kwargs,
        )  # fmt: skip
        hdrs = dict(headers)
        hdrs.update(extra_headers or {})
        if mutate is not None:
            mutate(hdrs)
        return http(method, self.url + path, body or None, hdrs)

    def submit(
        self, start: float, end: float, agency: AgencyKeys | None = None, **overrides: Any
    ) -> tuple[str, str]:
        """POST a request; returns (request id, body sha256)."""
        body = self.request_body(start, end, **overrides)
        r = self.signed("POST", "/api/agency/v1/requests", body, agency=agency)
        assert r.status == 202, r.body
        return r.json()["id"], hashlib.sha256(body).hexdigest()

    def poll(self, request_id: str, agency: AgencyKeys | None = None) -> Response:
        return self.signed("GET", f"/api/agency/v1/requests/{request_id}", agency=agency)

    def wait_status(self, request_id: str, status: str, timeout: float | None = None) -> dict[str, Any]:
        timeout = self.deadline_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            r = self.poll(request_id)
            last = r.json()
            if r.status == 200 and last["status"] == status:
                return last
            # A hub in this process logs a build that raised: no point waiting for it any longer.
            if (
                isinstance(self.daemon, ThreadHub)
                and f"delivery for request {request_id} camera" in self.daemon.log()
            ):
                raise AssertionError(f"a delivery build of {request_id} failed:\n{self.daemon.log()}")
            time.sleep(0.05)
        raise AssertionError(f"request {request_id} not {status} within {timeout} s: {last}")

    # --- audit --------------------------------------------------------------------------------

    def audit_entries(self, after_seq: int = -1) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute(
                "SELECT entry FROM audit_entries WHERE seq > ? ORDER BY seq", (after_seq,)
            ).fetchall()
        finally:
            conn.close()
        return [json.loads(r[0]) for r in rows]

    def decision_row(self, decision_id: str) -> dict[str, Any] | None:
        """The stored row of an accepted decision (the signed text verbatim, THREAT_MODEL's assets)."""
        return self.row("decisions", decision_id)

    def row(self, table: str, row_id: str) -> dict[str, Any] | None:
        """One stored row by id, read-only (`table` is the test's own constant, never input)."""
        conn = sqlite3.connect(f"file:{self.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
        finally:
            conn.close()
        return None if row is None else dict(row)

    def last_seq(self) -> int:
        entries = self.audit_entries()
        return entries[-1]["seq"] if entries else -1

    @property
    def hub(self) -> ThreadHub:
        """The in-process hub (`start_hub_env(..., in_process=True)`)."""
        assert isinstance(self.daemon, ThreadHub), "needs start_hub_env(..., in_process=True)"
        return self.daemon

    def restart(self) -> None:
        self.daemon.stop()
        log = self.tmp / f"daemon-{len(self.extra_daemons) + 1}.log"
        self.extra_daemons.append(self.daemon)
        self.daemon = (
            ThreadHub(self.config) if isinstance(self.daemon, ThreadHub) else start_daemon(self.config, log)
        )
        self.daemon.wait_ready()

    def stop(self) -> None:
        alive = self.daemon.alive if isinstance(self.daemon, ThreadHub) else self.daemon.proc.poll() is None
        if alive:
            self.daemon.stop()


def assert_refused(
    hub: HubEnv, r: Response, status: int, code: str, since: int, audit_type: str = "request.rejected"
) -> dict[str, Any]:
    """The refusal rule of STYLE.md: the status, the error code, its audit entry, and no media byte
    (a JSON error body and nothing else, and no egress entry since `since`)."""
    assert r.status == status, r.body
    assert r.is_json_error, (r.headers, r.body[:200])  # an error body and nothing else: no media
    assert r.json()["error"] == code, r.body
    assert isinstance(r.json()["detail"], str) and r.json()["detail"], r.body  # PROTOCOL: a human detail
    new = hub.audit_entries(since)
    entries = [e for e in new if e["type"] == audit_type and e["data"].get("code") == code]
    assert entries, f"no {audit_type} audit entry with code {code}: {new}"
    # Nothing left the box for it: no egress entry (every byte sent to an agency has one, §5).
    assert not [e for e in new if e["type"].startswith("egress.")], new
    return entries[-1]


def start_hub_env(
    tmp: Path,
    *,
    footage: bool = True,
    extra_config: str = "",
    in_process: bool = False,
    before_start: Callable[[Path, Path, float], None] | None = None,
    consent: str = "",
    hub: str = "",
    noise: bool = False,
    audio: bool = False,
) -> HubEnv:
    """Record footage, start the daemon, enrol an owner key with the pairing code, add one agency.

    `in_process`: the hub runs in a thread of the test process (`thread_hub.ThreadHub`) instead of
    `camhub run`. `before_start(data_dir, config, t0)` may index more footage before it starts.
    `consent`/`hub` are extra lines for those config sections.
    """
    data_dir = tmp / "data"
    # Tests here look at the audit entry of each single refusal: write every one at once instead of
    # counting repeats per minute (tests/security/test_floods.py checks the counting itself).
    config = write_config(
        tmp / "camhub.toml", data_dir, free_port(), extra_config,
        consent="rejection_audit_window_s = 0\n" + consent, hub=hub,
    )  # fmt: skip
    t0 = float(int(time.time()) - FOOTAGE_S - 60)
    if footage:
        record_footage(data_dir, config, t0, noise=noise, audio=audio)
    if before_start is not None:
        before_start(data_dir, config, t0)
    daemon = ThreadHub(config) if in_process else start_daemon(config, tmp / "daemon.log")
    daemon.wait_ready()
    assert daemon.pairing_code is not None, daemon.log()
    owner = Ed25519PrivateKey.generate()
    owner_client.enroll_first(daemon.url, owner, daemon.pairing_code, "test-owner")
    env = HubEnv(
        tmp,
        config,
        data_dir,
        daemon,
        owner,
        new_agency(tmp / "agency"),
        t0,
        deadline_s=10.0 if in_process else 60.0,
    )
    env.add_agency(env.agency, "Test PD")
    return env
