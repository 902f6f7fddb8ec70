"""Enough ONVIF for a hub to find the camera, read its streams and follow its doorbell presses.

Two small servers, written by hand on purpose (the hub's side uses `onvif-zeep-async` and
`WSDiscovery`, so the tests check two independent implementations against each other):

- :class:`OnvifServer` (aiohttp), one per camera, at ``http://host:port/onvif/...``:
  device service (GetSystemDateAndTime, GetDeviceInformation, GetCapabilities, GetServices),
  media service (GetProfiles, GetStreamUri; profile ``main`` and ``sub``) and events service
  (CreatePullPointSubscription, PullMessages, Renew, Unsubscribe, SetSynchronizationPoint).
  SOAP 1.2 requests are parsed with the stdlib's ElementTree, which refuses DTDs with entities
  it cannot expand safely; bodies over :data:`MAX_BODY` get 413.
- :class:`WsDiscoveryResponder` (UDP), one per process: answers WS-Discovery Probes
  (WS-Discovery 2005/04 §5.2, ONVIF Core §7.3) for ``dn:NetworkVideoTransmitter`` with a
  ProbeMatch naming each camera's device service. It answers unicast probes sent to its socket
  and, with ``multicast=True``, joins 239.255.255.250 on its interface.

Authentication is WS-Security UsernameToken (OASIS UsernameToken Profile 1.1 §3.1, ONVIF Core
§5.9.4): ``PasswordDigest = Base64(SHA-1(nonce + created + password))``, Created within
:data:`MAX_CLOCK_SKEW_S` of the camera's clock, each nonce used once. GetSystemDateAndTime,
GetCapabilities and GetServices are PRE_AUTH (ONVIF Core §5.9.4.3) and answered without a token;
a token that is present is checked everywhere, and a bad one gets a SOAP fault
``ter:NotAuthorized`` with HTTP 400.

A press on the control API (or a ring in a visitor clip) becomes the event
``tns1:RuleEngine/MyRuleDetector/Visitor`` (State true), and the visitor clip's motion
``tns1:RuleEngine/CellMotionDetector/Motion`` (IsMotion true/false), on every pull-point
subscription. A ``reboot`` fault ends every subscription, as a real reboot does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

if TYPE_CHECKING:
    from firmware_sim.camera import CameraEvent, EventListener, SimCamera

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_CLOCK_SKEW_S = 300.0
MAX_SUBSCRIPTIONS = 8
MAX_PULL_TIMEOUT_S = 60.0
DEFAULT_TERMINATION_S = 600.0
MAX_TERMINATION_S = 3600.0
WSD_PORT = 3702
WSD_GROUP = "239.255.255.250"
MAX_DATAGRAM = 16 * 1024

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
_XMLNS = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items())
_DIGEST_TYPE = "#PasswordDigest"
PRE_AUTH = frozenset({"GetSystemDateAndTime", "GetCapabilities", "GetServices"})

TOPIC_VISITOR = "tns1:RuleEngine/MyRuleDetector/Visitor"
TOPIC_MOTION = "tns1:RuleEngine/CellMotionDetector/Motion"


class SoapFault(Exception):
    """Answered as a SOAP 1.2 Fault (ONVIF Core §5.11.2): code, ONVIF subcode, reason."""

    def __init__(self, subcode: str, reason: str, *, code: str = "s:Sender", status: int = 400) -> None:
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.status = code, subcode, reason, status


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {_XMLNS}><s:Body>{body}</s:Body></s:Envelope>'
    )


def _response(body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=_envelope(body).encode(), content_type="application/soap+xml", charset="utf-8"
    )


def _fault(exc: SoapFault) -> web.Response:
    body = (
        f"<s:Fault><s:Code><s:Value>{exc.code}</s:Value><s:Subcode><s:Value>{exc.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">{escape(exc.reason)}</s:Text></s:Reason></s:Fault>'
    )
    return _response(body, status=exc.status)


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """An xs:duration of days/hours/minutes/seconds (``PT60S``) in seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if m is None or text.strip() in ("P", "PT"):
        raise ValueError(f"not a duration: {text!r}")
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def _termination(text: str | None, now: dt.datetime) -> dt.datetime:
    """An InitialTerminationTime/TerminationTime: a duration from now or an absolute xs:dateTime."""
    if not text:
        return now + dt.timedelta(seconds=DEFAULT_TERMINATION_S)
    text = text.strip()
    try:
        if text.startswith("P"):
            seconds = parse_duration(text)
        else:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            seconds = (when - now).total_seconds()
    except ValueError as exc:
        raise SoapFault("wsrf-rw:InvalidTerminationTime", str(exc)) from exc
    if seconds <= 0:
        raise SoapFault("wsnt:UnacceptableInitialTerminationTimeFault", "termination time in the past")
    return now + dt.timedelta(seconds=min(seconds, MAX_TERMINATION_S))


