"""Owner sessions on the LAN: password, cookie, CSRF token, login rate limit, and the `require_owner` guard.

How a browser becomes an owner session
- The password is set once, during onboarding, by a browser that has just enrolled its signing key
  with the pairing code (PROTOCOL §1): `POST /api/v1/session/password` carries a JWS signed by that
  enrolled owner key (or, for a passkey, a passkey assertion in the PROTOCOL §3.1 format around the
  same payload), so nobody else on the LAN can race the owner to choose it. The same call,
  signed by any enrolled key, resets a forgotten password (and ends every session).
- `POST /api/v1/session/login {"password"}` checks the scrypt hash (RFC 7914) and sets the session
  cookie: 32 random bytes, HttpOnly, SameSite=Strict, Path=/, and on HTTPS `Secure` with the
  `__Host-` prefix (so no other origin can set or shadow it). The database keeps only its SHA-256.
  Sessions expire after SESSION_LIFETIME; `POST /api/v1/session/logout` ends one at once.
- Failed logins are limited per client with exponential backoff capped at 60 s (`camhub_protocol.limits.Backoff`),
  never globally: a global cap let any stranger lock the owner out (issue 12). Successful logins are
  `owner.login` audit entries; failures are `owner.login_failed`, counted per reason and minute
  (`ConsentService.record_unauthenticated`) so a flood cannot grow the log (PROTOCOL §5).

Where the owner may be
- Owner routes (everything behind `require_owner`, login, setting the password, pairing) answer only
  clients on loopback, private or link-local addresses (403 `owner_not_local`) unless
  `[hub] owner_remote = true`: a session cookie or password that leaked must not work from the
  internet once the hub is reachable from outside. Signed decisions are not owner routes: a JWS is
  its own authentication, wherever it comes from.
- Owner live views (WebRTC, MJPEG) are bound to the session that opened them and end within 1 s of
  its end — logout, a password change (which ends every session), expiry, or `camhub owner reset`
  on the box — because each view re-checks its session every `VIEW_RECHECK_S` (`session_alive`).

CSRF (synchronizer token)
- Each session has its own random CSRF token, returned by `GET /api/v1/session` (readable only by a
  same-origin script: there is no CORS) and by login. Every state-changing request through
  `require_owner` (any method but GET/HEAD/OPTIONS) must send it in `X-CSRF-Token`, and, when the
  browser sends an `Origin` header, that origin must be this hub's. Missing or wrong → 403
  `{"error": "csrf"}`. SameSite=Strict alone is not enough: another port on the same host is the
  same *site* and would get the cookie.

The guards
- `require_owner(handler)` wraps a handler: no valid session → 401 `{"error": "no_session"}`; a
  household member's session → 403 `owner_only` (PROTOCOL §1.2); bad CSRF on an unsafe method → 403.
  The session is at `request[OWNER_SESSION]`. Routes declare it where they are registered:
  `app.router.add_get(path, require_owner(handler))`.
- `require_viewer(handler, right=..., camera_of=...)` admits the owner, or a member with `right`
  ("live" | "recordings") on the route's camera (403 `not_permitted` otherwise); `right=None` admits
  any session (the camera list, logout). Who it is: `request[PRINCIPAL]`.
- Both set `guarded.guard` so `hub/api/guards.py`'s table can be checked against the handlers.

Household members (PROTOCOL §1.2, `hub/api/members.py`) log in here too, with their name and a
password or their passkey (a `member-login` payload in the §3.1 format, checked against the member's
own passkey in `member_passkeys`): the session row then records the member's id, and nothing else
about a session differs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from camhub_protocol import jws
from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import public_key_from_jwk
from camhub_protocol.limits import Backoff, client_key
from hub.errors import HubError, RateLimited
from hub.services import SERVICES, Services
from hub.store import consent as consent_q
from hub.store import members as members_q
from hub.store import web as q

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_LIFETIME_S = 7 * 24 * 3600
COOKIE_HTTP = "camhub_session"
# RFC 6265bis §4.1.3.2: a __Host- cookie must be Secure, Path=/ and have no Domain.
COOKIE_HTTPS = "__Host-camhub_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# scrypt (RFC 7914) cost: N=2^15, r=8 uses 32 MiB and ~0.1 s on a Raspberry Pi 4 core.
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
PASSWORD_MIN, PASSWORD_MAX = 10, 1024
# The proof that sets the password must be fresh: signed within this many seconds of the hub's clock.
PROOF_MAX_AGE_S = 300
PROOF_TYP = "camhub-web-password+jws"


class SessionError(HubError):
    code = "no_session"
    status = 401


class CsrfError(HubError):
    code = "csrf"
    status = 403


class NotLocal(HubError):
    code = "owner_not_local"
    status = 403


class OwnerOnly(HubError):
    code = "owner_only"
    status = 403


class NotPermitted(HubError):
    code = "not_permitted"
    status = 403


@dataclass(frozen=True)
class Principal:
    """Who a browser session is: the owner (`member` None) or a household member (PROTOCOL §1.2)."""

    session: q.Session
    member: members_q.Member | None = None

    @property
    def actor(self) -> str:
        """The audit actor (PROTOCOL §5): `owner` or `member:<id>`."""
        return "owner" if self.member is None else f"member:{self.member.id}"

    def may(self, camera: str, right: str) -> bool:
        return self.member is None or self.member.may(camera, right)


# ------------------------------------------------------------------------------------------------
# Passwords


def hash_password(password: str, *, log_n: int = SCRYPT_LOG_N) -> str:
    """`scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>`; blocking (~0.1 s), call it in a thread."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << log_n, r=SCRYPT_R, p=SCRYPT_P, maxmem=128 << 20, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${log_n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """Constant-time comparison against an encoded hash; blocking, call it in a thread."""
    try:
        scheme, log_n, r, p, salt_b64, digest_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=1 << int(log_n),
            r=int(r),
            p=int(p),
            maxmem=128 << 20,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def _valid_password(value: Any) -> str:
    if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise HubError(
            f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters", code="bad_password_format"
        )
    return value


# ------------------------------------------------------------------------------------------------
# Login rate limiting

# Wrong passwords a client may type before it waits: then 2, 4, 8, ... s, at most 60 s.
LOGIN_FREE_FAILURES = 4
LOGIN_ROUTE = "POST /api/v1/session/login"
# How often an owner live view asks whether its session still exists (< 1 s end, PROTOCOL §1.1).
VIEW_RECHECK_S = 0.5


LOGIN_LIMITER = web.AppKey("login_limiter", Backoff)
OWNER_SESSION = web.RequestKey("owner_session", q.Session)
PRINCIPAL = web.RequestKey("principal", Principal)


# ------------------------------------------------------------------------------------------------
# Audit (PROTOCOL §5: owner.login, owner.login_failed)


async def _audit(services: Services, type_: str, data: dict[str, Any], actor: str = "owner") -> None:
    # The consent service owns the audit log (hub/consent/service.py); a hub started without it
    # (unit tests of the API alone) still logs the event.
    consent = services.consent
    if consent is None:
        log.info("%s %s", type_, data)
        return
    await consent.record(type_, actor, data)


async def _audit_failed_login(services: Services, reason: str, client: str) -> None:
    consent = services.consent
    if consent is None:
        log.info("owner.login_failed %s %s", reason, client)
        return
    await consent.record_unauthenticated(
        "owner.login_failed", LOGIN_ROUTE, reason, {"remote": client, "reason": reason}
    )


# ------------------------------------------------------------------------------------------------
# Cookies and the guard


def _cookie_name(request: web.Request) -> str:
    return COOKIE_HTTPS if request.secure else COOKIE_HTTP


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def on_lan(remote: str | None) -> bool:
    """Loopback, private (RFC 1918, RFC 4193) or link-local: a client in the owner's home."""
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local


