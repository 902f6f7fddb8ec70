"""Find ONVIF cameras on the LAN with WS-Discovery (WS-Discovery 2005/04 §5.2, ONVIF Core §7.3).

Every `interval_s` the hub sends a Probe for `dn:NetworkVideoTransmitter` (built and serialized by
the `WSDiscovery` package) to the multicast group 239.255.255.250:3702, or to each configured
`host:port` target (unicast: cameras on another subnet, and tests on 127.0.0.1), from one UDP
socket of its own; cameras answer that socket with ProbeMatches. Nothing is added to the hub: the
owner picks from this list (Settings), as with mDNS (hub/discovery.py).

A camera's `uid` is its endpoint reference (`urn:uuid:…`, stable across address changes, ONVIF
Core §7.1); its `onvif_url` is `http://host:port` of the first http XAddr, which is what the
camera's `onvif` setting takes. A camera that has not answered for three probes is dropped.

ProbeMatches are untrusted UDP from anyone on the LAN: a datagram over `MAX_DATAGRAM` bytes, with a
DTD, entity declarations or external references (defusedxml refuses them), or that WSDiscovery's
parser cannot read, or whose RelatesTo is not one of our recent probes, is dropped; at most
`MAX_CAMERAS` cameras are kept, and every string is cut to a bounded length.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import defusedxml.ElementTree
from defusedxml import DefusedXmlException
from wsdiscovery.actions.probe import constructProbe
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
from wsdiscovery.namespaces import NS_ACTION_PROBE_MATCH
from wsdiscovery.qname import QName

from hub.supervisor import stop_task

log = logging.getLogger(__name__)
# WSDiscovery's parser logs a WARNING with the whole datagram for a message without an Action: any
# LAN host could fill the journal with those. The hub counts what it drops (`dropped`) instead.
logging.getLogger("wsdiscovery").setLevel(logging.ERROR)

MULTICAST_GROUP = "239.255.255.250"
WSD_PORT = 3702
NS_NETWORK = "http://www.onvif.org/ver10/network/wsdl"
MAX_DATAGRAM = 32 * 1024
MAX_CAMERAS = 256
MAX_TEXT = 200


@dataclass(frozen=True)
class DiscoveredOnvif:
    """An ONVIF camera that answered a Probe; not a configured camera until the owner adds it."""

    uid: str
    onvif_url: str
    xaddrs: tuple[str, ...]
    name: str | None
    hardware: str | None
    address: str
    first_seen: float
    last_seen: float


def _scope(scopes: Sequence[str], kind: str) -> str | None:
    prefix = f"onvif://www.onvif.org/{kind}/"
    for scope in scopes:
        if scope.startswith(prefix):
            return unquote(scope[len(prefix) :]).replace("_", " ")[:MAX_TEXT] or None
    return None


def _onvif_url(xaddrs: Sequence[str]) -> str | None:
    for xaddr in xaddrs:
        try:
            parts = urlsplit(xaddr)
            port = parts.port
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            default = 443 if parts.scheme == "https" else 80
            return f"{parts.scheme}://{host}:{port or default}"
    return None


class OnvifDiscovery(asyncio.DatagramProtocol):
    """Probe for ONVIF cameras and keep the list of those that answer; `start()`/`stop()`."""

    def __init__(
        self,
        *,
        interval_s: float = 60.0,
        targets: Sequence[str] = (),
        interface: str | None = None,
    ) -> None:
        self._interval_s = interval_s
        self._targets = [_host_port(t) for t in targets]
        self._interface = interface
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe_ids: deque[str] = deque(maxlen=16)
        self._cameras: dict[str, DiscoveredOnvif] = {}
        self._changed = asyncio.Event()
        self.dropped = 0

    def cameras(self) -> list[DiscoveredOnvif]:
        horizon = time.time() - 3 * self._interval_s
        return sorted(
            (c for c in self._cameras.values() if c.last_seen >= horizon), key=lambda c: (c.name or "", c.uid)
        )

    async def wait_for(
        self, predicate: Callable[[list[DiscoveredOnvif]], bool], timeout_s: float
    ) -> list[DiscoveredOnvif]:
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                cams = self.cameras()
                if predicate(cams):
                    return cams
                await changed.wait()

    async def start(self) -> None:
        if self._transport is not None:
            raise RuntimeError("OnvifDiscovery already started")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.bind((self._interface or "0.0.0.0", 0))
            if not self._targets:
                # Probes stay on the local link (ONVIF Core §7.3: TTL 1 is what cameras expect).
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", 1))
                if self._interface:
                    sock.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._interface)
                    )
        except OSError:
            sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport
        self._task = loop.create_task(self._probe_loop(), name="camhub-onvif-discovery")

    async def stop(self) -> None:
        """Stop probing and close the socket. Idempotent."""
        task, self._task = self._task, None
        await stop_task(task)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def probe(self) -> None:
        """Send one Probe now (also done every interval)."""
        if self._transport is None:
            return
        env = constructProbe([QName(NS_NETWORK, "NetworkVideoTransmitter", "dn")], [])
        self._probe_ids.append(env.getMessageId())
        data = createSOAPMessage(env).encode("utf-8")
        for target in self._targets or [(MULTICAST_GROUP, WSD_PORT)]:
            try:
                self._transport.sendto(data, target)
            except OSError as exc:
                log.debug("onvif discovery: probe to %s:%d failed: %s", target[0], target[1], exc)

    async def _probe_loop(self) -> None:
        while True:
            self.probe()
            await asyncio.sleep(self._interval_s)

    def error_received(self, exc: Exception) -> None:
        log.debug("onvif discovery: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            self._receive(data, addr[0])
        except Exception:
            # Whatever a LAN host sends, discovery goes on.
            self.dropped += 1
            log.debug("onvif discovery: unreadable answer from %s", addr[0], exc_info=True)

    def _receive(self, data: bytes, sender: str) -> None:
        if len(data) > MAX_DATAGRAM:
            self.dropped += 1
            return
        try:
            # Refuses DTDs, entity declarations and external references before anything else reads it.
            defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
        except (DefusedXmlException, defusedxml.ElementTree.ParseError):
            self.dropped += 1
            return
        env = parseSOAPMessage(data, sender)
        if env is None or env.getAction() != NS_ACTION_PROBE_MATCH:
            self.dropped += 1  # a fault, no Action, or another WS-Discovery message (Probe, Hello, …)
            return
        if env.getRelatesTo() not in self._probe_ids:
            self.dropped += 1  # not an answer to a probe of ours
            return
        now = time.time()
        for match in env.getProbeResolveMatches():
            xaddrs = tuple(str(x)[:MAX_TEXT] for x in (match.getXAddrs() or [])[:8])
            url = _onvif_url(xaddrs)
            uid = str(match.getEPR() or "")[:MAX_TEXT]
            if url is None or not uid:
                continue
            if uid not in self._cameras and len(self._cameras) >= MAX_CAMERAS:
                self.dropped += 1
                continue
            scopes = [str(s.getValue()) for s in match.getScopes() or []]
            previous = self._cameras.get(uid)
            camera = DiscoveredOnvif(
                uid=uid,
                onvif_url=url,
                xaddrs=xaddrs,
                name=_scope(scopes, "name"),
                hardware=_scope(scopes, "hardware"),
                address=sender,
                first_seen=previous.first_seen if previous else now,
                last_seen=now,
            )
            self._cameras[uid] = camera
            if previous is None or previous.onvif_url != url:
                log.info("onvif discovery: camera %s at %s", uid, url)
        self._signal()

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
