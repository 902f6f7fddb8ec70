"""Stateful property test: nothing leaves the box without a then-valid owner approval (issue 8).

Hypothesis drives random sequences of the things that happen to a hub — agencies added and removed,
signed agency requests, owner decisions (valid, narrower, forged, replayed, widened, expired, past
respond_by, signed by a revoked key), revokes, owner key rotation, clock jumps, restarts — against
the real consent code the daemon runs: `ConsentService.start` on a real SQLite `Store`, requests
through `requests.authenticate`/`submit` with real RFC 9421 signatures, decisions through
`decisions.submit` with real JWS, deliveries built by `deliveries.build_for_grant` from real recorded
footage, fetches through `deliveries.open_for_fetch`/`stream` and live attempts through
`hub.api.live._live_grant` (the route's own gate call).

The test keeps its own model of what the owner has validly approved, written from the protocol
(PROTOCOL.md §2-§4), not from the hub's tables. After every step it checks:

- every byte the gate let out to an agency belongs to a delivery whose grant the *model* says was a
  valid owner approval at that moment, for that recipient, camera and time range, with fetches left;
  the clip the delivery holds (its `delivery.built` entry) lies inside the approved range plus at most
  one GOP at each end (§2.3 keyframe cut), and the bytes sent hash to what its `egress.delivery`
  audit entry recorded for that fetch;
- every live stream the gate allowed is covered by a valid live approval of the model;
- every decision the model knows to be invalid was refused with the code §3 prescribes;
- the exported audit log verifies with the stand-alone verifier (`camhub_protocol.audit_verify`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from camhub_protocol import audit_verify, httpsig, jws, rfc3339
from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import HubKey, jwk_thumbprint, okp_public_jwk
from hub import config as config_mod
from hub.api.live import _live_grant
from hub.consent import decisions, deliveries, pairing
from hub.consent import requests as consent_requests
from hub.consent.owners import enroll_first
from hub.consent.service import ConsentService
from hub.store import Store
from hub.store import consent as q
from hub.supervisor import Supervisor
from tests.conftest import free_port, write_config
from tests.consent.flow_env import CAMERA, FOOTAGE_S, AgencyKeys, new_agency, record_footage

# A camera with footage and one without (an unknown camera must look like no footage, §2.2).
CAMERAS = (CAMERA, "garage")
GOP_S = 1.0  # record_footage puts a keyframe every second
EPS = 1e-3
AUTHORITY = "127.0.0.1:8080"

settings.register_profile(
    "camhub-ci",
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Template:
    """A data dir with 90 s of real H.264 indexed for CAMERA, and three agency identities."""

    root: Path
    t0: float
    agencies: list[AgencyKeys]


_TEMPLATE: Template | None = None
# Across all examples: how many sends and refusals the invariant saw (the test must exercise both).
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    global _TEMPLATE
    root = tmp_path_factory.mktemp("consent-template")
    config = write_config(root / "camhub.toml", root / "data", free_port())
    import time

    t0 = float(int(time.time()) - FOOTAGE_S - 60)
    record_footage(root / "data", config, t0)
    agencies = [new_agency(root / f"agency-{n}") for n in range(3)]
    _TEMPLATE = Template(root, t0, agencies)
    yield _TEMPLATE
    _TEMPLATE = None


@dataclass
class ModelRequest:
    id: str
    sha256: str
    agency: int
    kind: str
    cameras: tuple[str, ...]
    start: float | None
    end: float | None
    live_max_seconds: int | None
    respond_by: float
    state: str = "pending"  # pending, approved, declined, closed


@dataclass
class ModelApproval:
    """An approve decision the model holds valid when it was accepted."""

    id: str
    request: ModelRequest
    agency: int
    cameras: tuple[str, ...]
    start: float | None
    end: float | None
    not_after: float
    max_fetches: int
    approver: str  # owner kid
    revoked: bool = False
    fetches: dict[str, int] = field(default_factory=dict)


class Clock:
    """The consent service's `now`, so expiry and respond_by can be crossed in a step."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


