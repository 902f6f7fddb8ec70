"""Run inside a network namespace with only loopback (tests/onvif/test_onvif_multicast.py): a
simulated camera answers WS-Discovery on the multicast group 239.255.255.250:3702 and the hub's
discovery finds it by a multicast Probe, as on a real LAN. Prints `found <onvif_url>` or fails."""

from __future__ import annotations

import asyncio
import sys

from firmware_sim.camera import SimCamera
from firmware_sim.onvif import WsDiscoveryResponder
from hub.onvif.discovery import OnvifDiscovery
from tests.firmware_sim.conftest import SMALL


async def main() -> int:
    async with SimCamera("mc-1", onvif=True, **SMALL) as cam:
        responder = WsDiscoveryResponder([cam], host="127.0.0.1", multicast=True)
        await responder.start()
        discovery = OnvifDiscovery(interval_s=1.0, interface="127.0.0.1")  # no targets: multicast
        await discovery.start()
        try:
            found = await discovery.wait_for(lambda cs: bool(cs), 20.0)
        finally:
            await discovery.stop()
            await responder.stop()
        assert cam.onvif is not None and found[0].onvif_url == cam.onvif.base_url, found
        print("found", found[0].onvif_url, "probes answered", responder.probes, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
