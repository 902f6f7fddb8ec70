"""Which local addresses WebRTC may offer as ICE host candidates (`[hub] ice_addresses`).

aioice gathers host candidates from `aioice.ice.get_host_addresses()`: every interface *except*
127.0.0.1 (MEDIA_NOTES). A hub must be able to pin them instead — to its LAN address so a camera's
picture is never offered on another interface, or to 127.0.0.1 in tests and the demo, where only
loopback traffic is allowed. aioice has no option for this, so this module replaces that one
function, process-wide, with one that returns the configured addresses (filtered by the address
families ICE asked for), and falls back to aioice's own when none are configured.

No STUN or TURN server is ever used (`rtc_configuration()`): the hub serves its LAN and loopback,
and a public STUN server would leak the box's address and traffic off the LAN.

The patch is one assignment, reversible (`host_addresses()` restores the previous state), and
tested against aioice's gathering in `tests/egress/test_ice.py`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

from hub.config import HubConfig

_aioice_get_host_addresses = aioice.ice.get_host_addresses
_addresses: tuple[str, ...] = ()


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _addresses:
        return _aioice_get_host_addresses(use_ipv4, use_ipv6)
    return [
        addr
        for addr in _addresses
        if (use_ipv4 and ipaddress.ip_address(addr).version == 4)
        or (use_ipv6 and ipaddress.ip_address(addr).version == 6)
    ]


def use_host_addresses(addresses: Iterable[str]) -> None:
    """Offer only `addresses` as ICE host candidates from now on; empty restores aioice's choice.

    Raises ValueError if one is not an IP address (config validation already checks this).
    """
    global _addresses
    wanted = tuple(addresses)
    for addr in wanted:
        ipaddress.ip_address(addr)
    _addresses = wanted
    aioice.ice.get_host_addresses = _configured_host_addresses


def addresses_for(hub: HubConfig) -> tuple[str, ...]:
    """The ICE host addresses a hub with this config should offer.

    `[hub] ice_addresses` when set. Otherwise, a hub that listens only on a loopback address (the
    demo, the tests) offers that address — aioice's default skips loopback, so its peers could never
    connect; any other hub gets aioice's default (every non-loopback interface).
    """
    if hub.ice_addresses:
        return hub.ice_addresses
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(hub.bind).is_loopback:
            return (hub.bind,)
    return ()


def current_host_addresses() -> tuple[str, ...]:
    """The configured addresses; empty when aioice picks (every non-loopback interface)."""
    return _addresses if aioice.ice.get_host_addresses is _configured_host_addresses else ()


@contextlib.contextmanager
def host_addresses(addresses: Iterable[str]) -> Iterator[None]:
    """`use_host_addresses` for the duration of a block, then the previous setting again."""
    global _addresses
    previous_fn, previous = aioice.ice.get_host_addresses, _addresses
    use_host_addresses(addresses)
    try:
        yield
    finally:
        _addresses = previous
        aioice.ice.get_host_addresses = previous_fn


def rtc_configuration() -> RTCConfiguration:
    """The only RTCConfiguration the hub uses: no STUN/TURN servers (aiortc defaults to Google STUN)."""
    return RTCConfiguration(iceServers=[])


def turn_configuration(url: str, username: str, credential: str) -> RTCConfiguration:
    """Media through a relay's TURN server only (PROTOCOL §7.3): the one ICE server is that TURN
    server and only relayed candidates are offered, so a peer behind NAT never reveals or opens its
    own address; DTLS-SRTP still runs end to end between the two peers, through TURN."""
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=url, username=username, credential=credential)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
