"""Configuration: TOML (stdlib `tomllib`) validated into frozen dataclasses.

Every problem is reported, not just the first, as one line naming the key and what is wrong
(`cameras.front.url: must be rtsp:// or whip`), so an owner fixing a file sees all of it at once.
Unknown keys are errors too: a misspelt `retention_dayz` silently ignored would keep footage longer
than the owner asked.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hub import redact

T = TypeVar("T")

CAMERA_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class HubConfig:
    name: str = "camhub"
    data_dir: Path = Path("/var/lib/camhub")
    # The hub's Ed25519 key (PROTOCOL.md §1), which also unwraps the footage storage key (encryption at
    # rest). None means `<data_dir>/keys/hub.key`; point it off the SD card (a USB key, or a systemd
    # credential: /run/credentials/camhub.service/hub.key) so a stolen card holds no key to its footage.
    key_file: Path | None = None
    bind: str = "127.0.0.1"
    port: int = 8080
    # HTTPS for the owner UI on the LAN (hub/tls.py). Served on `bind` whenever bind is not loopback
    # (then plain HTTP moves to 127.0.0.1:port); with a loopback bind only if set.
    https_port: int | None = None
    # Addresses aiortc may use for ICE host candidates; empty means every non-loopback interface.
    ice_addresses: tuple[str, ...] = ()
    log_level: str = "info"
    # An HTTP connection with no request in flight (idle keep-alive, or one still dribbling its
    # headers: slowloris) is closed after this long. aiohttp's own default is 3630 s.
    idle_timeout_s: float = 15.0
    # Owner routes (session, login, pairing, the owner's media) answer only clients on loopback,
    # private or link-local addresses unless this is true (hub/api/session.py, PROTOCOL §1.1).
    owner_remote: bool = False
    # Host header values accepted besides the hub's own names and addresses (e.g. the name of a
    # reverse proxy in front of it); anything else is 421 (DNS rebinding, PROTOCOL §1.1).
    allowed_hosts: tuple[str, ...] = ()
    # Every route anyone may call without a session is limited per client (a token bucket): this
    # many calls at once, then `rate_limit_per_s` a second (429 with Retry-After beyond).
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 200
    # Live viewers at once (WebRTC); agencies share all but one, which is kept for the owner.
    max_live_sessions: int = 16
    # WebAuthn relying party id for passkeys (PROTOCOL §3.1). None means `<name>.local`, the name the
    # hub answers to by mDNS; an origin is accepted when its host is exactly this (https), or for
    # "localhost" also over http, which browsers count as a secure context.
    passkey_rp_id: str | None = None

    @property
    def rp_id(self) -> str:
        if self.passkey_rp_id:
            return self.passkey_rp_id
        # The host name hub/discovery.py advertises (`<label>.local`), made from the name the same way.
        label = re.sub(r"[^a-z0-9-]+", "-", self.name.lower()).strip("-")[:52] or "camhub"
        return f"{label}.local"


@dataclass(frozen=True)
class MotionConfig:
    enabled: bool = True
    # Polygons in normalised 0..1 picture coordinates; an empty tuple of zones means the whole picture.
    zones: tuple[tuple[tuple[float, float], ...], ...] = ()
    masks: tuple[tuple[tuple[float, float], ...], ...] = ()
    min_area: float = 0.005
    pre_roll_seconds: float = 5.0
    post_roll_seconds: float = 10.0


Polygon = tuple[tuple[float, float], ...]

#: Bounds on privacy masks (PROTOCOL §4.1): enough for any window or street, small enough that a
#: mask can never make painting a frame expensive.
MAX_PRIVACY_MASKS = 16
MAX_PRIVACY_POINTS = 64


@dataclass(frozen=True)
class PrivacyConfig:
    """What is blacked out of this camera's picture in everything that leaves (PROTOCOL §4.1)."""

    # Polygons in normalised 0..1 picture coordinates (0,0 top left), filled black.
    masks: tuple[Polygon, ...] = ()
    # Mask the owner's own live views too (off: the owner sees the whole picture at home).
    owner_views: bool = False