@dataclass
class Subscription:
    id: str
    listener: EventListener
    terminates: dt.datetime
    pending: deque[CameraEvent] = field(default_factory=deque)


class OnvifServer:
    """One camera's device, media and events services on ``host:port``."""

    def __init__(
        self, camera: SimCamera, *, host: str = "127.0.0.1", port: int = 0, user: str, password: str
    ) -> None:
        self.camera = camera
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.device_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"camhub-sim:{camera.name}"))
        self.subscriptions: dict[str, Subscription] = {}
        self._nonces: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        # Test hooks: every operation served, in order (the tests assert Renew was called).
        self.calls: list[str] = []

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def device_url(self) -> str:
        return f"{self.base_url}/onvif/device_service"

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/onvif/device_service", self._handle)
        app.router.add_post("/onvif/media_service", self._handle)
        app.router.add_post("/onvif/events_service", self._handle)
        app.router.add_post("/onvif/subscription/{sid}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.camera.onvif = self

    async def stop(self) -> None:
        self.end_subscriptions()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def end_subscriptions(self) -> None:
        """Forget every subscription (a reboot: clients must subscribe again)."""
        for sub in self.subscriptions.values():
            sub.listener.__exit__(None, None, None)
        self.subscriptions.clear()

    # --- request handling -------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _fault(SoapFault("ter:InvalidArgs", "request too large", status=413))
        try:
            op, body, header = self._parse(raw)
            self._authenticate(op, header)
            self.calls.append(op)
            return _response(await self._dispatch(op, body, request))
        except SoapFault as exc:
            return _fault(exc)

    @staticmethod
    def _parse(raw: bytes) -> tuple[str, ET.Element, ET.Element | None]:
        if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
            # SOAP 1.2 Part 1 §5: a SOAP message must not contain a DTD.
            raise SoapFault("ter:InvalidArgs", "a SOAP message must not contain a DTD")
        try:
            root = ET.fromstring(raw)
        except ET.ParseError as exc:
            raise SoapFault("ter:InvalidArgs", f"not well-formed XML: {exc}") from exc
        if root.tag != f"{{{NS['s']}}}Envelope":
            raise SoapFault("ter:InvalidArgs", "not a SOAP 1.2 envelope", code="s:VersionMismatch")
        body = root.find("s:Body", NS)
        if body is None or len(body) == 0:
            raise SoapFault("ter:InvalidArgs", "empty SOAP body")
        op_el = body[0]
        op = op_el.tag.rpartition("}")[2]
        return op, op_el, root.find("s:Header", NS)

    def _authenticate(self, op: str, header: ET.Element | None) -> None:
        token = None if header is None else header.find("wsse:Security/wsse:UsernameToken", NS)
        if token is None:
            if op in PRE_AUTH:
                return
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        user = token.findtext("wsse:Username", "", NS)
        password_el = token.find("wsse:Password", NS)
        nonce_b64 = token.findtext("wsse:Nonce", "", NS).strip()
        created = token.findtext("wsu:Created", "", NS).strip()
        if password_el is None or not (password_el.get("Type") or "").endswith(_DIGEST_TYPE):
            # Plain-text passwords cross the LAN readable: this camera takes digests only.
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        try:
            nonce = base64.b64decode(nonce_b64, validate=True)
            when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SoapFault("ter:NotAuthorized", "sender not authorized") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        now = time.time()
        if abs(when.timestamp() - self.camera.camera_time()) > MAX_CLOCK_SKEW_S or not nonce:
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        expected = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + self.password.encode()).digest()
        ).decode()
        supplied = (password_el.text or "").strip()
        ok = hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            supplied.encode(), expected.encode()
        )
        # A replayed token (same nonce) is refused for as long as its Created is acceptable.
        self._nonces = {n: t for n, t in self._nonces.items() if now - t <= 2 * MAX_CLOCK_SKEW_S}
        if not ok or nonce_b64 in self._nonces:
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        self._nonces[nonce_b64] = now

    async def _dispatch(self, op: str, body: ET.Element, request: web.Request) -> str:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise SoapFault("ter:ActionNotSupported", f"{op} is not supported", code="s:Receiver")
        if op in ("PullMessages", "Renew", "Unsubscribe", "SetSynchronizationPoint"):
            sub = self.subscriptions.get(request.match_info.get("sid", ""))
            if sub is None or sub.terminates <= _now():
                if sub is not None:
                    self._end(sub)
                raise SoapFault("wsrf-rw:ResourceUnknownFault", "no such subscription")
            result: str = await handler(body, sub)
            return result
        return str(await handler(body))

    # --- device service (ONVIF Device Management §8) ----------------------------------------
    async def _op_GetSystemDateAndTime(self, body: ET.Element) -> str:
        t = dt.datetime.fromtimestamp(self.camera.camera_time(), dt.UTC)
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime>"
            f"<tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute><tt:Second>{t.second}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{t.year}</tt:Year><tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date>"
            "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    async def _op_GetDeviceInformation(self, body: ET.Element) -> str:
        return (
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>camhub</tds:Manufacturer>"
            f"<tds:Model>{escape(self.camera.model)}</tds:Model><tds:FirmwareVersion>sim</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(self.camera.name)}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(self.device_uuid)}</tds:HardwareId></tds:GetDeviceInformationResponse>"
        )

    def _xaddrs(self) -> dict[str, str]:
        return {
            NS["tds"]: f"{self.base_url}/onvif/device_service",
            NS["trt"]: f"{self.base_url}/onvif/media_service",
            NS["tev"]: f"{self.base_url}/onvif/events_service",
        }

    async def _op_GetServices(self, body: ET.Element) -> str:
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{escape(x)}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, x in self._xaddrs().items()
        )
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    async def _op_GetCapabilities(self, body: ET.Element) -> str:
        x = self._xaddrs()
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{escape(x[NS['tds']])}</tt:XAddr></tt:Device>"
            f"<tt:Events><tt:XAddr>{escape(x[NS['tev']])}</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>"
            "</tt:Events>"
            f"<tt:Media><tt:XAddr>{escape(x[NS['trt']])}</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
            "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    # --- media service (ONVIF Media §5) -----------------------------------------------------
    async def _op_GetProfiles(self, body: ET.Element) -> str:
        profiles = []
        for stream in ("main", "sub"):
            feed = self.camera.feeds[stream]
            width = feed.width or (self.camera.width if stream == "main" else self.camera.sub_width)
            height = feed.height or (self.camera.height if stream == "main" else self.camera.sub_height)
            profiles.append(
                f'<trt:Profiles token="{stream}" fixed="true"><tt:Name>{stream}</tt:Name>'
                f'<tt:VideoEncoderConfiguration token="venc-{stream}"><tt:Name>{stream}</tt:Name>'
                "<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
                f"<tt:Resolution><tt:Width>{width}</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>"
                "<tt:Quality>5</tt:Quality><tt:RateControl>"
                f"<tt:FrameRateLimit>{self.camera.fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
                "<tt:BitrateLimit>0</tt:BitrateLimit></tt:RateControl>"
                f"<tt:H264><tt:GovLength>{self.camera.gop}</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile></tt:H264>"
                "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration></trt:Profiles>"
            )
        return f"<trt:GetProfilesResponse>{''.join(profiles)}</trt:GetProfilesResponse>"

    async def _op_GetStreamUri(self, body: ET.Element) -> str:
        token = (body.findtext("trt:ProfileToken", "", NS) or "").strip()
        if token not in ("main", "sub"):
            raise SoapFault("ter:NoProfile", f"no profile {token!r}")
        uri = self.camera.rtsp_url(token, with_credentials=False)
        return (
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetStreamUriResponse>"
        )

    # --- events service (ONVIF Core §9.1, WS-BaseNotification) -----------------------------
    async def _op_CreatePullPointSubscription(self, body: ET.Element) -> str:
        now = _now()
        terminates = _termination(body.findtext("tev:InitialTerminationTime", None, NS), now)
        for sub in [s for s in self.subscriptions.values() if s.terminates <= now]:
            self._end(sub)
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise SoapFault("ter:MaxPullPoints", "too many subscriptions", code="s:Receiver")
        sid = secrets.token_hex(8)
        listener = self.camera.listen()
        listener.__enter__()
        self.subscriptions[sid] = Subscription(sid, listener, terminates)
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{self.base_url}/onvif/subscription/{sid}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{_iso(now)}</wsnt:CurrentTime><wsnt:TerminationTime>{_iso(terminates)}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _end(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)
        sub.listener.__exit__(None, None, None)

    async def _op_PullMessages(self, body: ET.Element, sub: Subscription) -> str:
        try:
            timeout = min(
                parse_duration(body.findtext("tev:Timeout", "PT1S", NS) or "PT1S"), MAX_PULL_TIMEOUT_S
            )
            limit = max(1, min(int(body.findtext("tev:MessageLimit", "10", NS) or "10"), 100))
        except ValueError as exc:
            raise SoapFault("ter:InvalidArgVal", str(exc)) from exc
        messages: list[CameraEvent] = []
        queue = sub.listener.queue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not messages:
                    event = await queue.get()
                    if event is None:  # the camera rebooted: this subscription is gone
                        self._end(sub)
                        raise SoapFault("wsrf-rw:ResourceUnknownFault", "no such subscription")
                    messages.append(event)
        while len(messages) < limit and not queue.empty():
            event = queue.get_nowait()
            if event is None:
                self._end(sub)
                break
            messages.append(event)
        notifications = "".join(_notification(e, self.camera.name) for e in messages if _topic(e))
        now = _now()
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{_iso(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{_iso(sub.terminates)}</tev:TerminationTime>{notifications}"
            "</tev:PullMessagesResponse>"
        )

    async def _op_Renew(self, body: ET.Element, sub: Subscription) -> str:
        now = _now()
        sub.terminates = _termination(body.findtext("wsnt:TerminationTime", None, NS), now)
        return (
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{_iso(sub.terminates)}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{_iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>"
        )

    async def _op_Unsubscribe(self, body: ET.Element, sub: Subscription) -> str:
        self._end(sub)
        return "<wsnt:UnsubscribeResponse/>"

    async def _op_SetSynchronizationPoint(self, body: ET.Element, sub: Subscription) -> str:
        return "<tev:SetSynchronizationPointResponse/>"


def _topic(event: CameraEvent) -> str | None:
    if event.type == "doorbell":
        return TOPIC_VISITOR
    if event.type == "motion":
        return TOPIC_MOTION
    return None


def _notification(event: CameraEvent, source: str) -> str:
    topic = _topic(event)
    if topic == TOPIC_VISITOR:
        name, value = "State", "true"
    else:
        name, value = "IsMotion", "true" if event.state == "start" else "false"
    when = _iso(dt.datetime.fromtimestamp(event.time, dt.UTC))
    return (
        "<wsnt:NotificationMessage>"
        f'<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">{topic}</wsnt:Topic>'
        f'<wsnt:Message><tt:Message UtcTime="{when}" PropertyOperation="Changed">'
        f'<tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value={quoteattr(source)}/></tt:Source>'
        f'<tt:Data><tt:SimpleItem Name="{name}" Value="{value}"/></tt:Data>'
        "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
    )


# --- WS-Discovery ----------------------------------------------------------------------------
WSD_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
}
ACTION_PROBE = "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe"
ACTION_PROBE_MATCHES = "http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches"


def _probe_wants_us(types: str) -> bool:
    """A Probe with no Types matches every target (WS-Discovery §5.2); else one must be ours
    (dn:NetworkVideoTransmitter or tds:Device), compared by local name."""
    words = types.split()
    return not words or any(w.rpartition(":")[2] in ("NetworkVideoTransmitter", "Device") for w in words)


class WsDiscoveryResponder(asyncio.DatagramProtocol):
    """Answers WS-Discovery Probes for every camera that has an :class:`OnvifServer`."""

    def __init__(
        self,
        cameras: list[SimCamera],
        *,
        host: str = "127.0.0.1",
        port: int = WSD_PORT,
        multicast: bool = False,
    ) -> None:
        self.cameras = cameras
        self.host, self.port, self.multicast = host, port, multicast
        self._transport: asyncio.DatagramTransport | None = None
        self._seen: deque[str] = deque(maxlen=256)
        self.probes = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.multicast:
                # Bound to the group, joined on our interface only: probes to the group reach us,
                # nothing else on port 3702 does (ONVIF Core §7.3: the multicast address and port).
                sock.bind((WSD_GROUP, self.port))
                mreq = struct.pack("4s4s", socket.inet_aton(WSD_GROUP), socket.inet_aton(self.host))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._transport = transport
        self.port = sock.getsockname()[1]
        where = f"{WSD_GROUP}:{self.port} on {self.host}" if self.multicast else f"{self.host}:{self.port}"
        log.info("ws-discovery: answering probes on udp %s", where)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            reply = self.answer(data)
        except Exception:
            log.exception("ws-discovery: cannot answer a probe from %s", addr[0])
            return
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def answer(self, data: bytes) -> bytes | None:
        """The ProbeMatches for one Probe datagram, or None (not a probe for us, malformed)."""
        if len(data) > MAX_DATAGRAM or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            return None
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            return None
        action = (root.findtext("s:Header/a:Action", "", WSD_NS) or "").strip()
        probe = root.find("s:Body/d:Probe", WSD_NS)
        if action != ACTION_PROBE or probe is None:
            return None
        message_id = (root.findtext("s:Header/a:MessageID", "", WSD_NS) or "").strip()
        # Probes are sent several times over UDP (SOAP-over-UDP §3.4): answer each id once.
        if not message_id or message_id in self._seen:
            return None
        self._seen.append(message_id)
        if not _probe_wants_us(probe.findtext("d:Types", "", WSD_NS) or ""):
            return None
        matches = []
        for camera in self.cameras:
            server = getattr(camera, "onvif", None)
            if server is None or server._runner is None:
                continue
            scopes = " ".join(
                [
                    "onvif://www.onvif.org/type/video_encoder",
                    "onvif://www.onvif.org/Profile/Streaming",
                    f"onvif://www.onvif.org/name/{camera.name}",
                    "onvif://www.onvif.org/hardware/" + re.sub(r"\s+", "_", camera.model),
                ]
            )
            matches.append(
                "<d:ProbeMatch><a:EndpointReference>"
                f"<a:Address>urn:uuid:{server.device_uuid}</a:Address></a:EndpointReference>"
                "<d:Types>dn:NetworkVideoTransmitter</d:Types>"
                f"<d:Scopes>{escape(scopes)}</d:Scopes><d:XAddrs>{escape(server.device_url)}</d:XAddrs>"
                "<d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch>"
            )
        if not matches:
            return None
        self.probes += 1
        xmlns = " ".join(f'xmlns:{p}="{u}"' for p, u in WSD_NS.items())
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {xmlns}><s:Header>'
            f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID><a:RelatesTo>{escape(message_id)}</a:RelatesTo>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:Action>{ACTION_PROBE_MATCHES}</a:Action></s:Header>"
            f"<s:Body><d:ProbeMatches>{''.join(matches)}</d:ProbeMatches></s:Body></s:Envelope>"
        ).encode()


def describe(camera: SimCamera) -> dict[str, Any]:
    server = getattr(camera, "onvif", None)
    return {} if server is None else {"onvif": server.base_url}
