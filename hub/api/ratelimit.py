"""Per-client token buckets on every route anyone may call without a session (PROTOCOL §1.1).

Which routes: read from the guard table (`hub/api/guards.py`), so the limit follows the security
declaration of each route: everything but `owner_session` routes — the public pages and identity,
pairing, login, owner JWS decisions, every agency route and camera WHIP — and any path that matches
no route. Owner-session routes cost an unauthenticated caller one indexed lookup and a 401; the owner
is never slowed down on them.

Beyond the bucket (`[hub] rate_limit_burst` calls at once, then `rate_limit_per_s` a second, per
client: `camhub_protocol.limits.client_key`) the answer is 429 `rate_limited` with `Retry-After`, before the
handler runs (no signature verified, no body read, no scrypt). Refusals are counted in the audit log
per route (`ConsentService.record_unauthenticated`), never one entry each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from camhub_protocol.limits import TokenBuckets, client_key, retry_after_header
from hub.api.errors import error_response
from hub.api.guards import SESSION_GUARDS, Guard, guard_for
from hub.services import SERVICES

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The audit entry type a refused call is counted under, by the route's guard.
_AUDIT_TYPE = {
    Guard.AGENCY_SIGNATURE: "request.rejected",
    Guard.AGENCY_GATE: "request.rejected",
    Guard.OWNER_JWS: "decision.rejected",
    Guard.PAIRING_CODE: "pairing.failed",
}


def route_of(request: web.Request) -> tuple[str, Guard | None]:
    """(`METHOD /pattern`, its declared guard) of the route that matched; no guard when none did."""
    resource = request.match_info.route.resource
    if resource is None:
        return f"{request.method} -", None
    declared = guard_for(request.method, resource.canonical)
    return f"{request.method} {resource.canonical}", None if declared is None else declared.guard


def middleware(buckets: TokenBuckets) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        route, guard = route_of(request)
        if guard in SESSION_GUARDS:
            return await handler(request)
        wait = buckets.take(client_key(request.remote), time.monotonic())
        if wait <= 0:
            return await handler(request)
        consent = request.app[SERVICES].consent
        if consent is not None:
            await consent.record_unauthenticated(
                _AUDIT_TYPE.get(guard, "http.rate_limited") if guard is not None else "http.rate_limited",
                route,
                "rate_limited",
                {"remote": request.remote or ""},
            )
        response = error_response(429, "rate_limited", f"too many calls; try again in {math.ceil(wait)} s")
        response.headers["Retry-After"] = retry_after_header(wait)
        return response

    return limit
