"""What happened to each agency request, read back from the audit log (PROTOCOL.md §5).

The owner's inbox shows, per request: what was asked, what the owner approved (the scope of the
signed decision itself, taken from the JWS kept in its `decision.accepted` entry, not the asked one),
the state it is in now, every download and every livestream session. All of it comes from audit
entries, the one record the owner can verify, rather than from the mutable tables: if the page says
"downloaded 2 of 3", there are two `egress.delivery` entries in the signed log to show for it.

Entries used, and what they say (data members as written by hub/consent):
    request.received     the request (cameras, start/end or live seconds, respond_by); actor agency:<keyid>
    decision.accepted    decision approve / decline / revoke for a request_id; `jws` holds the signed payload
    delivery.built       a clip prepared for a camera (clip_start/clip_end: the keyframe-cut range)
    egress.delivery      one download of a delivery: camera, fetch (1-based count), approval_id
    egress.live.start/end  a livestream session (session id, camera, seconds, reason)
    key.enrolled         owner key names (kid -> name), to say which device approved
    key.revoked          an owner key revoked, naming the keys, agencies and grants that went with it
    agency.removed       an agency removed: its open requests close, its grants are revoked
    owner.reset          `camhub owner reset` on the box: names every grant it revoked

States: `waiting` (no answer yet, before respond_by), `closed` (never answered, or the agency was
removed before an answer), `declined`, and for an approval `in force`, `expired`, `revoked`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.store import audit as audit_q

#: Entries whose types end approvals of many requests at once (no request_id in them).
_WIDE_TYPES = ("key.enrolled", "key.revoked", "agency.removed", "owner.reset")
#: How many matching entries one history read parses at most (newest kept).
MAX_ENTRIES = 20_000


def _unix(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _decision_payload(data: dict[str, Any]) -> dict[str, Any]:
    """The payload of a decision the hub already verified when it accepted it: a JWS (§3) or a
    passkey decision (§3.1, `"webauthn"`, whose `payload` is base64url JSON)."""
    signed = data.get("webauthn")
    if isinstance(signed, dict):
        return _b64_json(signed.get("payload"))
    compact = data.get("jws")
    if not isinstance(compact, str) or compact.count(".") != 2:
        return {}
    return _b64_json(compact.split(".")[1])


def _b64_json(part: Any) -> dict[str, Any]:
    if not isinstance(part, str):
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return payload if isinstance(payload, dict) else {}


def _at(entry: dict[str, Any]) -> dict[str, Any]:
    return {"seq": entry["seq"], "time": entry["time"]}


@dataclass
class _Approval:
    id: str
    at: dict[str, Any]
    kid: str
    scope: dict[str, Any]
    recipient: str
    not_after: str | None
    max_fetches: int | None
    ended: dict[str, Any] | None = None  # {"seq","time","how"}
    live_started: float | None = None

    def end(self, e: dict[str, Any], how: str, **more: Any) -> None:
        """Ended by entry `e` (a revoke of some kind), unless it had already run out by then."""
        if self.ended is not None:
            return
        ends, at = self.ends_at(), _unix(e.get("time"))
        if ends is not None and at is not None and ends <= at:
            return
        self.ended = {**_at(e), "how": how, **more}

    def ends_at(self) -> float | None:
        """`not_after`, or a livestream's window (opened at its first connection), if that is sooner."""
        end = _unix(self.not_after)
        live = self.scope.get("live_max_seconds")
        if self.live_started is not None and isinstance(live, int) and end is not None:
            return min(end, self.live_started + live)
        return end


@dataclass
class _Request:
    id: str
    asked: dict[str, Any] | None = None
    agency: str | None = None
    respond_by: float | None = None
    approvals: list[_Approval] = field(default_factory=list)
    declined: dict[str, Any] | None = None
    closed: dict[str, Any] | None = None
    prepared: list[dict[str, Any]] = field(default_factory=list)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)


def _agency_removed(requests: dict[str, _Request], keyid: Any, e: dict[str, Any]) -> None:
    for r in requests.values():
        if r.agency != keyid:
            continue
        for a in r.approvals:
            a.end(e, "agency removed")
        if not r.approvals and r.declined is None and r.closed is None:
            r.closed = {**_at(e), "how": "agency removed"}


