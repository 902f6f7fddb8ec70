"""The consent service: what the daemon starts for PROTOCOL.md §1-§6 and every consent route uses.

It owns the audit log, the clock guard, the pairing guard, the delivery builder and two supervised
tasks: the hourly checkpoint (§5 "at least hourly") and the pruning of seen nonces (§2, 600 s). The
domain logic lives in the modules named after the protocol piece they implement — `owners`,
`agencies`, `requests`, `decisions`, `gate`, `deliveries` — which take this service as context.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camhub_protocol import rfc3339, sealed_bodies
from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import HubKey
from camhub_protocol.limits import TokenBuckets
from hub.config import Config
from hub.consent.audit import AuditLog
from hub.consent.clock import ClockGuard
from hub.consent.gate import Deadlines
from hub.consent.pairing import PairingGuard
from hub.consent.rejections import RejectionCounter
from hub.record.sealed import AtRest
from hub.store import Store
from hub.store import consent as q
from hub.supervisor import Supervisor

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 3600.0
NONCE_WINDOW_S = 600.0
NONCE_PRUNE_INTERVAL_S = 60.0
# Audit `clock.unsynced` at most this often: a flood of refused requests must not flood the log.
CLOCK_AUDIT_INTERVAL_S = 60.0


@dataclass
class ConsentService:
    config: Config
    store: Store
    hub_key: HubKey
    audit: AuditLog
    clock: ClockGuard
    pairing: PairingGuard
    deliveries_dir: Path
    now: Callable[[], float] = time.time
    # How footage is stored (hub/record/sealed.py): deliveries open sealed segments through it.
    at_rest: AtRest = field(default_factory=AtRest)
    # Called (synchronously, on the event loop) after anything that can end a grant: revoke,
    # revoke-key, remove-agency. Live egress (WHEP) subscribes to cut streams at once (§2.4).
    grant_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Called (synchronously, on the event loop, never awaited) with (type, actor, data) after each
    # audit entry is appended: the owner's notifications (hub/notify/) listen here. A listener must
    # not block; one that raises is logged and the entry stands.
    audit_listeners: list[Callable[[str, str, dict[str, Any]], None]] = field(default_factory=list)
    # Latest holds (camera, start, end) for retention, refreshed after every consent write.
    _holds: list[tuple[str, float, float]] = field(default_factory=list)
    _refreshing: list[list[tuple[str, float, float]]] = field(default_factory=list)
    _last_clock_audit: float = 0.0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # One delivery build at a time: background work on a two-core box.
    build_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Refused calls nobody authenticated: audited once per route and reason per window, with a count.
    rejections: RejectionCounter | None = None
    # Monotonic deadlines of grants armed in this boot (gate.Deadlines, PROTOCOL §6).
    deadlines: Deadlines = field(default_factory=Deadlines)
    # New requests per trusted agency (`[consent] agency_requests_per_hour`), by keyid.
    agency_limits: TokenBuckets = field(default_factory=lambda: TokenBuckets(30 / 3600, 30))

    @property
    def hub_id(self) -> str:
        return self.hub_key.hub_id

    @functools.cached_property
    def age_identity(self) -> tuple[str, str]:
        """(identity, recipient) the hub opens sealed bodies with (PROTOCOL §7.6), from its key."""
        return sealed_bodies.hub_identity(self.hub_key.private_key)

    def identity_document(self, name: str) -> dict[str, Any]:
        """`GET /api/v1/hub` (PROTOCOL §1), with the age recipient bodies are sealed to (§7.6)."""
        recipient = self.age_identity[1]
        return {
            "hub_id": self.hub_id,
            "public_jwk": self.hub_key.public_jwk,
            "name": name,
            "protocol": 1,
            "recipient": recipient,
            "recipient_jws": sealed_bodies.recipient_statement(
                self.hub_key.private_key, self.hub_id, recipient
            ),
        }

    def open_sealed(self, body: bytes) -> bytes:
        return sealed_bodies.open_sealed(body, self.age_identity[0])

    @classmethod
    async def start(
        cls,
        config: Config,
        store: Store,
        hub_key: HubKey,
        supervisor: Supervisor,
        pairing: PairingGuard,
        at_rest: AtRest | None = None,
    ) -> ConsentService:
        """Open the audit log, record `hub.started`, and spawn the checkpoint and nonce tasks."""
        audit = await AuditLog.open(store, hub_key)
        deliveries_dir = config.hub.data_dir / "deliveries"
        await asyncio.to_thread(deliveries_dir.mkdir, mode=0o700, exist_ok=True)
        svc = cls(
            config=config,
            store=store,
            hub_key=hub_key,
            audit=audit,
            clock=ClockGuard(config.consent.trust_system_clock),
            pairing=pairing,
            deliveries_dir=deliveries_dir,
            at_rest=at_rest or AtRest(),
        )
        svc.rejections = RejectionCounter(svc.record, config.consent.rejection_audit_window_s)
        per_hour = config.consent.agency_requests_per_hour
        svc.agency_limits = TokenBuckets(per_hour / 3600, per_hour)
        if await store.run(q.clock_confirmed_on_boot, svc.clock.boot_id):
            svc.clock.confirm()  # an owner confirmed the time earlier during this boot (§6)
        await svc.record(
            "hub.started",
            "hub",
            {"hub_id": hub_key.hub_id, "clock_synced": svc.clock.synced(), "boot_id": svc.clock.boot_id},
        )
        await svc.audit.checkpoint()
        await svc.refresh_holds()
        now = svc.now()
        for grant in await store.run(q.unrevoked_grants):
            if grant.ended_at is None:
                svc.deadlines.arm(grant, now)  # from here on their ends run on this boot's monotonic clock
        supervisor.spawn("consent-checkpoint", svc._checkpoint_loop)
        supervisor.spawn("consent-nonce-prune", svc._prune_loop)
        supervisor.spawn("consent-rejection-counts", svc.rejections.run)
        from hub.consent import deliveries

        supervisor.spawn("consent-deliveries-resume", lambda: deliveries.resume(svc), restart=False)
        return svc

    async def record(self, type_: str, actor: str, data: dict[str, Any]) -> tuple[int, bytes]:
        """Append an audit entry (§5). Floats are not allowed in entries: pass times as RFC 3339."""
        appended = await self.audit.append(type_, actor, data)
        for listener in list(self.audit_listeners):
            try:
                listener(type_, actor, data)
            except Exception:
                log.exception("audit listener failed")
        return appended

    async def record_unauthenticated(
        self, type_: str, route: str, code: str, data: dict[str, Any], actor: str = "unauthenticated"
    ) -> None:
        """Audit a refused call that proved nothing about its sender (or a rate-limited one): counted
        per route and reason (hub/consent/rejections.py), so a flood costs the log a few entries a
        minute."""
        if self.rejections is None or self.rejections.window_s <= 0:
            await self.record(type_, actor, {**data, "code": code, "route": route, "count": 1})
            return
        await self.rejections.note(type_, route, code, data, actor)

    async def require_clock(self, actor: str, action: str) -> None:
        """§6: refuse with 503 `clock_unsynced` (and audit it) until the clock is known to be right."""
        if self.clock.synced():
            return
        now = time.monotonic()
        if now - self._last_clock_audit >= CLOCK_AUDIT_INTERVAL_S or self._last_clock_audit == 0.0:
            self._last_clock_audit = now
            await self.record("clock.unsynced", actor, {"refused": action})
        raise ConsentError("clock_unsynced", "the hub's clock is not known to be synchronised", 503)

    def spawn(self, coro: Any) -> None:
        """Run a one-off background job (a delivery build) whose failure is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("consent background job failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def stop(self) -> None:
        if self.rejections is not None:
            await self.rejections.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)

    def grants_changed(self) -> None:
        for listener in list(self.grant_listeners):
            try:
                listener()
            except Exception:
                log.exception("grant listener failed")

    async def refresh_holds(self) -> None:
        added: list[tuple[str, float, float]] = []  # add_holds() calls while the query is in flight
        self._refreshing.append(added)
        try:
            fresh = await self.store.run(q.holds, self.now())
        finally:
            self._refreshing = [a for a in self._refreshing if a is not added]  # by identity
        # A request inserted after the query ran is not in `fresh`: keep what it added.
        self._holds = fresh + [h for h in dict.fromkeys(added) if h not in fresh]

    def add_holds(self, cameras: Iterable[str], start: float, end: float) -> None:
        """Hold a new pending request's ranges at once (call after its row is committed). Until the
        next refresh the snapshot may keep ranges that have since expired: retention then keeps
        more, never less."""
        for camera in cameras:
            hold = (camera, start, end)
            if hold not in self._holds:
                self._holds.append(hold)
            for added in self._refreshing:
                added.append(hold)

    def holds(self) -> list[tuple[str, float, float]]:
        """(camera, start, end) that retention must keep: pending requests and unexpired approvals.

        Synchronous and cheap (a snapshot refreshed after every consent write), because retention
        calls it on the event loop just before deleting.
        """
        return list(self._holds)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            await self.audit.checkpoint()
            await self.refresh_holds()

    async def _prune_loop(self) -> None:
        while True:
            await self.store.run(q.prune_nonces, self.now() - NONCE_WINDOW_S)
            await self.store.run(q.prune_relay_refusals, self.now())
            await asyncio.sleep(NONCE_PRUNE_INTERVAL_S)

    def time_text(self, ts: float | None) -> str | None:
        return None if ts is None else rfc3339.format(ts)