class ConsentMachine(RuleBasedStateMachine):
    requests = Bundle("requests")
    compacts = Bundle("accepted_decisions")

    def __init__(self) -> None:
        super().__init__()
        assert _TEMPLATE is not None
        self.template = _TEMPLATE
        self.tmp = Path(tempfile.mkdtemp(prefix="camhub-prop-"))
        shutil.copytree(self.template.root / "data", self.tmp / "data")
        cfg_path = write_config(self.tmp / "camhub.toml", self.tmp / "data", free_port())
        self.config = config_mod.load(cfg_path)
        self.loop = asyncio.new_event_loop()
        import time

        self.clock = Clock(float(int(time.time())))
        self.svc: ConsentService | None = None
        self.store: Store | None = None
        self.supervisor: Supervisor | None = None
        self.agencies = self.template.agencies
        self.active_agencies: set[int] = set()
        self.owner_keys: dict[str, Ed25519PrivateKey] = {}  # kid -> key (enrolled, unrevoked)
        # Key lineage (issue 12): the key that enrolled each key (None: the pairing code), and the key
        # that added each trusted agency; revoking a key takes its descendants and their agencies.
        self.enrolled_by: dict[str, str | None] = {}
        self.agency_adder: dict[int, str] = {}
        self.revoked_keys: dict[str, Ed25519PrivateKey] = {}
        self.model_requests: dict[str, ModelRequest] = {}
        self.approvals: dict[str, ModelApproval] = {}  # decision id -> approval
        self.sent: list[tuple[int, str, str, bytes]] = []  # (agency, delivery id, sha256, bytes) this step
        self.lives: list[tuple[int, str, str]] = []  # (agency, grant id, camera) this step
        self.counts: dict[str, int] = {}
        self.run(self._start())

    # --- plumbing ----------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    async def _start(self) -> None:
        self.store = await Store.open(self.config.db_path)
        self.supervisor = Supervisor()
        hub_key, _ = HubKey.load_or_create(self.config.keys_dir)
        self.svc = await ConsentService.start(
            self.config, self.store, hub_key, self.supervisor, pairing.PairingGuard()
        )
        self.svc.now = self.clock

    async def _stop(self) -> None:
        assert self.svc is not None and self.store is not None and self.supervisor is not None
        await self.svc.stop()
        await self.supervisor.stop(3.0)
        await self.store.close()

    async def _settle(self) -> None:
        """Wait for background delivery builds, as an agency polling until `fulfilled` would."""
        assert self.svc is not None
        while self.svc._tasks:
            await asyncio.wait(list(self.svc._tasks), timeout=30)

    def teardown(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def hub_id(self) -> str:
        assert self.svc is not None
        return self.svc.hub_id

    def sign(self, key: Ed25519PrivateKey, fields: dict[str, Any], *, kid: str | None = None) -> str:
        payload = {
            "v": 1,
            "hub": self.hub_id,
            **fields,
            "issued_at": rfc3339.format(int(self.clock())),
            "jti": secrets.token_urlsafe(16),
        }
        kid = kid or jwk_thumbprint(okp_public_jwk(key.public_key()))
        return jws.sign(json.dumps(payload).encode(), key, kid, decisions.DECISION_TYP)

    def decide(self, compact: str) -> tuple[dict[str, Any] | None, str | None]:
        """Post a decision the way `POST /api/v1/decisions` does; returns (body, None) or (None, code)."""
        assert self.svc is not None
        try:
            out = self.run(decisions.submit(self.svc, compact.encode()))
        except ConsentError as exc:
            return None, exc.code
        self.run(self._settle())
        return out, None

    def owner(self) -> tuple[str, Ed25519PrivateKey]:
        # The newest unrevoked key signs, so approvals and agencies get signed by enrolled devices
        # and revoking one has something to take. Chosen by enrolment order, never by kid: kids are
        # random per run, and a choice that depends on them makes Hypothesis's replays diverge.
        kid = next(reversed(self.owner_keys))
        return kid, self.owner_keys[kid]

    # --- setup -------------------------------------------------------------------------------

    @initialize()
    def enrol_owner_and_first_agency(self) -> None:
        assert self.svc is not None and self.store is not None
        key = Ed25519PrivateKey.generate()
        code = self.run(self.store.run(pairing.issue))
        body = {"pairing_code": code, "public_jwk": okp_public_jwk(key.public_key()), "name": "phone"}
        out = self.run(enroll_first(self.svc, body, "127.0.0.1"))
        self.owner_keys[out["kid"]] = key
        self.enrolled_by[out["kid"]] = None
        self.add_agency(0)

    # --- agencies ----------------------------------------------------------------------------

    @rule(n=st.integers(0, 1))
    def add_agency(self, n: int) -> None:
        agency = self.agencies[n]
        kid, key = self.owner()
        subject = {"name": f"PD {n}", "sig_jwk": agency.sig_jwk, "recipient": agency.recipient}
        _out, code = self.decide(self.sign(key, {"decision": "add-agency", "subject": subject}))
        if n in self.active_agencies:
            assert code == "agency_exists", code
        else:
            assert code is None, code
            self.active_agencies.add(n)
            self.agency_adder[n] = kid

    @rule(n=st.integers(0, 1))
    def remove_agency(self, n: int) -> None:
        _, key = self.owner()
        subject = {"keyid": self.agencies[n].keyid}
        _out, code = self.decide(self.sign(key, {"decision": "remove-agency", "subject": subject}))
        if n not in self.active_agencies:
            assert code == "unknown_agency", code
            return
        assert code is None, code
        self._agency_removed(n)

    def _agency_removed(self, n: int) -> None:
        self.active_agencies.discard(n)
        for r in self.model_requests.values():
            if r.agency == n and r.state == "pending":
                r.state = "closed"
        for a in self.approvals.values():
            if a.agency == n:
                a.revoked = True

    # --- agency requests (§2.1) ---------------------------------------------------------------

    def _signed(self, n: int, method: str, path: str, body: bytes = b"") -> consent_requests.SignedMessage:
        agency = self.agencies[n]
        headers: list[tuple[str, str]] = [("Content-Type", "application/json")] if body else []
        headers += httpsig.sign_request(
            method=method, authority=AUTHORITY, path=path, query=None, headers=headers, body=body,
            private_key=agency.key, keyid=agency.keyid, created=int(self.clock()), scheme="http",
        )  # fmt: skip
        return consent_requests.SignedMessage(
            method, AUTHORITY, path, None, headers, body, "http", "127.0.0.1"
        )

    @rule(
        target=requests,
        n=st.integers(0, 2),
        cameras=st.sets(st.sampled_from(CAMERAS), min_size=1),
        start=st.integers(0, FOOTAGE_S - 2),
        length=st.integers(1, 40),
        live=st.booleans(),
    )
    def submit_request(self, n: int, cameras: set[str], start: int, length: int, live: bool) -> Any:
        assert self.svc is not None
        cams = tuple(sorted(cameras))
        doc: dict[str, Any] = {
            "hub": self.hub_id,
            "case_id": f"case-{start}",
            "kind": "live" if live else "clip",
            "cameras": list(cams),
            "start": None if live else rfc3339.format(self.template.t0 + start),
            "end": None if live else rfc3339.format(self.template.t0 + start + length),
            "live_max_seconds": length if live else None,
            "reason": "property test",
            "legal_basis": {"type": "consent", "reference": None},
            "contact": "Det. Test",
        }
        body = json.dumps(doc).encode()
        msg = self._signed(n, "POST", "/api/agency/v1/requests", body)
        try:
            verified = self.run(consent_requests.authenticate(self.svc, msg))
            out = self.run(consent_requests.submit(self.svc, msg, verified))
        except ConsentError as exc:
            # §2: only a trusted, unremoved agency's signature verifies.
            assert n not in self.active_agencies, exc
            assert exc.code in ("unknown_key", "signature_invalid") or exc.status == 401, exc
            return multiple()
        assert n in self.active_agencies, "a request from an agency the owner never added was accepted"
        rec = ModelRequest(
            out["id"], hashlib.sha256(body).hexdigest(), n, doc["kind"], cams,
            None if live else self.template.t0 + start, None if live else self.template.t0 + start + length,
            length if live else None, rfc3339.parse(out["respond_by"]),
        )  # fmt: skip
        self.model_requests[rec.id] = rec
        return rec

    # --- owner decisions (§3) ----------------------------------------------------------------

    def _approval_fields(self, r: ModelRequest, narrow: bool, not_after: float) -> dict[str, Any]:
        cams = list(r.cameras[:1]) if narrow else list(r.cameras)
        scope: dict[str, Any] = {"kind": r.kind, "cameras": cams}
        if r.kind == "clip":
            assert r.start is not None and r.end is not None
            start, end = r.start, r.end
            if narrow and end - start >= 2:
                start, end = start + 1, end - 1
            scope.update(start=rfc3339.format(start), end=rfc3339.format(end), live_max_seconds=None)
        else:
            assert r.live_max_seconds is not None
            live = max(1, r.live_max_seconds // 2) if narrow else r.live_max_seconds
            scope.update(start=None, end=None, live_max_seconds=live)
        return {
            "decision": "approve",
            "request_id": r.id,
            "request_sha256": r.sha256,
            "recipient": self.agencies[r.agency].keyid,
            "scope": scope,
            "max_fetches": 2,
            "not_after": rfc3339.format(not_after),
        }

    def _request_open(self, r: ModelRequest) -> bool:
        return r.state == "pending" and self.clock() < r.respond_by and r.agency in self.active_agencies

    @rule(
        target=compacts,
        r=requests,
        narrow=st.booleans(),
        lifetime=st.sampled_from([30.0, 3600.0, 10 * 86400.0]),
    )
    def approve(self, r: ModelRequest, narrow: bool, lifetime: float) -> Any:
        kid, key = self.owner()
        fields = self._approval_fields(r, narrow, self.clock() + lifetime)
        compact = self.sign(key, fields)
        out, code = self.decide(compact)
        if not self._request_open(r):
            assert code == "request_closed", code  # includes a request past respond_by (§3)
            return multiple()
        assert code is None, code
        scope = fields["scope"]
        r.state = "approved"
        self.approvals[out["decision_id"]] = ModelApproval(
            out["decision_id"], r, r.agency, tuple(scope["cameras"]),
            None if scope["start"] is None else rfc3339.parse(scope["start"]),
            None if scope["end"] is None else rfc3339.parse(scope["end"]),
            rfc3339.parse(fields["not_after"]), fields["max_fetches"], kid,
        )  # fmt: skip
        return compact

    @rule(
        target=requests,
        n=st.integers(0, 1),
        start=st.integers(0, FOOTAGE_S - 12),
        live=st.booleans(),
        narrow=st.booleans(),
    )
    def request_and_approve(self, n: int, start: int, live: bool, narrow: bool) -> Any:
        """The common happy path in one step, so short histories reach deliveries and live streams."""
        if n not in self.active_agencies:
            self.add_agency(n)
        r = self.submit_request(n, set(CAMERAS), start, 10, live)
        assert isinstance(r, ModelRequest)
        self.approve(r, narrow, 3600.0)
        return r

    @rule(r=requests)
    def approve_widened(self, r: ModelRequest) -> None:
        _, key = self.owner()
        fields = self._approval_fields(r, False, self.clock() + 3600)
        if r.kind == "clip":
            fields["scope"]["end"] = rfc3339.format((r.end or 0) + 30)
        else:
            fields["scope"]["cameras"] = sorted({*r.cameras, "attic"})
        out, code = self.decide(self.sign(key, fields))
        assert code in ("scope_exceeds_request", "request_closed"), (out, code)

    @rule(r=requests)
    def approve_expired(self, r: ModelRequest) -> None:
        _, key = self.owner()
        out, code = self.decide(self.sign(key, self._approval_fields(r, False, self.clock() - 1)))
        assert code in ("not_after_passed", "request_closed"), (out, code)

    @rule(r=requests)
    def approve_forged(self, r: ModelRequest) -> None:
        # Signed by a key the hub never enrolled, claiming an enrolled owner's kid.
        kid, _ = self.owner()
        forged = self.sign(
            Ed25519PrivateKey.generate(), self._approval_fields(r, False, self.clock() + 60), kid=kid
        )
        out, code = self.decide(forged)
        assert code == "jws_bad_signature", (out, code)
        # And a valid signature over a payload whose bytes were then changed.
        _, key = self.owner()
        h, p, s = self.sign(key, self._approval_fields(r, False, self.clock() + 60)).split(".")
        tampered = jws._b64url(jws.b64url_decode_strict(p).replace(b'"max_fetches": 2', b'"max_fetches": 9'))
        out, code = self.decide(f"{h}.{tampered}.{s}")
        assert code == "jws_bad_signature", (out, code)

    @rule(r=requests)
    def approve_with_revoked_key(self, r: ModelRequest) -> None:
        if not self.revoked_keys:
            return
        kid = next(iter(self.revoked_keys))
        out, code = self.decide(
            self.sign(self.revoked_keys[kid], self._approval_fields(r, False, self.clock() + 60))
        )
        assert code == "owner_key_revoked", (out, code)

    @rule(compact=compacts)
    def replay(self, compact: str) -> None:
        out, code = self.decide(compact)
        # The approving key may have been revoked since; otherwise the jti is spent (§3 step 5).
        assert code in ("jti_replayed", "owner_key_revoked"), (out, code)

    @rule(r=requests)
    def decline(self, r: ModelRequest) -> None:
        _, key = self.owner()
        fields = {
            "decision": "decline", "request_id": r.id, "request_sha256": r.sha256,
            "recipient": self.agencies[r.agency].keyid,
        }  # fmt: skip
        _out, code = self.decide(self.sign(key, fields))
        if not self._request_open(r):
            assert code == "request_closed", code
            return
        assert code is None, code
        r.state = "declined"

    @rule(r=requests)
    def revoke(self, r: ModelRequest) -> None:
        _, key = self.owner()
        _out, code = self.decide(self.sign(key, {"decision": "revoke", "request_id": r.id}))
        live = [a for a in self.approvals.values() if a.request.id == r.id and not a.revoked]
        if code is None:
            for a in live:
                a.revoked = True
        else:
            assert code == "no_active_grant", code
            # The hub's grant may already be revoked by remove-agency or revoke-key: model agrees.
            assert not live, "the owner could not revoke an approval the model holds active"

    # --- owner keys (§1, §3) ------------------------------------------------------------------

    @precondition(lambda self: self.counts.get("enrol", 0) < 2)
    @rule()
    def enrol_a_device(self) -> None:
        """An owner key enrols another (a new phone); from then on either may sign (`owner()` picks
        by kid). The new key can never revoke the key that enrolled it (lineage, issue 12)."""
        self.counts["enrol"] = self.counts.get("enrol", 0) + 1
        parent_kid, parent = self.owner()
        new = Ed25519PrivateKey.generate()
        subject = {"public_jwk": okp_public_jwk(new.public_key()), "name": "new phone"}
        _, code = self.decide(self.sign(parent, {"decision": "enroll-key", "subject": subject}))
        assert code is None, code
        new_kid = jwk_thumbprint(okp_public_jwk(new.public_key()))
        self.owner_keys[new_kid] = new
        self.enrolled_by[new_kid] = parent_kid
        _out, code = self.decide(self.sign(new, {"decision": "revoke-key", "subject": {"kid": parent_kid}}))
        assert code == "revoke_ancestor", code

    @precondition(lambda self: len(self.owner_keys) > 1 and self.counts.get("revoke_key", 0) < 2)
    @rule()
    def revoke_a_device(self) -> None:
        """The root revokes a device it (or its descendants) enrolled: the device, every key below it,
        the agencies they added and every approval they signed go, in one step (§3)."""
        self.counts["revoke_key"] = self.counts.get("revoke_key", 0) + 1
        root_kid = next(k for k in self.owner_keys if self.enrolled_by[k] is None)
        target = next(k for k in self.owner_keys if self.enrolled_by[k] is not None)
        _out, code = self.decide(
            self.sign(self.owner_keys[root_kid], {"decision": "revoke-key", "subject": {"kid": target}})
        )
        assert code is None, code
        gone = {target}
        while True:
            more = {k for k in self.owner_keys if self.enrolled_by[k] in gone} - gone
            if not more:
                break
            gone |= more
        for kid in gone:
            self.revoked_keys[kid] = self.owner_keys.pop(kid)
        for n, adder in list(self.agency_adder.items()):
            if adder in gone and n in self.active_agencies:
                self._agency_removed(n)
        for a in self.approvals.values():
            if a.approver in gone:
                a.revoked = True  # a lost phone's approvals do not outlive it (§3)

    @precondition(lambda self: len(self.owner_keys) == 1 and not self.counts.get("last_key"))
    @rule()
    def revoke_last_key_is_refused(self) -> None:
        self.counts["last_key"] = 1
        kid, key = self.owner()
        _out, code = self.decide(self.sign(key, {"decision": "revoke-key", "subject": {"kid": kid}}))
        assert code == "last_owner_key", code

    # --- time and restarts -------------------------------------------------------------------

    # Bounded per history, so that short histories still spend most steps on requests and egress.
    @precondition(lambda self: self.counts.get("clock", 0) < 3)
    @rule(seconds=st.sampled_from([1.0, 45.0, 2 * 3600.0, 8 * 86400.0]))
    def advance_clock(self, seconds: float) -> None:
        self.counts["clock"] = self.counts.get("clock", 0) + 1
        self.clock.t += seconds

    @precondition(lambda self: self.counts.get("restart", 0) < 2)
    @rule()
    def restart(self) -> None:
        self.counts["restart"] = self.counts.get("restart", 0) + 1
        self.run(self._settle())
        self.run(self._stop())
        self.run(self._start())

    # --- egress attempts (§4) ----------------------------------------------------------------

    def _fetch(self, n: int | None, pick: int) -> None:
        assert self.svc is not None
        svc = self.svc

        async def all_deliveries() -> list[q.DeliveryRecord]:
            out: list[q.DeliveryRecord] = []
            for r in self.model_requests.values():
                out += await svc.store.run(q.deliveries_for_request, r.id)
            return out

        found = self.run(all_deliveries())
        if not found:
            return
        record = found[pick % len(found)]
        if n is None:  # the agency that asked for it
            n = next(r.agency for r in self.model_requests.values() if r.id == record.request_id)
        keyid = self.agencies[n].keyid

        async def fetch_bytes() -> bytes:
            got, path = await deliveries.open_for_fetch(svc, keyid, record.id)
            chunks = [chunk async for chunk in deliveries.stream(svc, keyid, got, path)]
            return b"".join(chunks)

        try:
            data = self.run(fetch_bytes())
        except ConsentError as exc:
            SEEN[f"fetch:{exc.code}"] = SEEN.get(f"fetch:{exc.code}", 0) + 1
            return
        self.sent.append((n, record.id, hashlib.sha256(data).hexdigest(), data))

    @rule(n=st.integers(0, 2), pick=st.integers(0, 1_000))
    def fetch(self, n: int, pick: int) -> None:
        """Agency `n` (maybe the rogue one never added) fetches some delivery through the gate."""
        self._fetch(n, pick)

    @rule(pick=st.integers(0, 1_000))
    def fetch_as_recipient(self, pick: int) -> None:
        """The requesting agency fetches its delivery (maybe revoked, expired or used up by now)."""
        self._fetch(None, pick)

    def _live(self, n: int | None, pick: int, camera: str) -> None:
        assert self.svc is not None
        # Mostly live approvals (a clip grant's id must also be refused, so it is picked sometimes).
        live_ids = sorted(i for i, a in self.approvals.items() if a.request.kind == "live")
        ids = live_ids if live_ids and pick % 4 else sorted(self.approvals)
        grant_id = ids[pick % len(ids)] if ids else "no-such-grant"
        if n is None:
            n = self.approvals[grant_id].agency if grant_id in self.approvals else 0
        try:
            grant = self.run(_live_grant(self.svc, self.agencies[n].keyid, grant_id, camera))
        except ConsentError as exc:
            SEEN[f"live:{exc.code}"] = SEEN.get(f"live:{exc.code}", 0) + 1
            return
        SEEN["lives"] = SEEN.get("lives", 0) + 1
        self.lives.append((n, grant.id, camera))

    @rule(n=st.integers(0, 2), pick=st.integers(0, 1_000), camera=st.sampled_from(CAMERAS))
    def live(self, n: int, pick: int, camera: str) -> None:
        """Agency `n` asks for the live stream of some grant, as `POST /api/agency/v1/live/{id}` does."""
        self._live(n, pick, camera)

    @rule(pick=st.integers(0, 1_000), camera=st.sampled_from(CAMERAS))
    def live_as_recipient(self, pick: int, camera: str) -> None:
        self._live(None, pick, camera)

    # --- the invariant -----------------------------------------------------------------------

    def _valid(self, a: ModelApproval, n: int, camera: str) -> bool:
        return (
            not a.revoked
            and a.agency == n
            and n in self.active_agencies
            and a.approver in self.owner_keys
            and self.clock() < a.not_after
            and camera in a.cameras
        )

    @invariant()
    def nothing_leaves_without_a_valid_approval(self) -> None:
        if self.svc is None:
            return
        svc = self.svc
        entries = [json.loads(e) for _, e in self.run(svc.audit.entries(0, svc.audit.size))]
        for n, delivery_id, sha, data in self.sent:
            record = self.run(svc.store.run(q.delivery, delivery_id))
            assert record is not None
            a = self.approvals.get(record.grant_id)
            assert a is not None, (
                f"delivery {delivery_id} sent under a grant the owner never validly approved"
            )
            assert self._valid(a, n, record.camera_id), (
                f"delivery {delivery_id} sent without a valid approval"
            )
            assert a.start is not None and a.end is not None
            assert a.start - EPS <= record.start_at and record.end_at <= a.end + EPS
            a.fetches[delivery_id] = a.fetches.get(delivery_id, 0) + 1
            assert a.fetches[delivery_id] <= a.max_fetches, "more fetches than the owner allowed"
            built = [
                e
                for e in entries
                if e["type"] == "delivery.built" and e["data"]["delivery_id"] == delivery_id
            ]
            assert len(built) == 1, built
            clip_start = rfc3339.parse(built[0]["data"]["clip_start"])
            clip_end = rfc3339.parse(built[0]["data"]["clip_end"])
            # §2.3: cut at keyframes, at most one GOP beyond the approved range at each end.
            assert a.start - GOP_S - EPS <= clip_start and clip_end <= a.end + GOP_S + EPS, built[0]
            egress = [
                e for e in entries
                if e["type"] == "egress.delivery" and e["data"]["delivery_id"] == delivery_id
                and e["data"]["fetch"] == a.fetches[delivery_id]
            ]  # fmt: skip
            assert len(egress) == 1, f"fetch {a.fetches[delivery_id]} of {delivery_id} has no audit entry"
            assert egress[0]["actor"] == f"agency:{self.agencies[n].keyid}"
            assert egress[0]["data"]["sha256"] == sha and egress[0]["data"]["bytes"] == len(data)
            SEEN["sends"] = SEEN.get("sends", 0) + 1
        self.sent.clear()
        for n, grant_id, camera in self.lives:
            a = self.approvals.get(grant_id)
            assert a is not None and a.request.kind == "live"
            assert self._valid(a, n, camera), f"live stream of {camera} allowed without a valid approval"
        self.lives.clear()

    @invariant()
    def audit_chain_verifies(self) -> None:
        if self.svc is None:
            return
        svc = self.svc
        out = self.tmp / "audit-export"
        shutil.rmtree(out, ignore_errors=True)
        self.run(svc.audit.checkpoint())
        self.run(svc.audit.export(out))
        assert audit_verify.verify_export(out, svc.hub_key.public_jwk) == []  # raises on a bad entry


def test_consent_state_machine() -> None:
    """Random consent histories; the invariants above hold after every step."""
    ConsentMachine.TestCase.settings = settings.get_profile("camhub-ci")
    SEEN.clear()
    ConsentMachine.TestCase().runTest()
    print(SEEN)
    # The histories must include media actually let out and media refused, or nothing was tested.
    assert SEEN.get("sends", 0) > 0 and SEEN.get("lives", 0) > 0, SEEN
    assert any(k.startswith("fetch:") for k in SEEN), SEEN