def check_owner_local(request: web.Request) -> None:
    """403 `owner_not_local` for an owner route called from outside the LAN (`[hub] owner_remote`)."""
    if request.app[SERVICES].config.hub.owner_remote or on_lan(request.remote):
        return
    raise NotLocal("owner pages answer only on the home network ([hub] owner_remote is off)")


async def current_session(request: web.Request) -> q.Session | None:
    """The request's unexpired session, or None (no cookie, unknown or expired id)."""
    session_id = request.cookies.get(_cookie_name(request))
    if not session_id or len(session_id) > 128:
        return None
    services = request.app[SERVICES]
    return await services.store.run(q.live_session, _id_hash(session_id), time.time())


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # non-browser clients and same-origin GET navigations send none
    return origin == f"{request.scheme}://{request.host}"


def check_csrf(request: web.Request, session: q.Session) -> None:
    """Raise CsrfError unless an unsafe request carries this session's token and a same-origin Origin."""
    if request.method in SAFE_METHODS:
        return
    if not _same_origin(request):
        raise CsrfError("cross-origin request refused")
    token = request.headers.get(CSRF_HEADER, "")
    if not token or not hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf.encode("ascii")):
        raise CsrfError(f"missing or wrong {CSRF_HEADER} header")


async def _principal(request: web.Request) -> Principal:
    """The request's session and who it is; 401 `no_session` without one (or for a removed member)."""
    session = await current_session(request)
    if session is None:
        raise SessionError("log in first")
    if session.member_id is None:
        return Principal(session)
    member = await request.app[SERVICES].store.run(members_q.member, session.member_id)
    if member is None:  # removed: its sessions were deleted with it, this is only a race
        raise SessionError("log in first")
    return Principal(session, member)


