"""The hub's HTTP API (aiohttp).

Routes are grouped by who may call them, each group in its own module: `public` (no auth: hub
identity), and, as they land, `owner` (session on the LAN) and `agency` (RFC 9421 signed). Shared
services live under a typed `web.AppKey`, never a string key.
"""

from __future__ import annotations

from aiohttp import web

from camhub_protocol.limits import TokenBuckets
from hub.api import (
    agency,
    errors,
    hosts,
    live,
    members,
    notify,
    owner,
    owner_ui,
    public,
    ratelimit,
    session,
    settings,
    snapshot,
)
from hub.api.views import VIEW_LOG, ViewLog
from hub.ingest import whip
from hub.services import SERVICES, Services

# Nothing an owner or agency legitimately sends is larger; footage only ever flows outwards.
MAX_BODY_BYTES = 64 * 1024


def make_app(services: Services) -> web.Application:
    hub = services.config.hub
    # Outermost first: a request for another host name (DNS rebinding) is 421 before anything else,
    # then the per-client limit, then the handler with its typed errors turned into responses.
    middlewares = [
        hosts.middleware(hosts.HostAllowlist(services.config)),
        errors.middleware,
        ratelimit.middleware(TokenBuckets(hub.rate_limit_per_s, hub.rate_limit_burst)),
    ]
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[SERVICES] = services
    app[VIEW_LOG] = ViewLog()  # who watched what (PROTOCOL §5): owner views are audited
    public.setup(app)
    session.setup(app)  # owner sessions, CSRF, security headers on every response
    owner_ui.setup(app)  # owner pages and their JSON, each route behind session.require_owner
    settings.setup(app)  # owner settings from the web UI: cameras and storage, overlaid on the file
    notify.setup(app)  # owner: notification settings and Web Push subscriptions (PROTOCOL §8)
    members.setup(app)  # household members (PROTOCOL §1.2): the owner invites, members join
    owner.setup(app)  # consent: first-owner enrolment, signed decisions, audit proofs
    agency.setup(app)  # consent: RFC 9421 signed agency API; media only through gate.check
    if services.cameras is not None:
        live.setup(app, services.cameras.relays)  # WHEP: agency (gate) and owner (session) live view
        snapshot.setup(app, services.cameras.relays)  # owner: JPEG/MJPEG stills when WebRTC fails
        whip.setup(app, services.cameras.whip)  # cameras that push WebRTC (per-camera bearer token)
    return app
