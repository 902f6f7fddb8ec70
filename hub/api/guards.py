"""Who may call each route, declared in one table so security is visible where routes are listed.

Every route the app serves must appear in `ROUTES` with its guard and whether it can return media
(footage, stills, thumbnails, live media). The rule of PROTOCOL.md §4, checked by
`tests/consent/test_api_route_guards.py` against the live router: a media route is behind either an
owner session on the LAN, a household member's session with the right on that camera (§1.2), or
the egress gate (`hub/consent/gate.py`); an undeclared route fails the test, so adding a route
forces a decision here. `tests/consent/test_member_route_guards.py` sweeps every route again with
member sessions and checks each answer against this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Guard(StrEnum):
    PUBLIC = "public"  # anyone on the network; nothing private
    PAIRING_CODE = "pairing_code"  # the one-time pairing code (§1)
    OWNER_JWS = "owner_jws"  # the body is a JWS signed by an enrolled owner key (§3)
    OWNER_SESSION = "owner_session"  # an owner session on the LAN (hub/api/session.py)
    AGENCY_SIGNATURE = "agency_signature"  # RFC 9421 signature of a trusted agency (§2)
    AGENCY_GATE = "agency_signature+gate"  # ... and gate.check() at send time (§4)
    CAMERA_TOKEN = "camera_token"  # a camera's own WHIP bearer token (media flows in, not out)
    INVITE_CODE = "invite_code"  # a household member's one-time invite code (§1.2)
    # The owner, or a household member's session (§1.2, `session.require_viewer`): any session; or
    # a member only with the `live` / `recordings` right on the route's camera.
    SESSION = "session"
    VIEWER_LIVE = "viewer:live"
    VIEWER_RECORDINGS = "viewer:recordings"


#: Guards that may front a route returning media (PROTOCOL §4).
MEDIA_GUARDS = frozenset({Guard.OWNER_SESSION, Guard.AGENCY_GATE, Guard.VIEWER_LIVE, Guard.VIEWER_RECORDINGS})
#: Guards behind a browser session on the LAN (owner or member): never relayed (§7.1), not rate limited.
SESSION_GUARDS = frozenset({Guard.OWNER_SESSION, Guard.SESSION, Guard.VIEWER_LIVE, Guard.VIEWER_RECORDINGS})
#: What a member needs on the route's camera, by guard (PROTOCOL §1.2); SESSION needs no right.
MEMBER_RIGHT = {Guard.VIEWER_LIVE: "live", Guard.VIEWER_RECORDINGS: "recordings"}


@dataclass(frozen=True)
class RouteGuard:
    guard: Guard
    media: bool = False


# (method, canonical aiohttp path) -> guard. HEAD is covered by its GET.
ROUTES: dict[tuple[str, str], RouteGuard] = {
    # hub/api/public.py
    ("GET", "/api/v1/hub"): RouteGuard(Guard.PUBLIC),
    # hub/api/owner.py
    ("POST", "/api/v1/owner/enroll"): RouteGuard(Guard.PAIRING_CODE),
    ("POST", "/api/v1/decisions"): RouteGuard(Guard.OWNER_JWS),
    ("POST", "/api/v1/owner/clock"): RouteGuard(Guard.OWNER_JWS),
    ("GET", "/api/v1/audit/checkpoint"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/audit/proof"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/audit/consistency"): RouteGuard(Guard.OWNER_SESSION),
    # hub/api/agency.py
    ("POST", "/api/agency/v1/requests"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("GET", "/api/agency/v1/requests/{id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("GET", "/api/agency/v1/deliveries/{id}"): RouteGuard(Guard.AGENCY_GATE, media=True),
    # hub/api/live.py (WHEP, §2.4): the SDP answer opens a WebRTC media path
    ("POST", "/api/agency/v1/live/{grant_id}"): RouteGuard(Guard.AGENCY_GATE, media=True),
    ("DELETE", "/api/agency/v1/live/{grant_id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("DELETE", "/api/agency/v1/live/{grant_id}/{session_id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("POST", "/api/v1/owner/cameras/{camera_id}/whep"): RouteGuard(Guard.VIEWER_LIVE, media=True),
    ("DELETE", "/api/v1/owner/live/{session_id}"): RouteGuard(Guard.SESSION),  # only its own views
    # hub/api/snapshot.py: the owner's live-view fallback without WebRTC (stills of the live stream)
    ("GET", "/api/v1/owner/cameras/{camera_id}/snapshot.jpg"): RouteGuard(Guard.VIEWER_LIVE, media=True),
    ("GET", "/api/v1/owner/cameras/{camera_id}/mjpeg"): RouteGuard(Guard.VIEWER_LIVE, media=True),
    # the approval screen's still of what would leave, masks painted (§4.1)
    ("GET", "/api/v1/owner/cameras/{camera_id}/privacy-preview.jpg"): RouteGuard(
        Guard.OWNER_SESSION, media=True
    ),
    # hub/ingest/whip.py: cameras pushing their stream to the hub
    ("POST", "/api/v1/cameras/{camera_id}/whip"): RouteGuard(Guard.CAMERA_TOKEN),
    ("DELETE", "/api/v1/cameras/{camera_id}/whip/{session_id}"): RouteGuard(Guard.CAMERA_TOKEN),
    # hub/api/session.py and hub/api/owner_ui.py (the owner web UI)
    ("GET", "/"): RouteGuard(Guard.PUBLIC),
    ("GET", "/ui"): RouteGuard(Guard.PUBLIC),
    ("GET", "/ca.crt"): RouteGuard(Guard.PUBLIC),
    ("GET", "/api/v1/session"): RouteGuard(Guard.PUBLIC),
    ("POST", "/api/v1/session/login"): RouteGuard(Guard.PUBLIC),
    ("POST", "/api/v1/session/password"): RouteGuard(Guard.OWNER_JWS),
    ("POST", "/api/v1/session/logout"): RouteGuard(Guard.SESSION),
    ("GET", "/api/v1/owner/cameras"): RouteGuard(Guard.SESSION),  # a member: only their cameras
    ("GET", "/api/v1/owner/timeline"): RouteGuard(Guard.VIEWER_RECORDINGS),
    ("GET", "/api/v1/owner/segments/{id}.mp4"): RouteGuard(Guard.VIEWER_RECORDINGS, media=True),
    # an H.264 copy of an H.265 segment for a browser without H.265 (hub/record/transcode.py)
    ("GET", "/api/v1/owner/segments/{id}/h264.mp4"): RouteGuard(Guard.VIEWER_RECORDINGS, media=True),
    ("GET", "/api/v1/owner/events"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/events/{id}.jpg"): RouteGuard(Guard.VIEWER_RECORDINGS, media=True),
    ("GET", "/api/v1/owner/requests"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/requests/waiting"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/grants"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/agencies"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/holds"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/devices/{kid}/revoke-preview"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/devices"): RouteGuard(Guard.OWNER_SESSION),
    ("POST", "/api/v1/owner/device-requests"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/settings"): RouteGuard(Guard.OWNER_SESSION),
    # hub/api/settings.py: the owner's settings changes (session + CSRF), no media
    ("POST", "/api/v1/owner/settings/cameras"): RouteGuard(Guard.OWNER_SESSION),
    ("PATCH", "/api/v1/owner/settings/cameras/{camera_id}"): RouteGuard(Guard.OWNER_SESSION),
    ("DELETE", "/api/v1/owner/settings/cameras/{camera_id}"): RouteGuard(Guard.OWNER_SESSION),
    ("PATCH", "/api/v1/owner/settings/storage"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/settings/privacy"): RouteGuard(Guard.OWNER_SESSION),
    ("PUT", "/api/v1/owner/settings/privacy/{camera_id}"): RouteGuard(Guard.OWNER_SESSION),
    ("GET", "/api/v1/owner/audit/entries"): RouteGuard(Guard.OWNER_SESSION),
    # hub/api/notify.py: notification settings and Web Push subscriptions (PROTOCOL §8), no media
    ("GET", "/api/v1/owner/notifications"): RouteGuard(Guard.OWNER_SESSION),
    ("PATCH", "/api/v1/owner/notifications"): RouteGuard(Guard.OWNER_SESSION),
    ("POST", "/api/v1/owner/push/subscriptions"): RouteGuard(Guard.OWNER_SESSION),
    ("DELETE", "/api/v1/owner/push/subscriptions/{sub_id}"): RouteGuard(Guard.OWNER_SESSION),
    # hub/api/members.py: household members (§1.2); managing them is the owner's, joining the invitee's
    ("GET", "/api/v1/owner/members"): RouteGuard(Guard.OWNER_SESSION),
    ("POST", "/api/v1/owner/members"): RouteGuard(Guard.OWNER_SESSION),
    ("PATCH", "/api/v1/owner/members/{member_id}"): RouteGuard(Guard.OWNER_SESSION),
    ("DELETE", "/api/v1/owner/members/{member_id}"): RouteGuard(Guard.OWNER_SESSION),
    ("POST", "/api/v1/members/join"): RouteGuard(Guard.INVITE_CODE),
    ("POST", "/api/v1/members/invite"): RouteGuard(Guard.INVITE_CODE),
}


def guard_for(method: str, path: str) -> RouteGuard | None:
    """The declared guard of a route (HEAD answers as its GET), or None if undeclared."""
    return ROUTES.get(("GET" if method == "HEAD" else method, path))


# Paths of the hub a relay may reach (PROTOCOL §7.1), as `{public_url}/hubs/{hub_id}` + path, and
# their guard; `hub/uplink/calls.py` serves exactly these and answers 404 to anything else. No owner
# session route may ever be here (the relay is not the home network), which
# `tests/relay/test_relay_guards.py` holds it to, together with the rule of MEDIA_GUARDS.
RELAYED: dict[tuple[str, str], RouteGuard] = {
    ("GET", "/api/v1/hub"): RouteGuard(Guard.PUBLIC),
    # Through the queue only (§7.2): hub/uplink/calls.py `take_queued`, never a live call.
    ("POST", "/api/agency/v1/requests"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("GET", "/api/agency/v1/requests/{id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("GET", "/api/agency/v1/deliveries/{id}"): RouteGuard(Guard.AGENCY_GATE, media=True),
    ("POST", "/api/v1/decisions"): RouteGuard(Guard.OWNER_JWS),
    ("POST", "/api/agency/v1/live/{grant_id}"): RouteGuard(Guard.AGENCY_GATE, media=True),
    ("DELETE", "/api/agency/v1/live/{grant_id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
    ("DELETE", "/api/agency/v1/live/{grant_id}/{session_id}"): RouteGuard(Guard.AGENCY_SIGNATURE),
}