def require_owner(handler: Handler) -> Handler:
    """Guard a route: a client on the LAN (403), an owner session (401 without a session, 403
    `owner_only` for a household member's) and, on unsafe methods, its CSRF token (403)."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        check_owner_local(request)
        principal = await _principal(request)
        if principal.member is not None:
            raise OwnerOnly("only the owner may do this")
        check_csrf(request, principal.session)
        request[OWNER_SESSION] = principal.session
        request[PRINCIPAL] = principal
        return await handler(request)

    guarded.requires_owner = True  # type: ignore[attr-defined]
    guarded.guard = "owner_session"  # type: ignore[attr-defined]
    return guarded


CameraOf = Callable[[web.Request], Awaitable[str]]


async def camera_in_url(request: web.Request) -> str:
    return request.match_info["camera_id"]


def require_viewer(handler: Handler, *, right: str | None, camera_of: CameraOf = camera_in_url) -> Handler:
    """Guard a route that the owner and household members may use (PROTOCOL §1.2): like
    `require_owner`, but a member is admitted when they have `right` on the route's camera
    (`camera_of` finds it, raising 404 for an id that names nothing), else 403 `not_permitted`.
    `right=None`: any session, the handler filters what it shows by `request[PRINCIPAL]`."""
    assert right in (None, *members_q.RIGHTS)

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        check_owner_local(request)
        principal = await _principal(request)
        check_csrf(request, principal.session)
        if right is not None and principal.member is not None:
            camera = await camera_of(request)
            if not principal.member.may(camera, right):
                raise NotPermitted(f"you may not watch this camera's {right}")
        request[OWNER_SESSION] = principal.session
        request[PRINCIPAL] = principal
        return await handler(request)

    guarded.guard = "session" if right is None else f"viewer:{right}"  # type: ignore[attr-defined]
    return guarded


def _set_cookie(request: web.Request, response: web.StreamResponse, value: str, max_age: int) -> None:
    response.set_cookie(
        _cookie_name(request),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


async def _session_response(request: web.Request, member_id: str | None = None) -> web.Response:
    """A new session for this browser (the owner's, or with `member_id` a member's): the JSON body
    (with its CSRF token) and the cookie."""
    services = request.app[SERVICES]
    session_id = secrets.token_urlsafe(32)
    now = time.time()
    session = q.Session(
        id_sha256=_id_hash(session_id),
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME_S,
        last_seen=now,
        remote=_client(request),
        user_agent=request.headers.get("User-Agent", "")[:200],
        member_id=member_id,
    )
    await services.store.run(q.delete_expired_sessions, now)
    await services.store.run(q.create_session, session)
    response = web.json_response(_session_json(session))
    _set_cookie(request, response, session_id, SESSION_LIFETIME_S)
    return response


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a HubError (415 not JSON content, 400 bad JSON)."""
    if request.content_type != "application/json":
        raise HubError("expected application/json", code="bad_content_type", status=415)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[..."
        raise HubError("body is not JSON", code="bad_json") from exc
    if not isinstance(body, dict):
        raise HubError("body must be a JSON object", code="bad_json")
    return body


def _session_json(session: q.Session) -> dict[str, Any]:
    return {"authenticated": True, "csrf": session.csrf, "expires_at": session.expires_at}


# ------------------------------------------------------------------------------------------------
# Routes


async def get_session(request: web.Request) -> web.Response:
    """What the page needs to decide where to go: onboarding, login, or the app (with its CSRF token)."""
    services = request.app[SERVICES]
    session = await current_session(request)
    password_set = await services.store.run(q.password_hash) is not None
    owners = await services.store.run(consent_q.active_owner_keys)
    body: dict[str, Any] = {
        "authenticated": False,
        "password_set": password_set,
        "owner_enrolled": bool(owners),
        "hub_id": services.hub_key.hub_id,
        "public_jwk": services.hub_key.public_jwk,
        "name": services.config.hub.name,
        "passkey_rp_id": services.config.hub.rp_id,  # PROTOCOL §3.1, for the UI's WebAuthn calls
        "secure": request.secure,
    }
    if session is not None:
        member = None
        if session.member_id is not None:
            member = await services.store.run(members_q.member, session.member_id)
        if session.member_id is None or member is not None:
            body.update(_session_json(session))
            body["role"] = "owner" if member is None else "member"
            if member is not None:
                passkey = await services.store.run(members_q.member_passkey, member.id)
                body["member"] = {
                    "id": member.id,
                    "name": member.name,
                    "rights": member.rights,
                    "passkey": None
                    if passkey is None
                    else {"kid": passkey.kid, "credential_id": passkey.credential_id},
                }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def login(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    limiter = request.app[LOGIN_LIMITER]
    check_owner_local(request)
    if not _same_origin(request):
        raise CsrfError("cross-origin login refused")
    body = await json_object(request)
    password = body.get("password")
    client = _client(request)
    key = client_key(client)
    wait = limiter.retry_after(key, time.monotonic())
    if wait > 0:
        await _audit_failed_login(services, "rate_limited", client)
        raise RateLimited(f"too many wrong passwords; try again in {math.ceil(wait)} s", wait)
    name = body.get("member")
    member: members_q.Member | None = None
    if name is not None and "passkey" in body:
        return await _member_passkey_login(request, body, limiter, key)
    if name is None:
        encoded = await services.store.run(q.password_hash)
        if encoded is None:
            raise HubError(
                "no password is set yet: finish onboarding first", code="not_onboarded", status=409
            )
    else:
        # A household member (PROTOCOL §1.2): a wrong name costs the same as a wrong password, and
        # the same scrypt time, so the answer does not tell which names exist.
        if isinstance(name, str) and 1 <= len(name) <= 64:
            member = await services.store.run(members_q.member_by_name, name)
        encoded = member.password_hash if member is not None else None
        encoded = encoded or _DUMMY_HASH
    ok = isinstance(password, str) and len(password) <= PASSWORD_MAX
    ok = ok and await asyncio.to_thread(check_password, password, encoded)
    ok = ok and (name is None or member is not None)
    if not ok:
        limiter.failed(key, time.monotonic())
        await _audit_failed_login(services, "bad_password", client)
        raise HubError("wrong password", code="bad_password", status=401)
    limiter.succeeded(key)
    if member is not None:
        response = await _session_response(request, member.id)
        await _audit(
            services,
            "member.login",
            {"member": member.id, "remote": client, "via": "password"},
            actor=f"member:{member.id}",
        )
        return response
    response = await _session_response(request)
    await _audit(services, "owner.login", {"remote": client})
    return response


MEMBER_LOGIN = "member-login"
MEMBER_LOGIN_FIELDS = frozenset({"v", "hub", "decision", "member", "issued_at", "jti"})


@dataclass(frozen=True)
class _CounterRegressed:
    """A member's passkey signed with a counter it had already used: a copy may exist (§1.2)."""

    member: str
    kid: str
    stored: int
    seen: int


def _dummy_passkey(rp_id: str) -> consent_q.Passkey:
    """A passkey nobody holds, checked when the name is unknown or has no passkey, so that the answer
    costs the same signature check as for a real member."""
    return consent_q.Passkey("", "AA", _dummy_cose(), rp_id, 0)


@functools.cache
def _dummy_cose() -> bytes:
    """A fresh P-256 public key, COSE-encoded, made once per process."""
    import cbor2
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return cbor2.dumps(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )


def _verify_member_passkey_login(
    conn: Any, name: Any, proof: Any, hub_id: str, now: float, rp_id: str
) -> tuple[members_q.Member | None, _CounterRegressed | None]:
    """A household member's passkey login (PROTOCOL §1.2): the §3.1 body around a `member-login`
    payload, checked against that member's own passkey (never an owner key). The member, or None for
    anything wrong: the caller answers every failure alike, so a name that exists, or has a passkey,
    reads the same as one that does not. As for decisions, the counter is looked at after the jti is
    spent, so a replay stays a replay; a regressed counter is also returned, for the audit log."""
    from hub.consent import passkeys

    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not isinstance(proof, dict):
        return None, None
    member = members_q.member_by_name(conn, name)
    stored = None if member is None else members_q.member_passkey(conn, member.id)
    if member is None or stored is None:
        with contextlib.suppress(ConsentError, ValueError, RecursionError):
            passkeys.verify(
                passkeys.RelyingParty(rp_id),
                _dummy_passkey(rp_id),
                passkeys.parse(json.dumps(proof).encode()),
            )
        return None, None
    try:
        signed = passkeys.parse(json.dumps(proof).encode())
        if signed.kid != stored.kid:
            return None, None
        key = consent_q.Passkey(
            stored.kid, stored.credential_id, stored.public_key, stored.rp_id, stored.sign_count
        )
        passkeys.verify(passkeys.RelyingParty(rp_id), key, signed)
        payload = passkeys.payload_of(signed)
    except (ConsentError, ValueError, RecursionError):
        return None, None
    if (
        set(payload) != MEMBER_LOGIN_FIELDS
        or payload["v"] != 1
        or isinstance(payload["v"], bool)
        or payload["hub"] != hub_id
        or payload["decision"] != MEMBER_LOGIN
        or payload["member"] != member.id
    ):
        return None, None
    issued = _rfc3339(payload["issued_at"])
    if issued is None or abs(now - issued) > PROOF_MAX_AGE_S:
        return None, None
    jti = payload["jti"]
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128 or not consent_q.use_jti(conn, jti, now):
        return None, None
    if passkeys.counter_regressed(stored.sign_count, signed.sign_count):
        log.warning("member %s: passkey signature counter went backwards (a copy?)", member.id)
        return None, _CounterRegressed(member.id, stored.kid, stored.sign_count, signed.sign_count)
    members_q.set_member_passkey_sign_count(conn, member.id, signed.sign_count)
    return member, None


async def _member_passkey_login(
    request: web.Request, body: dict[str, Any], limiter: Backoff, key: str
) -> web.Response:
    services = request.app[SERVICES]
    client = _client(request)
    member, regressed = None, None
    if "password" not in body:  # one of the two, never both (PROTOCOL §1.2)
        member, regressed = await services.store.run(
            _verify_member_passkey_login,
            body.get("member"),
            body.get("passkey"),
            services.hub_key.hub_id,
            time.time(),
            services.config.hub.rp_id,
        )
    if regressed is not None:
        await _audit(
            services,
            "key.counter_regressed",
            {
                "kid": regressed.kid,
                "stored": regressed.stored,
                "seen": regressed.seen,
                "member": regressed.member,
            },
            actor=f"member:{regressed.member}",
        )
    if member is None:
        limiter.failed(key, time.monotonic())
        await _audit_failed_login(services, "bad_password", client)
        raise HubError("wrong password", code="bad_password", status=401)
    limiter.succeeded(key)
    response = await _session_response(request, member.id)
    await _audit(
        services,
        "member.login",
        {"member": member.id, "remote": client, "via": "passkey"},
        actor=f"member:{member.id}",
    )
    return response


# A hash no password matches (a random one), checked when the member name is unknown.
_DUMMY_HASH = (
    "scrypt$15$8$1$"
    + base64.b64encode(secrets.token_bytes(16)).decode()
    + "$"
    + (base64.b64encode(secrets.token_bytes(32)).decode())
)


async def session_alive(services: Services, id_sha256: str, camera: str | None = None) -> bool:
    """Whether the session with this id hash still exists and is unexpired (live views ask every
    VIEW_RECHECK_S); a member's, with `camera`, also whether the member may still watch it live
    (removed or narrowed, PROTOCOL §1.2)."""

    def alive(conn: Any) -> bool:
        session = q.live_session(conn, id_sha256, time.time())
        if session is None:
            return False
        if session.member_id is None:
            return True
        member = members_q.member(conn, session.member_id)
        return member is not None and (camera is None or member.may(camera, "live"))

    return bool(await services.store.run(alive))


async def logout(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    await services.store.run(q.delete_session, request[PRINCIPAL].session.id_sha256)
    response = web.Response(status=204)
    response.del_cookie(
        _cookie_name(request), path="/", secure=request.secure, httponly=True, samesite="Strict"
    )
    return response


def _rfc3339(value: Any) -> float | None:
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        return None
    try:
        return dt.datetime.fromisoformat(value[:-1] + "+00:00").timestamp()
    except ValueError:
        return None


def _verify_passkey_proof(conn: Any, proof: dict[str, Any], hub_id: str, now: float, rp_id: str) -> str:
    """A proof signed by a passkey: the passkey decision format of PROTOCOL §3.1 around the same
    payload (onboarding with a passkey and the pairing code has no JWS key to sign with). As for
    decisions, the counter is checked after the jti is spent, so a replay reads as a replay."""
    from hub.consent import decisions, passkeys

    signed, payload = decisions.verify_passkey_sync(conn, rp_id, json.dumps(proof).encode())
    kid = _check_proof_payload(conn, signed.kid, payload, hub_id, now)
    stored = consent_q.passkey(conn, kid)
    assert stored is not None
    if passkeys.counter_regressed(stored.sign_count, signed.sign_count):
        raise HubError(
            "the passkey's signature counter went backwards", code="passkey_counter_regressed", status=403
        )
    consent_q.set_passkey_sign_count(conn, kid, signed.sign_count)
    return kid


def _verify_owner_proof(conn: Any, proof: str | dict[str, Any], hub_id: str, now: float, rp_id: str) -> str:
    """Check a password proof against an enrolled, unrevoked owner key; returns its kid.

    A JWS (`typ` camhub-web-password+jws), or a passkey assertion in the §3.1 format. Payload
    `{"v":1, "hub", "purpose": "set-password", "issued_at" (RFC 3339 UTC, "Z"), "jti"}`; the jti is
    single use in the same table as decisions' (PROTOCOL §3), so a proof cannot be replayed.
    """
    if isinstance(proof, dict):
        return _verify_passkey_proof(conn, proof, hub_id, now, rp_id)
    parsed = jws.parse(proof, typ=PROOF_TYP)
    key = consent_q.owner_key(conn, parsed.kid)
    if key is None or key.revoked_at is not None:
        raise HubError(
            "the proof is not signed by an enrolled owner key", code="unknown_owner_key", status=403
        )
    if consent_q.passkey(conn, parsed.kid) is not None:  # a passkey never signs a JWS (§3.1)
        raise HubError("a passkey cannot sign this proof", code="key_format_mismatch", status=403)
    payload = jws.decode_json(jws.verify(parsed, public_key_from_jwk(key.public_jwk)))
    return _check_proof_payload(conn, parsed.kid, payload, hub_id, now)


def _check_proof_payload(conn: Any, kid: str, payload: Any, hub_id: str, now: float) -> str:
    if not isinstance(payload, dict) or payload.get("v") != 1 or payload.get("purpose") != "set-password":
        raise HubError("not a set-password proof", code="bad_proof")
    if payload.get("hub") != hub_id:
        raise HubError("proof is for another hub", code="bad_proof", status=403)
    issued = _rfc3339(payload.get("issued_at"))
    if issued is None or abs(now - issued) > PROOF_MAX_AGE_S:
        raise HubError("proof is stale or from the future", code="bad_proof", status=403)
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128 or not consent_q.use_jti(conn, jti, now):
        raise HubError("proof jti missing or already used", code="bad_proof", status=403)
    return kid


async def set_password(request: web.Request) -> web.Response:
    """Set (onboarding) or reset the password; authorised by a fresh JWS from an enrolled owner key."""
    services = request.app[SERVICES]
    check_owner_local(request)
    if not _same_origin(request):
        raise CsrfError("cross-origin request refused")
    body = await json_object(request)
    password = _valid_password(body.get("password"))
    proof = body.get("proof")
    if not isinstance(proof, str | dict):
        raise HubError("proof (signed by an enrolled owner key) is required", code="bad_proof")
    try:
        kid = await services.store.run(
            _verify_owner_proof, proof, services.hub_key.hub_id, time.time(), services.config.hub.rp_id
        )
    except ConsentError as exc:
        raise HubError(exc.detail, code=exc.code, status=exc.status) from exc
    encoded = await asyncio.to_thread(hash_password, password)
    if not await services.store.run(q.replace_password, encoded, time.time(), kid):
        raise HubError("the key that signed the proof was revoked", code="owner_key_revoked", status=403)
    await _audit(services, "owner.password_set", {"kid": kid})
    return await _session_response(request)


# ------------------------------------------------------------------------------------------------
# Security headers

# No inline script or style, no eval, nothing from another origin (issue 6: a script injected into
# the page could use the owner's signing key, so the page must not be able to load one).
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "geolocation=(), payment=(), usb=()")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")


def setup(app: web.Application) -> None:
    """Session routes and the security headers on every response."""
    app[LOGIN_LIMITER] = Backoff(free=LOGIN_FREE_FAILURES)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/api/v1/session", get_session)  # public: tells the page what to show
    app.router.add_post("/api/v1/session/login", login)  # public, rate limited
    app.router.add_post("/api/v1/session/password", set_password)  # owner-key JWS
    app.router.add_post("/api/v1/session/logout", require_viewer(logout, right=None))  # owner or member
