"""mDNS/DNS-SD: find cameras on the LAN and advertise the hub (RFC 6762, RFC 6763), via zeroconf.

`Discovery` browses `_rtsp._tcp.local.` and keeps a list of the cameras it sees. Nothing is added
to the hub automatically: the owner picks from this list. A camera's `uid` is its TXT `id` when it
publishes one, else its DNS-SD instance name, never its address, so a camera that moves to a new
address (DHCP) is still the same camera. It also advertises the hub itself as
`_camhub._tcp.local.` with `hub_id` in TXT, so apps on the LAN can find and pin the hub.

TXT keys read from cameras (RFC 6763 §6): `model`, `path` (the RTSP path of the main stream),
`sub` (of the sub-stream), `events` or `events_url` (the Server-Sent Events URL), `id`.

`interfaces` restricts mDNS to the given interface addresses (e.g. `["127.0.0.1"]` in tests, or the
LAN address on a box with several networks); None means every interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf, get_all_addresses
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

RTSP_SERVICE = "_rtsp._tcp.local."
HUB_SERVICE = "_camhub._tcp.local."
RESOLVE_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class DiscoveredCamera:
    """A camera seen on the LAN; not a configured camera until the owner adds it."""

    uid: str
    instance: str
    """DNS-SD instance name, e.g. `sim-1`."""
    service_name: str
    """Full service name, e.g. `sim-1._rtsp._tcp.local.`."""
    host: str
    addresses: tuple[str, ...]
    port: int
    model: str | None
    path: str | None
    sub_path: str | None
    events_url: str | None
    txt: dict[str, str] = field(default_factory=dict)
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def rtsp_url(self) -> str:
        """The main stream's URL, without credentials (the owner enters them when adding it)."""
        return self._url(self.path or "/")

    @property
    def sub_url(self) -> str | None:
        """The low-resolution sub-stream's URL, for motion detection, if the camera has one."""
        return None if self.sub_path is None else self._url(self.sub_path)

    def _url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"rtsp://{host}:{self.port}{path if path.startswith('/') else '/' + path}"


def _txt(info: AsyncServiceInfo) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (info.properties or {}).items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if value is None:
            out[k] = ""
        else:
            out[k] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out


def _ip_version(interfaces: Sequence[str] | None) -> IPVersion:
    if interfaces is None:
        return IPVersion.V4Only
    versions = {ipaddress.ip_address(a).version for a in interfaces}
    if versions == {4}:
        return IPVersion.V4Only
    if versions == {6}:
        return IPVersion.V6Only
    return IPVersion.All