def _fold(
    entries: list[dict[str, Any]], wanted: set[str] | None
) -> tuple[dict[str, _Request], dict[str, str]]:
    """One pass over the entries in log order; `wanted` None means every request."""
    requests: dict[str, _Request] = {}
    names: dict[str, str] = {}
    for e in entries:
        t, data = e.get("type"), e.get("data") or {}
        if t == "key.enrolled" and isinstance(data.get("kid"), str):
            names[data["kid"]] = str(data.get("name") or "")
            continue
        if t in ("key.revoked", "owner.reset"):
            # The entry names every grant it revoked (PROTOCOL §3 revoke-key, §1 owner reset); a
            # revoke-key also removes the agencies the revoked keys added, like agency.removed.
            named = {g for g in data.get("grants_revoked") or [] if isinstance(g, str)}
            kids = {k for k in data.get("keys_revoked") or [data.get("kid")] if isinstance(k, str)}
            how = "key revoked" if t == "key.revoked" else "owner reset on the box"
            for r in requests.values():
                for a in r.approvals:
                    if a.id in named or a.kid in kids:
                        a.end(e, how)
            for keyid in data.get("agencies_removed") or []:
                _agency_removed(requests, keyid, e)
            continue
        if t == "agency.removed":
            _agency_removed(requests, data.get("keyid"), e)
            continue
        rid = data.get("request_id")
        if not isinstance(rid, str) or (wanted is not None and rid not in wanted):
            continue
        r = requests.setdefault(rid, _Request(rid))
        if t == "request.received":
            actor = e.get("actor", "")
            r.agency = actor.removeprefix("agency:") if actor.startswith("agency:") else None
            r.respond_by = _unix(data.get("respond_by"))
            r.asked = {
                **_at(e),
                "kind": data.get("kind"),
                "cameras": data.get("cameras") or [],
                "start": data.get("start"),
                "end": data.get("end"),
                "live_max_seconds": data.get("live_max_seconds"),
                "case_id": data.get("case_id"),
                "respond_by": data.get("respond_by"),
            }
        elif t == "decision.accepted":
            kind = data.get("decision")
            kid = e.get("actor", "").removeprefix("owner:")
            if kind == "approve":
                p = _decision_payload(data)
                fetches = p.get("max_fetches")
                r.approvals.append(
                    _Approval(
                        id=str(data.get("decision_id")),
                        at=_at(e),
                        kid=kid,
                        scope=p.get("scope") if isinstance(p.get("scope"), dict) else {},
                        recipient=str(p.get("recipient") or ""),
                        not_after=p.get("not_after"),
                        max_fetches=fetches if isinstance(fetches, int) else None,
                    )
                )
            elif kind == "decline":
                r.declined = {**_at(e), "kid": kid}
            elif kind == "revoke":
                for a in r.approvals:
                    a.end(e, "revoked", kid=kid)
        elif t == "delivery.built":
            r.prepared.append(
                {
                    **_at(e),
                    "approval_id": data.get("approval_id"),
                    "camera": data.get("camera"),
                    "clip_start": data.get("clip_start"),
                    "clip_end": data.get("clip_end"),
                }
            )
        elif t == "egress.delivery":
            r.downloads.append(
                {
                    **_at(e),
                    "approval_id": data.get("approval_id"),
                    "delivery_id": data.get("delivery_id"),
                    "camera": data.get("camera"),
                    "fetch": data.get("fetch"),
                    "bytes": data.get("bytes"),
                }
            )
        elif t in ("egress.live.start", "egress.live.end"):
            sid = str(data.get("session"))
            s = r.live.setdefault(
                sid, {"session": sid, "camera": data.get("camera"), "start": None, "end": None}
            )
            if t == "egress.live.start":
                s["start"] = _at(e)
                started = _unix(e.get("time"))
                for a in r.approvals:
                    if a.id == data.get("grant_id") and a.live_started is None:
                        a.live_started = started
            else:
                s["end"] = {**_at(e), "seconds": data.get("seconds"), "reason": data.get("reason")}
    return requests, names


def _approval_json(a: _Approval, r: _Request, names: dict[str, str], now: float) -> dict[str, Any]:
    ends = a.ends_at()
    state = (
        "revoked" if a.ended is not None else ("expired" if ends is not None and ends <= now else "in force")
    )
    ended = a.ended
    if ended is None and state == "expired" and ends is not None:
        ended = {"seq": None, "time": None, "at": ends, "how": "expired"}
    max_fetches = a.max_fetches
    used: dict[str, int] = {}
    for d in r.downloads:
        if d["approval_id"] == a.id and isinstance(d["fetch"], int):
            used[str(d["camera"])] = max(used.get(str(d["camera"]), 0), d["fetch"])
    return {
        "id": a.id,
        "approved": a.at,
        "by": {"kid": a.kid, "name": names.get(a.kid)},
        "scope": a.scope,
        "not_after": a.not_after,
        "ends_at": ends,
        "max_fetches": max_fetches,
        "downloads_used": used,
        "state": state,
        "ended": ended,
    }


def _request_json(r: _Request, names: dict[str, str], now: float) -> dict[str, Any]:
    approvals = [_approval_json(a, r, names, now) for a in r.approvals]
    if approvals:
        state = approvals[-1]["state"]
    elif r.declined is not None:
        state = "declined"
    elif r.closed is not None or (r.respond_by is not None and r.respond_by <= now):
        state = "closed"
    else:
        state = "waiting"
    approval_max = {a.id: a.max_fetches for a in r.approvals}
    return {
        "request_id": r.id,
        "state": state,
        "asked": r.asked,
        "approvals": approvals,
        "declined": r.declined,
        "closed": r.closed,
        "prepared": r.prepared,
        "downloads": [{**d, "of": approval_max.get(str(d["approval_id"]))} for d in r.downloads],
        "live": list(r.live.values()),
    }


def histories(conn: Any, request_ids: list[str], now: float) -> dict[str, dict[str, Any]]:
    """request id -> its history, for these requests (read with `store.run`)."""
    if not request_ids:
        return {}
    needles = [f'"request_id":{json.dumps(rid)}'.encode() for rid in request_ids]
    needles += [f'"type":"{t}"'.encode() for t in _WIDE_TYPES]
    rows = audit_q.entries_containing(conn, needles, MAX_ENTRIES)
    entries = []
    for _, raw in rows:
        try:
            entries.append(json.loads(raw))
        except ValueError:
            continue
    requests, names = _fold(entries, set(request_ids))
    return {rid: _request_json(requests[rid], names, now) for rid in request_ids if rid in requests}
