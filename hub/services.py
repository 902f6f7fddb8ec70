"""The services the daemon builds at start and every subsystem and route reads.

One object rather than module globals, so a test can run two hubs in one process and shutdown is
explicit: whatever is here was started by `hub.daemon` and is stopped by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from hub.config import Config
from hub.consent.keys import HubKey
from hub.consent.pairing import PairingGuard
from hub.store import Store
from hub.supervisor import Supervisor


@dataclass
class Services:
    config: Config
    store: Store
    hub_key: HubKey
    supervisor: Supervisor
    pairing: PairingGuard = field(default_factory=PairingGuard)
    base_url: str = ""


# Routes reach the services through this typed key (aiohttp's AppKey), never a string.
SERVICES = web.AppKey("services", Services)