class Discovery:
    """Browse for cameras and advertise the hub; `start()`/`stop()` on the daemon's event loop."""

    def __init__(
        self,
        *,
        hub_id: str | None = None,
        hub_port: int | None = None,
        hub_scheme: str = "https",
        hub_name: str = "camhub",
        interfaces: Sequence[str] | None = None,
        advertise_addresses: Sequence[str] | None = None,
        browse: bool = True,
    ) -> None:
        if (hub_id is None) != (hub_port is None):
            raise ValueError("advertising the hub needs both hub_id and hub_port")
        self._hub_id = hub_id
        self._hub_port = hub_port
        self._hub_scheme = hub_scheme
        self._hub_name = hub_name
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._advertise_addresses = list(advertise_addresses) if advertise_addresses else None
        self._browse = browse
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._hub_info: AsyncServiceInfo | None = None
        self._cameras: dict[str, DiscoveredCamera] = {}
        self._uid_by_service: dict[str, str] = {}
        self._resolving: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def zeroconf(self) -> AsyncZeroconf:
        if self._zc is None:
            raise RuntimeError("Discovery is not started")
        return self._zc

    @property
    def hub_service_name(self) -> str | None:
        return None if self._hub_info is None else self._hub_info.name

    def cameras(self) -> list[DiscoveredCamera]:
        """The cameras currently seen, by instance name."""
        return sorted(self._cameras.values(), key=lambda c: (c.instance, c.uid))

    async def wait_for(
        self, predicate: Callable[[list[DiscoveredCamera]], bool], timeout_s: float
    ) -> list[DiscoveredCamera]:
        """Wait until `predicate(cameras())` holds; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                cams = self.cameras()
                if predicate(cams):
                    return cams
                await changed.wait()

    async def start(self) -> None:
        if self._zc is not None:
            raise RuntimeError("Discovery already started")
        interfaces = self._interfaces
        self._zc = AsyncZeroconf(
            interfaces=interfaces if interfaces is not None else InterfaceChoice.All,
            ip_version=_ip_version(interfaces),
        )
        try:
            if self._hub_id is not None:
                await self._advertise()
            if self._browse:
                self._browser = AsyncServiceBrowser(
                    self._zc.zeroconf, [RTSP_SERVICE], handlers=[self._on_change]
                )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Withdraw the hub's advertisement (goodbye packets), stop browsing, close. Idempotent."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        tasks = list(self._resolving)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._hub_info is not None:
            with contextlib.suppress(Exception):
                await zc.async_unregister_service(self._hub_info)
            self._hub_info = None
        await zc.async_close()

    async def _advertise(self) -> None:
        assert self._zc is not None and self._hub_id is not None and self._hub_port is not None
        # DNS labels (RFC 1035 §2.3.1): letters, digits and hyphens, at most 63 bytes. The host name
        # is the hub's name, so `https://<name>.local` (the name hub/tls.py certifies) resolves;
        # the instance name adds a piece of hub_id so two hubs with one name stay apart.
        label = re.sub(r"[^a-z0-9-]+", "-", self._hub_name.lower()).strip("-")[:52] or "camhub"
        short = re.sub(r"[^a-z0-9]", "", self._hub_id.lower())[:10] or "hub"
        instance = f"{label}-{short}"
        addresses = self._advertise_addresses or self._interfaces or _lan_addresses()
        info = AsyncServiceInfo(
            HUB_SERVICE,
            f"{instance}.{HUB_SERVICE}",
            port=self._hub_port,
            properties={"hub_id": self._hub_id, "api": "/api/v1", "scheme": self._hub_scheme},
            parsed_addresses=addresses,
            server=f"{label}.local.",
        )
        # The hub name may collide with another hub's on the LAN: let zeroconf pick a free one.
        await (await self._zc.async_register_service(info, allow_name_change=True))
        self._hub_info = info
        log.info("discovery: advertising %s on %s port %d", info.name, addresses, self._hub_port)

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Called on the event loop by the browser; resolving needs a round trip, so do it in a task.
        if state_change is ServiceStateChange.Removed:
            uid = self._uid_by_service.pop(name, None)
            camera = None if uid is None else self._cameras.get(uid)
            # Only drop the camera if this name is still how it is known (it may have been renamed).
            if camera is not None and camera.service_name == name:
                del self._cameras[camera.uid]
                log.info("discovery: camera %s (%s) gone", camera.uid, name)
                self._signal()
            return
        task = asyncio.get_running_loop().create_task(
            self._resolve(service_type, name), name=f"camhub-discovery-resolve-{name}"
        )
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.info("discovery: %s did not resolve", name)
            return
        addresses = tuple(info.parsed_scoped_addresses())
        if not addresses or info.port is None:
            return
        txt = _txt(info)
        instance = name[: -len(service_type) - 1] if name.endswith("." + service_type) else name
        uid = txt.get("id") or instance
        now = time.time()
        previous = self._cameras.get(uid)
        camera = DiscoveredCamera(
            uid=uid,
            instance=instance,
            service_name=name,
            host=addresses[0],
            addresses=addresses,
            port=info.port,
            model=txt.get("model"),
            path=txt.get("path"),
            sub_path=txt.get("sub"),
            events_url=txt.get("events") or txt.get("events_url"),
            txt=txt,
            first_seen=previous.first_seen if previous is not None else now,
            last_seen=now,
        )
        self._uid_by_service[name] = uid
        self._cameras[uid] = camera
        if previous is None:
            log.info("discovery: found camera %s at %s:%d", uid, camera.host, camera.port)
        elif previous.addresses != camera.addresses or previous.port != camera.port:
            log.info("discovery: camera %s moved to %s:%d", uid, camera.host, camera.port)
        self._signal()

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _lan_addresses() -> list[str]:
    """IPv4 addresses to advertise when none are configured: every non-loopback one, else loopback."""
    addrs = [a for a in get_all_addresses() if not ipaddress.ip_address(a).is_loopback]
    return addrs or ["127.0.0.1"]
