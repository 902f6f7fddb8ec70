"""The egress gate (PROTOCOL.md §4): may these bytes leave the box, to this recipient, right now?

`check()` is the one function every path that sends footage, stills, thumbnails or live media to
anyone other than an authenticated owner session on the LAN calls **at the moment of sending**. It
re-reads the stored, verified owner approval (the `grants` row written only after the owner's JWS
verified, see `decisions.py`) and refuses unless all of these hold at that instant:

- the recipient is an agency the owner added and has not removed;
- a grant for exactly that recipient exists, of the same kind (`clip` / `live`);
- the grant is not revoked (owner `revoke`, `remove-agency`, or `revoke-key` of the approving key),
  and the owner key that approved it is still enrolled and unrevoked;
- `not_after` is later than now, and for a livestream whose window opened (its first connection),
  fewer than `live_max_seconds` have passed since: reconnecting does not buy more time; once armed,
  these ends also run on the monotonic clock and, once reached, are recorded (`Deadlines`), so a
  wall clock set back never re-opens a grant;
- the camera is one of the grant's cameras and, for clips, [start, end] lies inside the grant's range;
- for a delivery fetch, the delivery belongs to that grant and fewer than `max_fetches` fetches were
  taken (the fetch is counted in the same transaction, so two parallel fetches cannot both take the
  last one).

The check runs as one transaction on the store's single DB thread, so it cannot interleave with a
revoke. There is no configuration that turns it off and no caller-supplied "trusted" flag.

Every path that sends bytes off the box, and how it reaches the gate:

| path | what leaves | guard |
|---|---|---|
| `GET /api/agency/v1/deliveries/{id}` (`hub/api/agency.py` → `deliveries.open_for_fetch`) | age-encrypted clip delivery | RFC 9421 agency signature, then `gate.check(kind="clip", delivery_id=…, take_fetch=True)` before the first byte and `take_fetch=False` again between chunks, so a revoke stops a transfer in flight |
| `POST /api/agency/v1/requests`, `GET /api/agency/v1/requests/{id}` | request status and delivery URLs only, never media | RFC 9421 agency signature |
| `GET /api/v1/hub`, `POST /api/v1/owner/enroll`, `POST /api/v1/decisions`, `POST /api/v1/owner/clock` | hub identity, ids, error codes; no media | public / pairing code / owner JWS |
| `GET /api/v1/audit/*` | checkpoints and Merkle proofs; no media | owner session (`hub/api/owner.py`) |
| owner web UI media (`/api/v1/owner/segments/{id}.mp4`, `/api/v1/owner/events/{id}.jpg`, `hub/api/owner_ui.py`) | the owner's own footage to the owner | owner session on the LAN (`require_owner`), which §4 exempts from the gate |
| `GET /api/v1/owner/segments/{id}/h264.mp4` (`hub/api/owner_ui.py`, `hub/record/transcode.py`) | the owner's own H.265 footage re-encoded as H.264, for a browser that cannot play H.265; never used for deliveries (they stay stream copies) | owner session on the LAN (`require_owner`), exempt from the gate by §4 |
| `POST /api/agency/v1/live/{grant_id}` (WHEP, `hub/api/live.py`) | live camera media over WebRTC; the camera's sound only under the grant's signed `scope.audio` (otherwise no audio track exists and the audio m-line is inactive), sent by a track that asks the session's check before every packet and ends with it | RFC 9421 agency signature, then `gate.check(kind="live")` before answering the offer; the session's watchdog calls `gate.check` again every ≤ 0.5 s and at once on `ConsentService.grant_listeners` (revoke, revoke-key, remove-agency), and ends the peer connection when it refuses |
| `DELETE /api/agency/v1/live/{grant_id}[/{session_id}]` | nothing (ends a session) | RFC 9421 agency signature |
| `POST /api/v1/owner/cameras/{camera_id}/whep` (`hub/api/live.py`) | the owner's own live view | owner session on the LAN (`require_owner`), exempt from the gate by §4 |
| `POST /api/v1/cameras/{camera_id}/whip` (`hub/ingest/whip.py`) | nothing leaves: the camera sends media in | the camera's bearer token |
| mDNS advertisement (`hub/discovery.py`) | hub name and hub_id | no media |
| relay: `GET {public_url}/hubs/{hub_id}/api/agency/v1/deliveries/{id}` (`hub/uplink/calls.py` → `deliveries.open_for_fetch`, `hub/uplink/link.py` streams it over NATS) | the same age-encrypted delivery, through the relay | RFC 9421 agency signature verified by the hub against its own `[relay] public_url`, then `gate.check(kind="clip", delivery_id=…, take_fetch=True)` before the first byte and again between 1 MiB chunks (`deliveries.stream`); a chunk leaves only against the relay's credit, at most 4 MiB ahead |
| relay: `POST {public_url}/hubs/{hub_id}/api/agency/v1/live/{grant_id}` (`hub/uplink/calls.py` → `live.open_agency_live`) | live camera media over WebRTC, signalled through the relay | as the LAN WHEP row: agency signature (against `public_url`), `gate.check(kind="live")`, the session watchdog |
| relay: polls, decisions, `GET …/api/v1/hub`, queued requests (`hub/uplink/calls.py`) | status, ids, delivery URLs, error codes; no media | agency signature / owner JWS / public |
| relay registration (`hub/uplink/link.py`, KV `camhub_hubs`) | hub_id, public key, name, `respond_by_s` | no media |
| Home Assistant over MQTT (`hub/notify/mqtt.py`, PROTOCOL §8.4) | discovery configs, `online`/`offline`, `ON`/`OFF`, a pending count, `{"event_type"[, "camera"]}`; never snapshots or thumbnails | no media: `hub/notify/` imports nothing that reads footage or stills (`tests/notify/test_no_media.py`); the broker and credentials are the owner's `[mqtt]` |
| Web Push (`hub/notify/push.py`, PROTOCOL §8.3) | `{"v","event","title","body","url"}` encrypted (RFC 8291) to a browser the owner subscribed; `body` empty unless the owner turned details on | no media (as the MQTT row); subscriptions only through the owner session + CSRF |

Privacy masks (§4.1): what leaves for an agency is painted with `privacy_masks()` — the delivery build
(`deliveries._build_one` → `hub.egress.privacy.redact_clip`) and every agency WHEP session
(`hub/api/live.py` → `LiveSession(masks=…)` → `privacy.RedactingTrack`, masks read per frame); the
owner's own views only with `owner_views`. `tests/egress/test_privacy_delivery.py` and
`tests/egress/test_privacy_live.py` decode what an agency received and check the masked area is black.

`tests/consent/test_api_route_guards.py` enumerates the aiohttp routes against the table in
`hub/api/guards.py` and fails if a route that can return media is behind neither the owner session
nor this gate; `tests/relay/test_relay_guards.py` does the same for the paths a relay may reach
(`guards.RELAYED`), and sends the hub, as a hostile relay would, calls to every other route.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from camhub_protocol.errors import ConsentError
from hub.config import Config, Polygon
from hub.store import Store, transaction
from hub.store import consent as q

Masks = tuple[Polygon, ...]

# Float tolerance for range containment (times are REAL seconds; RFC 3339 carries milliseconds).
_EPS = 1e-3


def privacy_masks(config: Config, camera: str, *, audience: str = "agency") -> Masks:
    """What must be painted black on `camera`'s picture before it leaves for `audience` (PROTOCOL
    §4.1): the camera's masks for an agency (deliveries and livestreams), and for the owner's own
    views only when the owner turned `owner_views` on. `config` is the effective config (camhub.toml
    plus the owner's settings), read at the moment of sending, so a change applies at once."""
    cam = config.camera(camera)
    if cam is None:
        return ()
    if audience == "owner" and not cam.privacy.owner_views:
        return ()
    return cam.privacy.masks


class EgressDenied(ConsentError):
    """The gate refused: nothing may be sent."""

    status = 403


def _deny(code: str, detail: str) -> EgressDenied:
    return EgressDenied(code, detail, 403)


def _covers(grant: q.GrantRecord, camera: str, start: float | None, end: float | None, kind: str) -> bool:
    if grant.kind != kind or camera not in grant.cameras:
        return False
    if kind == "clip":
        if start is None or end is None or grant.start_at is None or grant.end_at is None:
            return False
        return grant.start_at - _EPS <= start and end <= grant.end_at + _EPS and start <= end
    return True


class Deadlines:
    """When each grant this boot has seen ends, on the monotonic clock (PROTOCOL §6, issue 12).

    A grant's end is stored as wall-clock time (`not_after`, the live window), and a wall clock set
    back (a bad NTP answer, an owner fiddling with the box) would re-open a grant that had ended.
    So once a grant is *armed* — approved in this boot, found in force at start, or seen by the gate
    — its end is also kept as a monotonic deadline, which only ever moves earlier (the live window
    opening, or the wall clock jumping forward). The gate refuses once either clock says it is over,
    and records that (`grants.ended_at`) so no later clock, and no restart, re-opens it. A jump
    forward therefore ends grants early: failing closed, the owner can approve again.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._at: dict[str, float] = {}

    def arm(self, grant: q.GrantRecord, now: float) -> float:
        """Arm (or tighten) `grant`'s monotonic deadline from the wall clock `now`; returns it."""
        mono = self.monotonic()
        deadline = mono + (grant.ends_at - now)
        armed = self._at.get(grant.id)
        if armed is None or deadline < armed:
            self._at[grant.id] = deadline
            armed = deadline
        return armed

    def over(self, grant: q.GrantRecord, now: float) -> bool:
        """Whether `grant`'s time has run out by either clock (arming it if it was not)."""
        if grant.ended_at is not None:
            return True
        return grant.ends_at <= now or self.arm(grant, now) <= self.monotonic()

    def remaining(self, grant: q.GrantRecord, now: float) -> float:
        """Seconds `grant` has left by whichever clock says less (arming it if it was not)."""
        return min(grant.ends_at - now, self.arm(grant, now) - self.monotonic())

    def forget(self, grant_id: str) -> None:
        self._at.pop(grant_id, None)

    def __len__(self) -> int:
        return len(self._at)


def _check(conn: sqlite3.Connection, *judge_args: Any) -> q.GrantRecord:
    """`_judge` inside one transaction. Refusals that write nothing raise from inside; a grant found
    over is recorded (`end_grant`) and its refusal raised after the commit, so the record survives."""
    with transaction(conn):
        result = _judge(conn, *judge_args)
    if isinstance(result, EgressDenied):
        raise result
    return result


def _judge(
    conn: sqlite3.Connection,
    recipient: str,
    camera: str,
    start: float | None,
    end: float | None,
    kind: str,
    delivery_id: str | None,
    grant_id: str | None,
    take_fetch: bool,
    start_live: bool,
    now: float,
    deadlines: Deadlines,
) -> q.GrantRecord | EgressDenied:
    agency = q.agency(conn, recipient)
    if agency is None or not agency.active:
        raise _deny("not_permitted", "the recipient is not a trusted agency")
    if delivery_id is not None:
        delivery = q.delivery(conn, delivery_id)
        if delivery is None or delivery.camera_id != camera:
            raise _deny("not_permitted", "no such delivery for this camera")
        found = q.grant(conn, delivery.grant_id)
        candidates = [found] if found is not None else []
    elif grant_id is not None:
        # A URL naming its grant is judged by that grant alone: another live grant of the same
        # agency must neither allow it nor, expired, refuse it.
        found = q.grant(conn, grant_id)
        candidates = [found] if found is not None else []
    else:
        candidates = q.live_grants_for(conn, recipient)
    candidates = [g for g in candidates if g.recipient == recipient and _covers(g, camera, start, end, kind)]
    if not candidates:
        raise _deny("not_permitted", "no owner approval covers this recipient, camera and range")
    refusal: EgressDenied | None = None
    for grant in candidates:
        approver = q.owner_key(conn, grant.approved_by)
        if grant.revoked_at is not None or approver is None or approver.revoked_at is not None:
            refusal = refusal or _deny("grant_revoked", "the owner revoked this approval")
            continue
        if deadlines.over(grant, now):
            if grant.ended_at is None:
                q.end_grant(conn, grant.id, now)
            deadlines.forget(grant.id)
            refusal = refusal or _deny("grant_expired", "the approval's time is over")
            continue
        if delivery_id is not None and take_fetch:
            if q.count_fetch(conn, delivery_id, grant.max_fetches) is None:
                raise _deny("fetch_limit_reached", f"this delivery was fetched {grant.max_fetches} times")
        if start_live and kind == "live" and grant.live_started_at is None:
            q.start_live_window(conn, grant.id, now)
            opened = q.grant(conn, grant.id) or grant
            deadlines.arm(opened, now)  # the window's end, on the monotonic clock from now on
            return opened
        return grant
    assert refusal is not None
    return refusal


async def check(
    store: Store,
    recipient: str,
    camera: str,
    start: float | None,
    end: float | None,
    *,
    kind: str,
    now: float,
    delivery_id: str | None = None,
    grant_id: str | None = None,
    take_fetch: bool = False,
    start_live: bool = False,
    deadlines: Deadlines | None = None,
) -> q.GrantRecord:
    """Return the grant that allows sending `camera` [start, end] (`kind` clip or live) to the agency
    `recipient` now, or raise `EgressDenied` (403: `not_permitted`, `grant_revoked`,
    `grant_expired`, `fetch_limit_reached`). With `delivery_id` and `take_fetch`, one fetch of that
    delivery is counted atomically with the check. With `grant_id`, only that grant is considered;
    with `start_live`, a livestream grant's `live_max_seconds` window opens now if it has not yet.
    `deadlines` are the consent service's monotonic grant deadlines (`Deadlines`); without them only
    the wall clock and `ended_at` judge a grant's end."""
    if kind not in ("clip", "live"):
        raise _deny("not_permitted", f"unknown egress kind {kind!r}")
    return await store.run(
        _check, recipient, camera, start, end, kind, delivery_id, grant_id, take_fetch, start_live, now,
        deadlines if deadlines is not None else Deadlines(),
    )  # fmt: skip