@dataclass(frozen=True)
class CameraConfig:
    id: str
    name: str
    # An rtsp:// URL the hub pulls from, or None when the camera pushes over WHIP.
    url: str | None
    whip: bool = False
    whip_token: str | None = None
    sub_url: str | None = None
    events_url: str | None = None
    username: str | None = None
    password: str | None = None
    record: bool = True
    retention_days: float | None = None
    motion: MotionConfig = field(default_factory=MotionConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    # How RTP reaches the hub (RFC 2326 §12.39): "tcp" interleaved on the RTSP connection, "udp"
    # (cameras whose server refuses TCP with 461, as VLC's does), or "auto": TCP, then UDP on 461.
    rtsp_transport: str = "auto"
    # Who reads RTP over TCP: "camhub" (hub/ingest/rtsp_client.py, H.264/H.265 video; a third of the
    # CPU, issue 17) or "ffmpeg". camhub's reader hands a stream it cannot read to FFmpeg by itself
    # (audio on, rtsps://, B-frames, interleaved packetization); "ffmpeg" is for a camera that misbehaves.
    rtsp_reader: str = "camhub"
    # Record the camera's audio too (stream copy; G.711 is transcoded to AAC, see hub/ingest/audio.py).
    # Off unless the owner turns it on: recording conversations is regulated (two-party consent
    # states, GDPR), and the owner is the one who knows what the microphone hears.
    audio: bool = False
    # The camera's ONVIF device service, `http://host:port` (hub/onvif/): doorbell presses and the
    # camera's own motion events come from its PullPoint subscription.
    onvif: str | None = None
    # A read that waits longer than this for the camera is a stall: the connection is dropped and
    # opened again (detected within read_timeout_s + 1 s, hub/ingest/rtsp.py).
    read_timeout_s: float = 5.0

    def authenticated_url(self, url: str | None = None) -> str | None:
        """The pull URL with the configured credentials in it (credentials in the URL win)."""
        url = url if url is not None else self.url
        if url is None or self.username is None:
            return url
        parts = urlsplit(url)
        if parts.username:
            return url
        from urllib.parse import quote

        cred = quote(self.username, safe="")
        if self.password is not None:
            cred += ":" + quote(self.password, safe="")
        return parts._replace(netloc=f"{cred}@{parts.netloc}").geturl()


@dataclass(frozen=True)
class StorageConfig:
    segment_seconds: float = 4.0
    max_age_days: float = 30.0
    quota_bytes: int | None = None
    min_free_percent: float = 5.0
    encrypt: bool = False


@dataclass(frozen=True)
class ConsentConfig:
    respond_by_days: float = 7.0
    clock_skew_seconds: int = 60
    trust_system_clock: bool = False
    max_fetches: int = 3
    # New requests each trusted agency may file per hour (429 with Retry-After beyond).
    agency_requests_per_hour: int = 30
    # Refused unauthenticated calls are audited once per route and reason per window, with a count
    # (hub/consent/rejections.py); 0 writes every one (tests that look at single refusals).
    rejection_audit_window_s: float = 60.0


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = True
    advertise: bool = True
    browse: bool = True
    # Interface addresses zeroconf binds to; empty means all.
    interfaces: tuple[str, ...] = ()
    # ONVIF cameras by WS-Discovery (hub/onvif/discovery.py): a Probe every onvif_probe_interval_s.
    onvif: bool = True
    onvif_probe_interval_s: float = 60.0
    # `host:port` to send unicast Probes to instead of the multicast group 239.255.255.250:3702
    # (cameras on another subnet; tests on 127.0.0.1). Empty: multicast.
    onvif_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class RelayConfig:
    """`[relay]`: the hub's one outbound link to a camhub-relay (PROTOCOL §7). Absent: no link."""

    # NATS server URLs of the relay's cluster (nats:// or tls://); the client also learns the others.
    urls: tuple[str, ...] = ()
    # The relay's public base URL, as agencies reach it: signatures are checked against its host.
    public_url: str = ""
    # NATS nkey seed (a file holding `SU…`) when the relay's NATS requires nkey authentication.
    nkey_seed_file: Path | None = None
    # A 5-character geohash cell: opt in to the area requests of that cell (§7.4).
    area: str | None = None
    # Relayed calls the hub serves per second, all agencies and owners together (a token bucket).
    calls_per_s: float = 20.0
    calls_burst: int = 100
    # Reconnect backoff while the relay is unreachable, from 1 s doubling up to this.
    reconnect_max_s: float = 30.0
    # The relay's TURN server for live view through the relay (§7.3): `turn:host:port?transport=udp`.
    turn_url: str | None = None
    turn_username: str = ""
    turn_password: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.urls)


@dataclass(frozen=True)
class MqttConfig:
    """`[mqtt]`: Home Assistant over MQTT (PROTOCOL §8.4). Absent: no MQTT. Never carries media."""

    # mqtt://host:port or mqtts://host:port (TLS); empty: MQTT is off.
    url: str = ""
    username: str | None = None
    password: str | None = None
    # CA bundle for mqtts:// (a broker with a private CA); None: the system's trust store.
    tls_ca_file: Path | None = None
    discovery_prefix: str = "homeassistant"
    topic_prefix: str = "camhub"
    # Reconnect backoff while the broker is unreachable: 1 s doubling up to this.
    reconnect_max_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


