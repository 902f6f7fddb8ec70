"""Several simulated cameras in one process behind one RTSP server and one control server.

``camhub-sim`` and the hub's ``camhub demo`` use this::

    async with SimFleet(cameras=2, width=640, height=360) as fleet:
        for cam in fleet.cameras:
            print(cam.rtsp_url("main"), cam.rtsp_url("sub"), cam.events_url, cam.control_url)
        await fleet["sim-1"].visitor(ring=True)

Start-up encodes each distinct clip once (shared by all cameras), then starts the servers
and the cameras' frame clocks; :meth:`stop` undoes it in reverse order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Self

from firmware_sim.camera import SimCamera
from firmware_sim.control import ControlServer
from firmware_sim.mdns import MdnsAdvertiser
from firmware_sim.onvif import OnvifServer, WsDiscoveryResponder
from firmware_sim.rtsp import RtspServer


class SimFleet:
    """Cameras ``sim-1`` … ``sim-N`` sharing servers."""

    def __init__(
        self,
        cameras: int = 1,
        *,
        host: str = "127.0.0.1",
        rtsp_port: int = 0,
        control_port: int | None = 0,
        user: str = "admin",
        password: str = "camhub",
        mdns: bool = False,
        session_timeout_s: float = 60.0,
        onvif: bool = False,
        onvif_port: int = 0,
        wsd_port: int | None = None,
        wsd_multicast: bool = False,
        **camera_options: Any,
    ) -> None:
        if cameras < 1:
            raise ValueError("need at least one camera")
        self.cameras = [SimCamera(f"sim-{i}", host=host, **camera_options) for i in range(1, cameras + 1)]
        self.rtsp = RtspServer(
            host, rtsp_port, user=user, password=password, session_timeout_s=session_timeout_s
        )
        self.control = ControlServer(host, control_port) if control_port is not None else None
        self.mdns = MdnsAdvertiser(host) if mdns else None
        # ONVIF: one device service per camera (its URL is the camera's identity, `http://host:port`),
        # on onvif_port, onvif_port + 1, … (0: any free ports); one WS-Discovery responder for all.
        self.onvif_servers = (
            [
                OnvifServer(
                    c, host=host, port=onvif_port + i if onvif_port else 0, user=user, password=password
                )
                for i, c in enumerate(self.cameras)
            ]
            if onvif
            else []
        )
        self.wsd = (
            WsDiscoveryResponder(self.cameras, host=host, port=wsd_port, multicast=wsd_multicast)
            if onvif and wsd_port is not None
            else None
        )
        self._started: list[Any] = []

    def __getitem__(self, name: str) -> SimCamera:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(name)

    def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.cameras]

    async def start(self) -> None:
        try:
            await asyncio.gather(*(c.prepare() for c in self.cameras))
            for camera in self.cameras:
                self.rtsp.add_camera(camera)
                if self.control is not None:
                    self.control.add_camera(camera)
            await self.rtsp.start()
            self._started.append(self.rtsp)
            if self.control is not None:
                await self.control.start()
                self._started.append(self.control)
            for server in self.onvif_servers:
                await server.start()
                self._started.append(server)
            if self.wsd is not None:
                await self.wsd.start()
                self._started.append(self.wsd)
            for camera in self.cameras:
                await camera.start_clock()
                self._started.append(_Clock(camera))
            if self.mdns is not None:
                await self.mdns.start()
                self._started.append(self.mdns)
                for camera in self.cameras:
                    await self.mdns.advertise(camera)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _Clock:
    def __init__(self, camera: SimCamera) -> None:
        self.camera = camera

    async def stop(self) -> None:
        await self.camera.stop_clock()


def default_cache_dir() -> Path:
    """Where the CLI keeps encoded clips between runs (never inside the repository)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "camhub-sim"
