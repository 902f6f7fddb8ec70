"""Household members (PROTOCOL §1.2, issue 19): the owner invites people to watch chosen cameras.

    owner (session + CSRF)          GET/POST /api/v1/owner/members, PATCH/DELETE …/{member_id}
    the invited person (no session) POST /api/v1/members/join {code, password | passkey} → a member session
                                    POST /api/v1/members/invite {code} → {id, name} (for the passkey challenge)

A member is a login and a set of per-camera rights, nothing more: no route here stores an owner key,
so a member can never sign a decision (§3 verifies against `owner_keys` only). A member's passkey is
a login only: it lives in `member_passkeys` and is registered against its own challenge
(`passkeys.member_challenge`), so neither an owner's enrolment answer nor a decision crosses over; and every owner route
refuses a member's session (`session.require_owner`, 403 `owner_only`). Removing a member deletes
their sessions in the same transaction; their live views notice within VIEW_RECHECK_S
(`session.session_alive`), as do views of a camera whose `live` right was taken away.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from typing import Any

from aiohttp import web

from camhub_protocol.limits import Backoff, client_key
from hub.api.session import (
    CsrfError,
    _audit,
    _client,
    _same_origin,
    _session_response,
    _valid_password,
    check_owner_local,
    hash_password,
    json_object,
    require_owner,
)
from hub.consent import passkeys
from hub.errors import HubError, NotFound, RateLimited
from hub.services import SERVICES
from hub.store import members as q

INVITE_LIFETIME_S = 24 * 3600
NAME_MAX = 64
# Wrong invite codes a client may send before it waits 2, 4, 8, … s (at most 60 s), like pairing.
JOIN_FREE_FAILURES = 2
JOIN_LIMITER = web.AppKey("join_limiter", Backoff)


class BadInviteCode(HubError):
    code = "bad_invite_code"
    status = 403


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _rights(request: web.Request, value: Any) -> q.Rights:
    """`{"<camera_id>": {"live": bool, "recordings": bool}}` over configured cameras, or 400 bad_rights."""
    cameras = {c.id for c in request.app[SERVICES].config.cameras}
    if not isinstance(value, dict) or len(value) > 256:
        raise HubError("rights must be an object of camera ids", code="bad_rights")
    out: q.Rights = {}
    for camera, kinds in value.items():
        if camera not in cameras:
            raise HubError(f"no such camera: {str(camera)[:64]}", code="bad_rights")
        if not isinstance(kinds, dict) or set(kinds) - set(q.RIGHTS):
            raise HubError("each camera's rights are {live, recordings}", code="bad_rights")
        if not all(isinstance(kinds.get(k, False), bool) for k in q.RIGHTS):
            raise HubError("rights are true or false", code="bad_rights")
        out[camera] = {k: bool(kinds.get(k, False)) for k in q.RIGHTS}
    return out


async def list_members(request: web.Request) -> web.Response:
    found = await request.app[SERVICES].store.run(q.members)
    return web.json_response({"members": [m.json() for m in found]})


async def invite(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX or not name.isprintable():
        raise HubError(f"name must be 1-{NAME_MAX} printable characters", code="bad_name")
    name = name.strip()
    rights = _rights(request, body.get("rights"))
    member_id = "m-" + secrets.token_urlsafe(12)
    code = secrets.token_urlsafe(16)
    now = time.time()
    expires_at = now + INVITE_LIFETIME_S
    if not await services.store.run(q.invite, member_id, name, rights, _code_hash(code), expires_at, now):
        raise HubError("a member already has this name", code="name_taken", status=409)
    await _audit(services, "member.invited", {"member": member_id, "name": name, "rights": rights})
    return web.json_response(
        {"id": member_id, "name": name, "rights": rights, "code": code, "link": f"/#/join/{code}",
         "expires_at": expires_at},
        status=201,
    )  # fmt: skip


async def edit_member(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await json_object(request)
    rights = _rights(request, body.get("rights"))
    member = await services.store.run(q.set_rights, request.match_info["member_id"], rights)
    if member is None:
        raise NotFound("no such member")
    await _audit(
        services, "member.rights_changed", {"member": member.id, "name": member.name, "rights": rights}
    )
    return web.json_response(member.json())


async def remove_member(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    removed = await services.store.run(q.remove, request.match_info["member_id"], time.time())
    if removed is None:
        raise NotFound("no such member")
    member, ended = removed
    await _audit(
        services, "member.removed", {"member": member.id, "name": member.name, "sessions_ended": ended}
    )
    return web.Response(status=204)


def _check_join_client(request: web.Request) -> tuple[Backoff, str]:
    """LAN only, same origin, and not waiting out wrong codes (PROTOCOL §1.2)."""
    limiter = request.app[JOIN_LIMITER]
    check_owner_local(request)
    if not _same_origin(request):
        raise CsrfError("cross-origin request refused")
    key = client_key(_client(request))
    wait = limiter.retry_after(key, time.monotonic())
    if wait > 0:
        raise RateLimited(f"too many wrong invite codes; try again in {math.ceil(wait)} s", wait)
    return limiter, key


def _bad_code(limiter: Backoff, key: str) -> BadInviteCode:
    limiter.failed(key, time.monotonic())
    return BadInviteCode("this invite code is wrong, used or expired; ask for a new invite")


async def _pending(request: web.Request, code: Any) -> q.Member | None:
    if not isinstance(code, str) or not 16 <= len(code) <= 64:
        return None
    return await request.app[SERVICES].store.run(q.pending_invite, _code_hash(code), time.time())


async def invite_info(request: web.Request) -> web.Response:
    """Who an unspent invite is for, without spending it: the passkey challenge needs the id."""
    limiter, key = _check_join_client(request)
    body = await json_object(request)
    member = await _pending(request, body.get("code"))
    if member is None:
        raise _bad_code(limiter, key)
    return web.json_response({"id": member.id, "name": member.name})


async def join(request: web.Request) -> web.Response:
    """Accept an invite: set the password or register the passkey, spend the code, log in (PROTOCOL §1.2)."""
    services = request.app[SERVICES]
    limiter, key = _check_join_client(request)
    body = await json_object(request)
    code = body.get("code")
    if ("password" in body) == ("passkey" in body):
        raise HubError("send exactly one of password and passkey", code="bad_join")
    if "passkey" in body:
        return await _join_with_passkey(request, limiter, key, code, body["passkey"])
    password = _valid_password(body.get("password"))
    member = None
    if isinstance(code, str) and 16 <= len(code) <= 64:
        encoded = await asyncio.to_thread(hash_password, password)
        member = await services.store.run(q.join, _code_hash(code), encoded, time.time())
    if member is None:
        raise _bad_code(limiter, key)
    limiter.succeeded(key)
    await _audit(
        services, "member.joined", {"member": member.id, "name": member.name}, actor=f"member:{member.id}"
    )
    return await _session_response(request, member.id)


async def _join_with_passkey(
    request: web.Request, limiter: Backoff, key: str, code: Any, value: Any
) -> web.Response:
    services = request.app[SERVICES]
    invited = await _pending(request, code)
    if invited is None:
        raise _bad_code(limiter, key)
    rp = passkeys.RelyingParty(services.config.hub.rp_id)
    challenge = passkeys.member_challenge(services.hub_key.hub_id, invited.id)
    try:
        new = passkeys.register(rp, services.hub_key.hub_id, value, challenge=challenge)
    except ValueError as exc:  # the code is not spent: the member may try again
        raise HubError(f"passkey: {exc}"[:300], code="passkey_registration_invalid") from exc
    stored = q.MemberPasskey(invited.id, new.kid, new.credential_id, new.cose_key, rp.rp_id, new.sign_count)
    assert isinstance(code, str)
    member = await services.store.run(q.join_with_passkey, _code_hash(code), invited.id, stored, time.time())
    if member is None:  # spent or removed meanwhile (or a credential another member registered)
        raise _bad_code(limiter, key)
    limiter.succeeded(key)
    await _audit(
        services,
        "member.joined",
        {"member": member.id, "name": member.name, "via": "passkey", "credential_id": new.credential_id},
        actor=f"member:{member.id}",
    )
    return await _session_response(request, member.id)


def setup(app: web.Application) -> None:
    app[JOIN_LIMITER] = Backoff(free=JOIN_FREE_FAILURES)
    owner = require_owner
    app.router.add_get("/api/v1/owner/members", owner(list_members))
    app.router.add_post("/api/v1/owner/members", owner(invite))
    app.router.add_patch("/api/v1/owner/members/{member_id}", owner(edit_member))
    app.router.add_delete("/api/v1/owner/members/{member_id}", owner(remove_member))
    app.router.add_post("/api/v1/members/join", join)  # public: the invite code is the credential
    app.router.add_post("/api/v1/members/invite", invite_info)  # public: the invite code, as for join
