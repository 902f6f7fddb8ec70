"""The Host allowlist (PROTOCOL §1.1): a request must name this hub, or it gets 421.

DNS rebinding: a web page the owner visits points a name it controls (`evil.example`) at the hub's
LAN address (or 127.0.0.1) and then drives the hub from the owner's own browser, as a same-origin
page of `evil.example`. The browser sends `Host: evil.example`; so the hub answers only requests whose
Host is one of its own names or addresses (RFC 9110 §7.4: 421 Misdirected Request, "not able to
produce a response" for this authority):

- the configured name, `<name>.local` (mDNS), `localhost`;
- `[hub] bind` and `ice_addresses`, 127.0.0.1 and ::1, and — when bound to every interface — any
  current address of this box (an IP literal cannot be rebound; re-read at most every 10 s, so a
  new DHCP lease needs no restart);
- `[hub] allowed_hosts` (a reverse proxy's name, later the relay's public name).

A request without a Host header (HTTP/1.0) is let through: no browser sends one, so no rebinding page
can either. The port is not compared (the hub serves HTTP and HTTPS on different ones).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.api.errors import error_response
from hub.config import Config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INTERFACES_TTL_S = 10.0


def host_name(header: str) -> str | None:
    """The host part of a Host header value, lower case, without port, brackets or trailing dot."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        return value[1:end]
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        value = name
    return value.rstrip(".") or None


class HostAllowlist:
    """The names and addresses a Host header may carry (module doc)."""

    def __init__(self, config: Config, extra: tuple[str, ...] = ()) -> None:
        hub = config.hub
        names = {hub.name.lower(), f"{hub.name.lower()}.local", "localhost", *hub.allowed_hosts, *extra}
        addresses = {"127.0.0.1", "::1", *hub.ice_addresses}
        bind = ipaddress.ip_address(hub.bind)
        self._any_interface = bind.is_unspecified
        if not self._any_interface:
            addresses.add(str(bind))
        self.names = frozenset(n.lower().rstrip(".") for n in names)
        self.addresses = frozenset(str(ipaddress.ip_address(a)) for a in addresses)
        self._interfaces: frozenset[str] = frozenset()
        self._interfaces_at = float("-inf")

    def _interface_addresses(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._interfaces_at >= INTERFACES_TTL_S:
            from hub.tls import interface_addresses

            self._interfaces = frozenset(str(ipaddress.ip_address(a)) for a in interface_addresses())
            self._interfaces_at = now
        return self._interfaces

    def allows(self, header: str | None) -> bool:
        if header is None:
            return True
        host = host_name(header)
        if host is None:
            return False
        if host in self.names:
            return True
        try:
            ip = str(ipaddress.ip_address(host.split("%", 1)[0]))
        except ValueError:
            return False
        if ip in self.addresses:
            return True
        return self._any_interface and ip in self._interface_addresses()


def middleware(allowlist: HostAllowlist) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowlist.allows(request.headers.get("Host")):
            return error_response(
                421, "misdirected_request", "this hub does not answer for that host name (Host allowlist)"
            )
        return await handler(request)

    return check_host
