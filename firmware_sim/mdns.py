"""mDNS/DNS-SD advertisement of the cameras (RFC 6762/6763) with python-zeroconf.

Each camera is one ``_rtsp._tcp.local.`` service named ``<camera>._rtsp._tcp.local.`` with TXT
keys ``model``, ``path`` (main stream), ``sub`` (sub stream), ``events`` (SSE URL) and
``control``. Zeroconf is bound to the sim's host address (loopback in tests and the demo).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

if TYPE_CHECKING:
    from firmware_sim.camera import SimCamera

SERVICE_TYPE = "_rtsp._tcp.local."


def service_info(camera: SimCamera, address: str) -> ServiceInfo:
    assert camera.rtsp is not None
    props = {"model": camera.model, "path": f"/{camera.name}/main", "sub": f"/{camera.name}/sub"}
    if camera.control is not None:
        props["events"] = camera.events_url
        props["control"] = camera.control_url
    return ServiceInfo(
        SERVICE_TYPE,
        f"{camera.name}.{SERVICE_TYPE}",
        addresses=[ipaddress.ip_address(address).packed],
        port=camera.rtsp.port,
        properties=props,
        server=f"camhub-{camera.name}.local.",
    )


class MdnsAdvertiser:
    """Registers cameras on one AsyncZeroconf instance bound to ``address``."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        if address in ("0.0.0.0", "::", "localhost"):
            address = socket.gethostbyname(socket.gethostname()) if address != "localhost" else "127.0.0.1"
        self.address = address
        self.zc: AsyncZeroconf | None = None
        self._infos: list[ServiceInfo] = []

    async def start(self) -> None:
        version = IPVersion.V6Only if ":" in self.address else IPVersion.V4Only
        self.zc = AsyncZeroconf(interfaces=[self.address], ip_version=version)

    async def advertise(self, camera: SimCamera) -> None:
        assert self.zc is not None
        info = service_info(camera, self.address)
        # Another simulator (a second `camhub demo`, a test) may already announce this name on the
        # same machine: take "sim-1 (2)" as a real camera would, instead of failing to start.
        await self.zc.async_register_service(info, allow_name_change=True)
        self._infos.append(info)

    async def stop(self) -> None:
        if self.zc is not None:
            for info in self._infos:
                # The call returns a task that sends the goodbye packets: await it too, or the
                # close below can cut it off and browsers keep the camera until its TTL runs out.
                await (await self.zc.async_unregister_service(info))
            self._infos.clear()
            await self.zc.async_close()
            self.zc = None