@dataclass(frozen=True)
class PushConfig:
    """`[push]`: Web Push to the owner's browsers (PROTOCOL §8.3). Never carries media."""

    enabled: bool = True
    # RFC 8292 §2.1 `sub`: how a push service reaches the hub's operator (mailto: or https:).
    contact: str = "mailto:owner@camhub.invalid"
    # How long one push service may take to answer before the attempt counts as failed.
    timeout_s: float = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    """`[notify]`: what every channel shares (PROTOCOL §8.1)."""

    # A camera silent this long is reported offline (once, until it is back).
    offline_after_s: float = 60.0
    # Per channel: notifications waiting to be sent; beyond this the newest is dropped and counted.
    queue_size: int = 100
    # Attempts per notification (a failing push service or broker), with backoff between them.
    max_attempts: int = 5


@dataclass(frozen=True)
class Config:
    hub: HubConfig
    cameras: tuple[CameraConfig, ...]
    storage: StorageConfig
    consent: ConsentConfig
    discovery: DiscoveryConfig
    relay: RelayConfig = field(default_factory=RelayConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    push: PushConfig = field(default_factory=PushConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    @property
    def segments_dir(self) -> Path:
        return self.hub.data_dir / "segments"

    @property
    def events_dir(self) -> Path:
        return self.hub.data_dir / "events"

    @property
    def keys_dir(self) -> Path:
        return self.hub.data_dir / "keys"

    @property
    def hub_key_path(self) -> Path:
        return self.hub.key_file if self.hub.key_file is not None else self.keys_dir / "hub.key"

    @property
    def db_path(self) -> Path:
        return self.hub.data_dir / "camhub.sqlite"

    @property
    def https_port(self) -> int | None:
        """Where the owner UI is served over TLS: always when bind is off loopback (default 8443)."""
        if not ipaddress.ip_address(self.hub.bind).is_loopback:
            return 8443 if self.hub.https_port is None else self.hub.https_port
        return self.hub.https_port


def load(path: Path) -> Config:
    """Read and validate a TOML config file. Raises ConfigError listing every problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8: {exc.reason}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from exc
    return parse(data, base_dir=path.parent)


def parse(data: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    v = _Validator()
    v.unknown(
        data, "", {"hub", "cameras", "storage", "consent", "discovery", "relay", "mqtt", "push", "notify"}
    )
    hub = _parse_hub(v, v.table(data, "hub"), base_dir)
    storage = _parse_storage(v, v.table(data, "storage"))
    consent = _parse_consent(v, v.table(data, "consent"))
    discovery = _parse_discovery(v, v.table(data, "discovery"))
    relay = _parse_relay(v, v.table(data, "relay"), base_dir)
    mqtt = _parse_mqtt(v, v.table(data, "mqtt"), base_dir)
    push = _parse_push(v, v.table(data, "push"))
    notify = _parse_notify(v, v.table(data, "notify"))
    cameras = _parse_cameras(v, data.get("cameras", []))
    if v.problems:
        raise ConfigError(v.problems)
    return Config(
        hub=hub, cameras=cameras, storage=storage, consent=consent, discovery=discovery, relay=relay,
        mqtt=mqtt, push=push, notify=notify,
    )  # fmt: skip


def parse_camera(table: dict[str, Any]) -> CameraConfig:
    """One `[[cameras]]` table, validated by exactly the rules of the file (the owner's settings page
    adds cameras through this). Raises ConfigError; each problem starts with `cameras.<id>.<key>:`."""
    v = _Validator()
    cameras = _parse_cameras(v, [table])
    if v.problems or not cameras:
        raise ConfigError(v.problems or ["cameras[0]: invalid"])
    return cameras[0]


def parse_storage(table: dict[str, Any]) -> StorageConfig:
    """A `[storage]` table by the rules of the file (keys left out get their defaults). Raises ConfigError."""
    v = _Validator()
    storage = _parse_storage(v, table)
    if v.problems:
        raise ConfigError(v.problems)
    return storage


class _Validator:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.error(key, "must be a table")
            return {}
        return value

    def unknown(self, table: dict[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                self.error(f"{prefix}{key}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def get(
        self,
        table: dict[str, Any],
        prefix: str,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: T,
        check: Callable[[Any], str | None] | None = None,
    ) -> T:
        if key not in table:
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; never accept true where a number is meant.
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            self.error(f"{prefix}{key}", f"must be {names}, got {_type_name(type(value))}")
            return default
        if check is not None:
            message = check(value)
            if message:
                self.error(f"{prefix}{key}", message)
                return default
        return value  # type: ignore[return-value]


def _type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }.get(kind, kind.__name__)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _range(lo: float, hi: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo:g} and {hi:g}"

    return check


# A DNS name (RFC 1123 labels) or an IP literal, no port, no brackets.
_HOST_RE = re.compile(
    r"(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?|[0-9a-f:.]+"
)


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IP address"
    return None


def _parse_hub(v: _Validator, t: dict[str, Any], base_dir: Path | None) -> HubConfig:
    p = "hub."
    v.unknown(
        t,
        p,
        {"name", "data_dir", "key_file", "bind", "port", "https_port", "ice_addresses", "log_level",
         "idle_timeout_s", "owner_remote", "allowed_hosts", "rate_limit_per_s", "rate_limit_burst",
         "max_live_sessions", "passkey_rp_id"},
    )  # fmt: skip
    d = HubConfig()
    name = v.get(t, p, "name", str, d.name, lambda s: None if 0 < len(s) <= 63 else "must be 1-63 characters")
    data_dir = Path(
        v.get(t, p, "data_dir", str, str(d.data_dir), lambda s: None if s else "must not be empty")
    )
    if not data_dir.is_absolute() and base_dir is not None:
        data_dir = (base_dir / data_dir).resolve()
    key_file_s = v.get(t, p, "key_file", str, None, lambda s: None if s else "must not be empty")
    key_file = Path(key_file_s) if key_file_s else None
    if key_file is not None and not key_file.is_absolute() and base_dir is not None:
        key_file = (base_dir / key_file).resolve()
    bind = v.get(t, p, "bind", str, d.bind, _ip)
    port = v.get(t, p, "port", int, d.port, _range(0, 65535))
    https_port = v.get(t, p, "https_port", int, None, _range(0, 65535))
    ice = v.get(t, p, "ice_addresses", list, [])
    for i, addr in enumerate(ice):
        if not isinstance(addr, str) or _ip(addr):
            v.error(f"{p}ice_addresses[{i}]", "must be an IP address")
    allowed_hosts = v.get(t, p, "allowed_hosts", list, [])
    for i, host in enumerate(allowed_hosts):
        if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
            v.error(f"{p}allowed_hosts[{i}]", "must be a host name or IP address, without a port")
    levels = {"debug", "info", "warning", "error"}
    log_level = v.get(
        t,
        p,
        "log_level",
        str,
        d.log_level,
        lambda s: None if s in levels else f"must be one of {sorted(levels)}",
    )
    return HubConfig(
        name=name,
        data_dir=data_dir,
        key_file=key_file,
        bind=bind,
        port=port,
        https_port=https_port,
        ice_addresses=tuple(a for a in ice if isinstance(a, str)),
        log_level=log_level,
        idle_timeout_s=float(v.get(t, p, "idle_timeout_s", (int, float), d.idle_timeout_s, _range(1, 3600))),
        owner_remote=v.get(t, p, "owner_remote", bool, d.owner_remote),
        allowed_hosts=tuple(h.lower().rstrip(".") for h in allowed_hosts if isinstance(h, str)),
        rate_limit_per_s=float(
            v.get(t, p, "rate_limit_per_s", (int, float), d.rate_limit_per_s, _range(0.1, 100_000))
        ),
        rate_limit_burst=v.get(t, p, "rate_limit_burst", int, d.rate_limit_burst, _range(1, 1_000_000)),
        max_live_sessions=v.get(t, p, "max_live_sessions", int, d.max_live_sessions, _range(2, 1000)),
        passkey_rp_id=v.get(t, p, "passkey_rp_id", str, None, _rp_id),
    )


def _rp_id(value: str) -> str | None:
    # A WebAuthn rpId is a domain (a "valid domain string"), never an IP address (WebAuthn L2 §5.1.3).
    if not _HOST_RE.fullmatch(value) or value.endswith(".") or _ip(value) is None:
        return "must be a DNS name without a port (not an IP address)"
    if value != value.lower():
        return "must be lower case"
    return None


def _parse_storage(v: _Validator, t: dict[str, Any]) -> StorageConfig:
    p = "storage."
    v.unknown(t, p, {"segment_seconds", "max_age_days", "quota_gb", "min_free_percent", "encrypt"})
    d = StorageConfig()
    quota_gb = v.get(
        # The upper bound also refuses inf (JSON "Infinity" from the settings API), which int() cannot take.
        t,
        p,
        "quota_gb",
        (int, float),
        0,
        lambda x: (
            None if 0 <= x <= 1e6 else "must be 0 (no quota) or more" if x < 0 else "must be at most 1e6"
        ),
    )
    return StorageConfig(
        segment_seconds=float(v.get(t, p, "segment_seconds", (int, float), d.segment_seconds, _range(1, 60))),
        max_age_days=float(v.get(t, p, "max_age_days", (int, float), d.max_age_days, _positive)),
        quota_bytes=int(quota_gb * 1024**3) or None,
        min_free_percent=float(
            v.get(t, p, "min_free_percent", (int, float), d.min_free_percent, _range(0, 90))
        ),
        encrypt=v.get(t, p, "encrypt", bool, d.encrypt),
    )


def _parse_consent(v: _Validator, t: dict[str, Any]) -> ConsentConfig:
    p = "consent."
    v.unknown(
        t,
        p,
        {"respond_by_days", "clock_skew_seconds", "trust_system_clock", "max_fetches",
         "agency_requests_per_hour", "rejection_audit_window_s"},
    )  # fmt: skip
    d = ConsentConfig()
    return ConsentConfig(
        respond_by_days=float(v.get(t, p, "respond_by_days", (int, float), d.respond_by_days, _range(1, 90))),
        clock_skew_seconds=v.get(t, p, "clock_skew_seconds", int, d.clock_skew_seconds, _range(0, 300)),
        trust_system_clock=v.get(t, p, "trust_system_clock", bool, d.trust_system_clock),
        max_fetches=v.get(t, p, "max_fetches", int, d.max_fetches, _range(1, 100)),
        agency_requests_per_hour=v.get(
            t, p, "agency_requests_per_hour", int, d.agency_requests_per_hour, _range(1, 1_000_000)
        ),
        rejection_audit_window_s=float(
            v.get(t, p, "rejection_audit_window_s", (int, float), d.rejection_audit_window_s, _range(0, 3600))
        ),
    )


def _parse_discovery(v: _Validator, t: dict[str, Any]) -> DiscoveryConfig:
    p = "discovery."
    v.unknown(
        t,
        p,
        {"enabled", "advertise", "browse", "interfaces", "onvif", "onvif_probe_interval_s", "onvif_targets"},
    )
    d = DiscoveryConfig()
    interfaces = v.get(t, p, "interfaces", list, [])
    for i, addr in enumerate(interfaces):
        if not isinstance(addr, str) or _ip(addr):
            v.error(f"{p}interfaces[{i}]", "must be an IP address")
    targets = v.get(t, p, "onvif_targets", list, [])
    for i, target in enumerate(targets):
        if not isinstance(target, str) or _host_port(target):
            v.error(f"{p}onvif_targets[{i}]", "must be host:port (an IP address and a UDP port)")
    return DiscoveryConfig(
        enabled=v.get(t, p, "enabled", bool, d.enabled),
        advertise=v.get(t, p, "advertise", bool, d.advertise),
        browse=v.get(t, p, "browse", bool, d.browse),
        interfaces=tuple(a for a in interfaces if isinstance(a, str)),
        onvif=v.get(t, p, "onvif", bool, d.onvif),
        onvif_probe_interval_s=float(
            v.get(t, p, "onvif_probe_interval_s", (int, float), d.onvif_probe_interval_s, _range(1, 86400))
        ),
        onvif_targets=tuple(a for a in targets if isinstance(a, str) and not _host_port(a)),
    )


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536 or _ip(host):
        return "must be host:port"
    return None


_GEOHASH5 = re.compile(r"[0-9b-hjkmnp-z]{5}")
_TURN_URL = re.compile(r"turns?:[A-Za-z0-9.\[\]:-]+:\d{1,5}(\?transport=(udp|tcp))?")


def _nats_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        return "must be a nats:// or tls:// URL"
    return None


def _parse_relay(v: _Validator, t: dict[str, Any], base_dir: Path | None) -> RelayConfig:
    p = "relay."
    v.unknown(
        t,
        p,
        {"url", "public_url", "nkey_seed_file", "area", "calls_per_s", "calls_burst", "reconnect_max_s",
         "turn_url", "turn_username", "turn_password"},
    )  # fmt: skip
    if not t:
        return RelayConfig()
    d = RelayConfig()
    raw = t.get("url")
    urls: list[str] = []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > 16:
        v.error(f"{p}url", "is required: a nats:// URL (or a list of up to 16, one per cluster node)")
    else:
        for i, url in enumerate(raw):
            problem = _nats_url(url) if isinstance(url, str) else "must be a string"
            if problem:
                v.error(f"{p}url" if len(raw) == 1 else f"{p}url[{i}]", problem)
            else:
                urls.append(url)
    public_url = v.get(t, p, "public_url", str, "", _http_url)
    if "public_url" not in t:
        v.error(f"{p}public_url", "is required: the relay's public base URL (https://relay.example)")
    elif urlsplit(public_url).query or urlsplit(public_url).fragment:
        v.error(f"{p}public_url", "must not have a query or fragment")
    seed = v.get(t, p, "nkey_seed_file", str, None, lambda s: None if s else "must not be empty")
    seed_path = Path(seed) if seed else None
    if seed_path is not None and not seed_path.is_absolute() and base_dir is not None:
        seed_path = (base_dir / seed_path).resolve()
    area = v.get(
        t, p, "area", str, None,
        lambda s: None if _GEOHASH5.fullmatch(s) else "must be a 5-character geohash (0-9, b-z without i, l, o)",
    )  # fmt: skip
    return RelayConfig(
        urls=tuple(urls),
        public_url=public_url.rstrip("/"),
        nkey_seed_file=seed_path,
        area=area,
        calls_per_s=float(v.get(t, p, "calls_per_s", (int, float), d.calls_per_s, _range(0.1, 10_000))),
        calls_burst=v.get(t, p, "calls_burst", int, d.calls_burst, _range(1, 100_000)),
        reconnect_max_s=float(
            v.get(t, p, "reconnect_max_s", (int, float), d.reconnect_max_s, _range(1, 3600))
        ),
        turn_url=v.get(
            t,
            p,
            "turn_url",
            str,
            None,
            lambda s: (
                None
                if _TURN_URL.fullmatch(s)
                else "must be turn:host:port or turns:host:port (?transport=udp|tcp)"
            ),
        ),
        turn_username=v.get(
            t, p, "turn_username", str, "", lambda s: None if len(s) <= 256 else "at most 256 characters"
        ),
        turn_password=v.get(
            t, p, "turn_password", str, "", lambda s: None if len(s) <= 256 else "at most 256 characters"
        ),
    )


def _rtsp_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        return "must be an rtsp:// URL"
    return None


def _mqtt_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        return "must be an mqtt:// or mqtts:// URL (mqtt://host:port)"
    if parts.username or parts.password:
        return "must not hold credentials (use mqtt.username and mqtt.password)"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be mqtt://host:port with no path, query or fragment"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "has an invalid port"
    return None


# MQTT topic level (no wildcards, no separator) and Home Assistant's discovery prefix rules.
_TOPIC_LEVEL = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _topic_level(value: str) -> str | None:
    return None if _TOPIC_LEVEL.fullmatch(value) else "must be 1-64 characters of A-Z a-z 0-9 _ -"


def _parse_mqtt(v: _Validator, t: dict[str, Any], base_dir: Path | None) -> MqttConfig:
    p = "mqtt."
    v.unknown(
        t, p,
        {"url", "username", "password", "tls_ca_file", "discovery_prefix", "topic_prefix", "reconnect_max_s"},
    )  # fmt: skip
    if not t:
        return MqttConfig()
    d = MqttConfig()
    if "url" not in t:
        v.error(f"{p}url", "is required: mqtt://host:port or mqtts://host:port")
    url = v.get(t, p, "url", str, "", _mqtt_url)
    short = lambda s: None if 0 < len(s) <= 256 else "must be 1-256 characters"  # noqa: E731
    ca = v.get(t, p, "tls_ca_file", str, None, lambda s: None if s else "must not be empty")
    ca_path = Path(ca) if ca else None
    if ca_path is not None and not ca_path.is_absolute() and base_dir is not None:
        ca_path = (base_dir / ca_path).resolve()
    # The broker password, like the cameras', never appears in a log line (hub/redact.py).
    redact.add_secrets([t.get("password") if isinstance(t.get("password"), str) else None])
    return MqttConfig(
        url=url,
        username=v.get(t, p, "username", str, None, short),
        password=v.get(t, p, "password", str, None, short),
        tls_ca_file=ca_path,
        discovery_prefix=v.get(t, p, "discovery_prefix", str, d.discovery_prefix, _topic_level),
        topic_prefix=v.get(t, p, "topic_prefix", str, d.topic_prefix, _topic_level),
        reconnect_max_s=float(
            v.get(t, p, "reconnect_max_s", (int, float), d.reconnect_max_s, _range(1, 3600))
        ),
    )


def _parse_push(v: _Validator, t: dict[str, Any]) -> PushConfig:
    p = "push."
    v.unknown(t, p, {"enabled", "contact", "timeout_s"})
    d = PushConfig()
    contact = v.get(
        t, p, "contact", str, d.contact,
        lambda s: None if re.fullmatch(r"(mailto:|https://)\S{1,250}", s) else "must be a mailto: or https:// URL",
    )  # fmt: skip
    return PushConfig(
        enabled=v.get(t, p, "enabled", bool, d.enabled),
        contact=contact,
        timeout_s=float(v.get(t, p, "timeout_s", (int, float), d.timeout_s, _range(0.1, 120))),
    )


def _parse_notify(v: _Validator, t: dict[str, Any]) -> NotifyConfig:
    p = "notify."
    v.unknown(t, p, {"offline_after_s", "queue_size", "max_attempts"})
    d = NotifyConfig()
    return NotifyConfig(
        offline_after_s=float(
            v.get(t, p, "offline_after_s", (int, float), d.offline_after_s, _range(1, 86400))
        ),
        queue_size=v.get(t, p, "queue_size", int, d.queue_size, _range(1, 10_000)),
        max_attempts=v.get(t, p, "max_attempts", int, d.max_attempts, _range(1, 20)),
    )


def _http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    return None


def _parse_polygons(v: _Validator, key: str, value: Any) -> tuple[tuple[tuple[float, float], ...], ...]:
    if not isinstance(value, list):
        v.error(key, "must be a list of polygons")
        return ()
    polygons = []
    for i, poly in enumerate(value):
        pts: list[tuple[float, float]] = []
        if not isinstance(poly, list) or len(poly) < 3:
            v.error(f"{key}[{i}]", "must be a list of at least 3 [x, y] points")
            continue
        for j, pt in enumerate(poly):
            if (
                not isinstance(pt, list)
                or len(pt) != 2
                or not all(isinstance(c, int | float) and not isinstance(c, bool) and 0 <= c <= 1 for c in pt)
            ):
                v.error(f"{key}[{i}][{j}]", "must be [x, y] with 0 <= x, y <= 1")
                break
            pts.append((float(pt[0]), float(pt[1])))
        else:
            polygons.append(tuple(pts))
    return tuple(polygons)


def parse_privacy_table(v: _Validator, key: str, table: Any) -> PrivacyConfig:
    """`[cameras.privacy]` (PROTOCOL §4.1): `masks` polygons and `owner_views`."""
    if not isinstance(table, dict):
        v.error(key, "must be a table")
        return PrivacyConfig()
    v.unknown(table, f"{key}.", {"masks", "owner_views"})
    raw = table.get("masks", [])
    masks = _parse_polygons(v, f"{key}.masks", raw)
    if isinstance(raw, list) and len(raw) > MAX_PRIVACY_MASKS:
        v.error(f"{key}.masks", f"at most {MAX_PRIVACY_MASKS} polygons")
    for i, poly in enumerate(masks):
        if len(poly) > MAX_PRIVACY_POINTS:
            v.error(f"{key}.masks[{i}]", f"at most {MAX_PRIVACY_POINTS} points")
    return PrivacyConfig(masks=masks, owner_views=v.get(table, f"{key}.", "owner_views", bool, False))


def parse_privacy(table: dict[str, Any]) -> PrivacyConfig:
    """A privacy table from the owner's settings, by the file's rules. Raises ConfigError."""
    v = _Validator()
    privacy = parse_privacy_table(v, "privacy", table)
    if v.problems:
        raise ConfigError(v.problems)
    return privacy


def _parse_cameras(v: _Validator, value: Any) -> tuple[CameraConfig, ...]:
    if not isinstance(value, list):
        v.error("cameras", "must be an array of tables ([[cameras]])")
        return ()
    cameras: list[CameraConfig] = []
    seen: set[str] = set()
    allowed = {
        "id", "name", "url", "whip_token", "sub_url", "events_url", "username", "password",
        "record", "retention_days", "motion", "rtsp_transport", "rtsp_reader", "audio", "onvif", "read_timeout_s",
        "privacy",
    }  # fmt: skip
    for index, t in enumerate(value):
        if not isinstance(t, dict):
            v.error(f"cameras[{index}]", "must be a table")
            continue
        cam_id = t.get("id")
        if not isinstance(cam_id, str) or not CAMERA_ID_RE.match(cam_id):
            v.error(
                f"cameras[{index}].id",
                "must be 1-63 characters of a-z, 0-9, '-' or '_', starting alphanumeric",
            )
            continue
        if cam_id in seen:
            v.error(f"cameras.{cam_id}.id", "duplicate camera id")
            continue
        seen.add(cam_id)
        p = f"cameras.{cam_id}."
        v.unknown(t, p, allowed)
        url = v.get(
            t,
            p,
            "url",
            str,
            "",
            lambda s: None if s == "whip" or not _rtsp_url(s) else "must be rtsp:// or whip",
        )
        if "url" not in t:
            v.error(f"{p}url", 'is required (an rtsp:// URL, or "whip" for a camera that pushes)')
        whip = url == "whip"
        whip_token = v.get(
            t,
            p,
            "whip_token",
            str,
            None,
            lambda s: None if len(s) >= 16 else "must be at least 16 characters",
        )
        if whip and whip_token is None and "whip_token" not in t:
            v.error(f"{p}whip_token", 'is required when url is "whip"')
        motion_t = t.get("motion", {})
        motion = MotionConfig()
        if not isinstance(motion_t, dict):
            v.error(f"{p}motion", "must be a table")
        else:
            mp = f"{p}motion."
            v.unknown(
                motion_t,
                mp,
                {"enabled", "zones", "masks", "min_area", "pre_roll_seconds", "post_roll_seconds"},
            )
            motion = MotionConfig(
                enabled=v.get(motion_t, mp, "enabled", bool, motion.enabled),
                zones=_parse_polygons(v, f"{mp}zones", motion_t.get("zones", [])),
                masks=_parse_polygons(v, f"{mp}masks", motion_t.get("masks", [])),
                min_area=float(v.get(motion_t, mp, "min_area", (int, float), motion.min_area, _range(0, 1))),
                pre_roll_seconds=float(
                    v.get(
                        motion_t,
                        mp,
                        "pre_roll_seconds",
                        (int, float),
                        motion.pre_roll_seconds,
                        _range(0, 300),
                    )
                ),
                post_roll_seconds=float(
                    v.get(
                        motion_t,
                        mp,
                        "post_roll_seconds",
                        (int, float),
                        motion.post_roll_seconds,
                        _range(0, 300),
                    )
                ),
            )
        privacy = parse_privacy_table(v, f"{p}privacy", t.get("privacy", {}))
        cameras.append(
            CameraConfig(
                id=cam_id,
                name=v.get(
                    t,
                    p,
                    "name",
                    str,
                    cam_id,
                    lambda s: None if 0 < len(s) <= 100 else "must be 1-100 characters",
                ),
                url=None if whip or not url else url,
                whip=whip,
                whip_token=whip_token,
                sub_url=v.get(t, p, "sub_url", str, None, _rtsp_url),
                events_url=v.get(t, p, "events_url", str, None, _http_url),
                username=v.get(t, p, "username", str, None),
                password=v.get(t, p, "password", str, None),
                record=v.get(t, p, "record", bool, True),
                retention_days=_opt_float(v.get(t, p, "retention_days", (int, float), None, _positive)),
                motion=motion,
                privacy=privacy,
                rtsp_transport=v.get(
                    t,
                    p,
                    "rtsp_transport",
                    str,
                    "auto",
                    lambda s: (
                        None if s in RTSP_TRANSPORTS else f"must be one of {', '.join(RTSP_TRANSPORTS)}"
                    ),
                ),
                rtsp_reader=v.get(
                    t,
                    p,
                    "rtsp_reader",
                    str,
                    "camhub",
                    lambda s: None if s in RTSP_READERS else f"must be one of {', '.join(RTSP_READERS)}",
                ),
                audio=v.get(t, p, "audio", bool, False),
                onvif=v.get(t, p, "onvif", str, None, onvif_url_problem),
                read_timeout_s=float(v.get(t, p, "read_timeout_s", (int, float), 5.0, _range(1, 60))),
            )
        )
    # Passwords are removed from every log line and stored error from now on (hub/redact.py).
    redact.add_secrets(c.password for c in cameras)
    return tuple(cameras)


RTSP_TRANSPORTS = ("auto", "tcp", "udp")
RTSP_READERS = ("camhub", "ffmpeg")


def onvif_url_problem(value: str) -> str | None:
    """Why `value` is not a camera's ONVIF URL (`http://host:port`, no credentials), or None."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// URL of the camera's ONVIF service (http://host:port)"
    if parts.username or parts.password:
        return "must not carry credentials (set username and password)"
    return None


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)
