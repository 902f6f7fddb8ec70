"""The services the daemon builds at start and every subsystem and route reads.

One object rather than module globals, so a test can run two hubs in one process and shutdown is
explicit: whatever is here was started by `hub.daemon` and is stopped by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from camhub_protocol.keys import HubKey
from hub.config import Config
from hub.consent.pairing import PairingGuard
from hub.record.sealed import AtRest
from hub.store import Store
from hub.supervisor import Supervisor

if TYPE_CHECKING:
    from hub.consent.service import ConsentService
    from hub.discovery import Discovery
    from hub.ingest.camera import Cameras
    from hub.notify.service import Notifier
    from hub.onvif.discovery import OnvifDiscovery
    from hub.uplink.link import RelayLink


@dataclass
class Services:
    config: Config
    store: Store
    hub_key: HubKey
    supervisor: Supervisor
    pairing: PairingGuard = field(default_factory=PairingGuard)
    base_url: str = ""
    # How footage and thumbnails are stored (hub/record/sealed.py): every reader opens them through it.
    at_rest: AtRest = field(default_factory=AtRest)
    # Consent (PROTOCOL.md): audit log, clock guard, deliveries; started by the daemon before the API.
    consent: ConsentService | None = None
    # Every camera's source loop, recorder, live relay and WHIP endpoint state; started after consent.
    cameras: Cameras | None = None
    # mDNS browse/advertise; None when disabled or multicast is unavailable.
    discovery: Discovery | None = None
    # WS-Discovery probes for ONVIF cameras (`[discovery] onvif`); None when off or no UDP socket.
    onvif_discovery: OnvifDiscovery | None = None
    # The outbound link to a camhub-relay (`[relay]`, PROTOCOL §7); None when not configured.
    uplink: RelayLink | None = None
    # The owner's notifications (Home Assistant over MQTT, Web Push; PROTOCOL §8); started after the
    # cameras, stopped before them.
    notifier: Notifier | None = None


# Routes reach the services through this typed key (aiohttp's AppKey), never a string.
SERVICES = web.AppKey("services", Services)
