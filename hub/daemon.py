"""The daemon: builds every service in order, serves, and tears everything down in reverse.

Start order follows the data flow: data dir → database → hub key → tasks (cameras, retention, audit)
→ HTTP API → ready. Every step registers its teardown on one AsyncExitStack, so any failure or
signal unwinds exactly what was started, newest first, and the database closes last.
"""

from __future__ import annotations

import _sqlite3
import asyncio
import contextlib
import ctypes
import functools
import ipaddress
import logging
import os
import resource
import signal
import sqlite3
import threading
import tracemalloc
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from camhub_protocol.keys import HubKey
from hub import datadir, redact, tls
from hub.api import make_app
from hub.config import Config
from hub.consent import pairing
from hub.consent.service import ConsentService
from hub.discovery import Discovery
from hub.ingest.camera import Cameras
from hub.notify.service import Notifier as OwnerNotifier
from hub.onvif.discovery import OnvifDiscovery
from hub.record import sealed
from hub.services import Services
from hub.store import Store, StoreError
from hub.supervisor import Supervisor
from hub.systemd import Notifier

log = logging.getLogger(__name__)

# systemd's default TimeoutStopSec is 90 s, but the promise is < 5 s: leave margin for the process exit.
STOP_TIMEOUT_SECONDS = 3.0


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs every malformed request (bad request line, header or URL; answered 400, the
    client's fault) at ERROR with a traceback: anyone on the LAN could fill the journal with them.
    Such records become one line at DEBUG; real server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        record.msg = "refused a malformed request from %s: %s"
        record.args = (*(record.args if isinstance(record.args, tuple) else ())[:1], exc.message)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_MALFORMED = _MalformedRequestFilter()


class StartupError(Exception):
    """The hub cannot start (data dir, database, key or listening socket); the message says why."""


def _owner_enrolled(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'owner_keys'").fetchone()
    if row is None:
        return False
    return conn.execute("SELECT 1 FROM owner_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None


def pairing_banner(code: str) -> str:
    """The first-start pairing code as a box of its own (one log record, so it stays together)."""
    width = 64
    lines = [
        f"pairing code: {code}",
        "",
        "Open the hub's page in a browser and type this code to make",
        f"that browser the owner's. Single use, valid {pairing.LIFETIME_SECONDS // 60} minutes;",
        "`camhub pair` makes a new one.",
    ]
    rule = "*" * width
    body = [f"* {line:<{width - 4}} *" for line in lines]
    return "\n".join(["", rule, *body, rule])


def _issue_pairing_code_if_unpaired(conn: sqlite3.Connection) -> str | None:
    if _owner_enrolled(conn):
        return None
    return pairing.issue(conn)


@contextlib.asynccontextmanager
async def running_hub(config: Config, notifier: Notifier | None = None) -> AsyncIterator[Services]:
    """Start a hub; on exit stop it. Yields the services once the API is serving."""
    notifier = notifier or Notifier({})
    async with contextlib.AsyncExitStack() as stack:
        try:
            datadir.prepare(config)
            store = await Store.open(config.db_path)
            stack.push_async_callback(store.close)
            datadir.secure_db_files(config.db_path)
            hub_key, created, at_rest = _load_keys(config)
        except (datadir.DataDirError, StoreError, OSError, ValueError, sealed.SealedError) as exc:
            raise StartupError(str(exc)) from exc
        if created:
            log.info("created hub key hub_id=%s at %s", hub_key.hub_id, config.hub_key_path)
        code = await store.run(_issue_pairing_code_if_unpaired)
        if code is not None:
            # The console is the out-of-band channel the first owner pairs through (PROTOCOL.md §1):
            # a box that stands out among the start-up lines, around the line tools parse.
            log.warning("%s", pairing_banner(code), extra=redact.PLAIN)

        supervisor = Supervisor()
        stack.push_async_callback(supervisor.stop, STOP_TIMEOUT_SECONDS)
        supervisor.spawn("memory-trim", _trim_loop)
        services = Services(
            config=config, store=store, hub_key=hub_key, supervisor=supervisor, at_rest=at_rest
        )
        services.consent = await ConsentService.start(
            config, store, hub_key, supervisor, services.pairing, at_rest=at_rest
        )
        stack.push_async_callback(services.consent.stop)
        # Cameras after consent: retention must see the holds of pending and approved requests.
        services.cameras = Cameras(
            config,
            store,
            supervisor,
            holds=services.consent.holds,
            audit=services.consent.record,
            at_rest=at_rest,
            footage_lock=services.consent.build_lock,
        )
        stack.push_async_callback(services.cameras.stop)
        await services.cameras.start()

        # Notifications after what feeds them (audit entries, camera events), stopped before them.
        cameras = services.cameras
        services.notifier = await OwnerNotifier.start(
            config, store, supervisor, hub_key.hub_id, cameras.status
        )
        stack.push_async_callback(services.notifier.stop)
        services.consent.audit_listeners.append(services.notifier.on_audit)
        cameras.event_listeners.append(services.notifier.on_camera_event)
        if not services.consent.clock.synced():
            # `clock.unsynced` is audited only when a decision is refused: tell the owner at start too.
            services.notifier.clock_unsynced()

        app = make_app(services)
        if _MALFORMED not in logging.getLogger("aiohttp.server").filters:
            logging.getLogger("aiohttp.server").addFilter(_MALFORMED)
        # aiohttp's other limits are kept: 64 KiB bodies (make_app), 8190-byte request line and header
        # fields, 128 headers. Its keep-alive timeout (3630 s) is also the only bound on a connection
        # that never completes its headers, so it is the hub's idle timeout (slowloris).
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=config.hub.idle_timeout_s,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        # Plain HTTP only on loopback (issue 6); the LAN gets HTTPS with the hub's local CA (hub/tls.py).
        http_host = config.hub.bind if ipaddress.ip_address(config.hub.bind).is_loopback else "127.0.0.1"
        site = web.TCPSite(runner, http_host, config.hub.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {http_host}:{config.hub.port}: {exc.strerror}") from exc
        host, port = _bound_address(runner, config)
        services.base_url = f"http://{_url_host(host)}:{port}"
        # What the LAN is told: the HTTPS site when there is one (plain HTTP listens on loopback only,
        # so advertising its port to other machines would point them at nothing).
        advertised = ("http", port)
        if config.https_port is not None:
            advertised = ("https", await _start_https(runner, config))

        if config.discovery.enabled:
            services.discovery = await _start_discovery(config, hub_key.hub_id, *advertised)
            if services.discovery is not None:
                stack.push_async_callback(services.discovery.stop)
            if config.discovery.onvif:
                services.onvif_discovery = await _start_onvif_discovery(config)
                if services.onvif_discovery is not None:
                    stack.push_async_callback(services.onvif_discovery.stop)

        if config.relay.enabled:
            # Last, once everything it forwards to is serving; one supervised task, stopped with the others.
            from hub.api.live import LIVE_MEDIA
            from hub.uplink.link import RelayLink

            services.uplink = RelayLink(config, services.consent, lambda: app.get(LIVE_MEDIA))
            supervisor.spawn("relay-link", services.uplink.run)

        log.info("camhub ready url=%s hub_id=%s", services.base_url, hub_key.hub_id, extra=redact.PLAIN)
        notifier.ready(status=f"serving {services.base_url}")
        stack.push_async_callback(notifier.stopping)
        yield services
        log.info("camhub stopping")


def _load_keys(config: Config) -> tuple[HubKey, bool, sealed.AtRest]:
    """The hub key (`[hub] key_file`) and, unwrapped with it, the storage key for sealed footage."""
    key_path = config.hub_key_path
    wrapped = config.keys_dir / sealed.STORAGE_KEY_FILE
    if not key_path.exists() and wrapped.exists():
        # A fresh hub key could never open the footage already sealed: most likely the key's
        # medium (a USB stick, a systemd credential) is missing. Refuse rather than start a new identity.
        raise sealed.NoStorageKey(
            f"hub key {key_path} is missing but {wrapped} exists: restore or mount the hub key"
        )
    hub_key, created = HubKey.load_or_create_at(key_path)
    if config.hub.key_file is not None and (config.keys_dir / "hub.key").exists():
        log.warning(
            "a copy of the hub key is still in %s: while it is on the same card as the footage,"
            " encryption at rest does not protect a stolen card",
            config.keys_dir,
        )
    at_rest = sealed.load_at_rest(
        config.keys_dir, hub_key.private_key, hub_key.hub_id, encrypt=config.storage.encrypt
    )
    if at_rest.seal:
        log.info("footage and thumbnails are sealed at rest (storage key %s)", wrapped)
    return hub_key, created, at_rest


async def _start_https(runner: web.AppRunner, config: Config) -> int:
    """Serve the app over TLS with the hub's local CA; the bound port."""
    addresses = [config.hub.bind, *config.hub.ice_addresses]
    if ipaddress.ip_address(config.hub.bind).is_unspecified:
        # Bound to every interface: the certificate names every address a phone may reach it at.
        addresses += await asyncio.to_thread(tls.interface_addresses)
    try:
        files = await asyncio.to_thread(tls.ensure, config.keys_dir, config.hub.name, addresses)
        ssl_context = await asyncio.to_thread(files.server_context)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot prepare HTTPS certificates: {exc}") from exc
    https_port = config.https_port or 0
    site = web.TCPSite(runner, config.hub.bind, https_port, ssl_context=ssl_context)
    before = set(map(str, runner.addresses))
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {config.hub.bind}:{https_port}: {exc.strerror}") from exc
    new = [a for a in runner.addresses if isinstance(a, tuple) and str(a) not in before]
    port = new[0][1] if new else https_port
    # The owner compares this with what the browser shows before trusting /ca.crt (hub/tls.py).
    log.warning(
        "owner UI https url=https://%s.local:%s/ ca_sha256=%s", config.hub.name, port, files.ca_sha256
    )
    return int(port)


async def _start_discovery(config: Config, hub_id: str, scheme: str, port: int) -> Discovery | None:
    interfaces = list(config.discovery.interfaces) or None
    discovery = Discovery(
        hub_id=hub_id if config.discovery.advertise else None,
        hub_port=port if config.discovery.advertise else None,
        hub_scheme=scheme,
        hub_name=config.hub.name,
        interfaces=interfaces,
        browse=config.discovery.browse,
    )
    try:
        await discovery.start()
    except OSError as exc:
        # mDNS is a convenience: a box without multicast still records and serves.
        log.warning("discovery disabled: %s", exc)
        return None
    return discovery


async def _start_onvif_discovery(config: Config) -> OnvifDiscovery | None:
    interfaces = [a for a in config.discovery.interfaces if ":" not in a]
    discovery = OnvifDiscovery(
        interval_s=config.discovery.onvif_probe_interval_s,
        targets=config.discovery.onvif_targets,
        interface=interfaces[0] if interfaces else None,
    )
    try:
        await discovery.start()
    except OSError as exc:
        # Like mDNS, a convenience: cameras can still be added by address.
        log.warning("onvif discovery disabled: %s", exc)
        return None
    return discovery


def _bound_address(runner: web.AppRunner, config: Config) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return address[0], address[1]
    return config.hub.bind, config.hub.port


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, log_resource_stats)
    try:
        async with running_hub(config, Notifier()):
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(sig)


def resource_stats() -> dict[str, int]:
    """What a leak would grow: asyncio tasks, threads, open fds, resident memory (Linux /proc)."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    rss_kb = -1
    try:
        with open("/proc/self/statm") as f:
            rss_kb = int(f.read().split()[1]) * (resource.getpagesize() // 1024)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "fds": fds,
        "rss_kb": rss_kb,
        **native_memory_kb(),
    }


# How often freed native memory goes back to the kernel (see trim_native_memory).
TRIM_INTERVAL_S = 60.0


def trim_native_memory() -> bool:
    """glibc `malloc_trim(0)`: give back to the kernel the free pages malloc keeps in its arenas
    (every thread's, not only the main heap's top). A burst (a delivery build, a retention pass, a
    camera reconnecting) leaves freed memory in the arena of the thread that did it, and glibc keeps
    it for reuse; the 2-hour soak's RSS rose in such steps while memory in use stayed flat (issue 17).
    One call on a running daemon gave back 5.3 MB of 12.9 MB free. True if memory was released;
    False also where the C library has no malloc_trim (musl)."""
    try:
        return bool(_libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False


# glibc's mallopt(3) parameters (malloc.h): the most arenas malloc may create; the size from which an
# allocation gets its own mapping instead of a place in an arena; how much free memory at an arena's
# top is kept before it is handed back.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1
MALLOC_ARENAS = 2
# glibc's own starting values for both, which it otherwise raises as the process runs.
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 128 * 1024


def tune_malloc() -> dict[str, bool]:
    """Set glibc malloc up for a process that runs for months, before the daemon starts its threads:
    which of `arenas` (limit_malloc_arenas) and `thresholds` (fix_malloc_thresholds) were set."""
    return {"arenas": limit_malloc_arenas(), "thresholds": fix_malloc_thresholds()}


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc malloc at `arenas` arenas.

    glibc gives a thread that finds the arenas busy an arena of its own, up to 8 per core, and an
    arena keeps what is freed in it; `malloc_trim` returns only whole free pages, so the fragments
    stay resident. The daemon has a reader thread per camera, finalizers, the store's thread and
    `to_thread` workers: 12 threads in the 4-camera soak, whose RSS kept rising by malloc's free
    bytes while its bytes in use were flat (issue 17). Two arenas were measured with the soak (README,
    "Memory over hours"). MALLOC_ARENA_MAX in the environment, which glibc reads itself, wins: an
    operator's setting is kept. True if the cap was set; False where the C library has no mallopt
    (musl) or the environment set it."""
    return _mallopt("MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas)


def fix_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Give every block of `mmap_threshold` bytes or more a mapping of its own, unmapped whole when
    freed, and keep at most `trim_threshold` free bytes at an arena's top.

    glibc starts there but raises both each time it unmaps such a block (to its size, and twice
    that, up to 32 MiB): after the first big free, keyframes (~170 KiB at 2 Mbit/s 1080p), hash
    buffers and 1 MiB file reads are carved out of the arenas, between small blocks that live on,
    and the arena's top may keep megabytes. With two arenas the 2-hour 4-camera soak still rose
    +3.8 MiB after its first 10 minutes, in the arena the threads share, as malloc's free bytes
    (+3.56 MB/h) with its bytes in use flat (README, "Memory over hours"). Setting a threshold stops glibc raising it. MALLOC_MMAP_THRESHOLD_
    and MALLOC_TRIM_THRESHOLD_ in the environment win, each for itself. True if both were set here."""
    mmap_set = _mallopt("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, mmap_threshold)
    trim_set = _mallopt("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, trim_threshold)
    return mmap_set and trim_set


def _mallopt(env: str, param: int, value: int) -> bool:
    if env in os.environ:
        return False
    try:
        return bool(_libc().mallopt(param, value))
    except (OSError, AttributeError):
        return False


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library already loaded (dlopen(NULL)); once, with the return types set once."""
    libc = ctypes.CDLL(None)
    with contextlib.suppress(AttributeError):  # glibc < 2.33 has no mallinfo2
        libc.mallinfo2.restype = _MallInfo2
    return libc


@functools.cache
def _sqlite_lib() -> ctypes.CDLL:
    """dlsym through the sqlite3 module's own handle finds the SQLite it was linked against (shared or
    static), already loaded, so this is the same allocator the store's connections use."""
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib


async def _trim_loop() -> None:
    while True:
        await asyncio.sleep(TRIM_INTERVAL_S)
        # On a worker thread: it takes each arena's lock in turn, and an arena may be busy.
        await asyncio.to_thread(trim_native_memory)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")
    ]  # fmt: skip


def native_memory_kb() -> dict[str, int]:
    """Where resident memory outside Python objects sits (issue 17's soak grew in native memory):
    `heap_kb`, bytes glibc malloc has handed out (FFmpeg's buffers, SQLite, OpenSSL: everything that is
    not Python's own arenas), `heap_free_kb`, freed bytes malloc keeps in its arenas (fragmentation),
    `sqlite_kb`, SQLite's own count of what it holds (page caches, statements, schema), and
    `sqlite_cache_kb`, the page caches' part of it. -1 where this libc or SQLite build does not say."""
    out = {"heap_kb": -1, "heap_free_kb": -1, "sqlite_kb": -1, "sqlite_cache_kb": -1}
    with contextlib.suppress(OSError, AttributeError):
        info = _libc().mallinfo2()
        out["heap_kb"] = (info.uordblks + info.hblkhd) // 1024
        out["heap_free_kb"] = info.fordblks // 1024
    with contextlib.suppress(OSError, AttributeError):
        lib = _sqlite_lib()
        out["sqlite_kb"] = lib.sqlite3_memory_used() // 1024
        # SQLITE_STATUS_PAGECACHE_OVERFLOW: without a static page-cache buffer (the default) every
        # cached page is in this count, so it is the page caches' share of sqlite_kb.
        current, high = ctypes.c_int64(), ctypes.c_int64()
        if lib.sqlite3_status64(2, ctypes.byref(current), ctypes.byref(high), 0) == 0:
            out["sqlite_cache_kb"] = current.value // 1024
    return out


def log_resource_stats() -> None:
    """SIGUSR1: log one `camhub stats ...` line (the soak and fault tests read the task count from it;
    only a local process allowed to signal the daemon can ask)."""
    log.info("camhub stats %s", " ".join(f"{k}={v}" for k, v in resource_stats().items()))
    if tracemalloc.is_tracing():
        log_traced_growth()


# The first snapshot a SIGUSR1 took under tracemalloc; later ones are compared with it.
_first_snapshot: tracemalloc.Snapshot | None = None
_TRACE_FILTERS = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
)


def log_traced_growth(top: int = 8) -> None:
    """Under `python -X tracemalloc` (or PYTHONTRACEMALLOC=1; `python -m bench.soak --tracemalloc`): which
    source lines hold more Python memory than at the first SIGUSR1. A soak's RSS slope says that
    something grows; this says what, from inside the daemon that grows, without a debugger."""
    global _first_snapshot
    snap = tracemalloc.take_snapshot().filter_traces(_TRACE_FILTERS)
    traced_kb = tracemalloc.get_traced_memory()[0] // 1024
    if _first_snapshot is None:
        _first_snapshot = snap
        log.info("camhub tracemalloc traced_kb=%d baseline", traced_kb)
        return
    # With more than one frame traced (PYTHONTRACEMALLOC=N), group by the whole call path: which
    # caller holds it, not only which line allocated it.
    deep = tracemalloc.get_traceback_limit() > 1
    stats = snap.compare_to(_first_snapshot, "traceback" if deep else "lineno")
    log.info("camhub tracemalloc traced_kb=%d", traced_kb)
    for st in stats[:top]:
        # A Traceback runs from the oldest frame to the allocating one: print the allocating first.
        where = " < ".join(f"{f.filename}:{f.lineno}" for f in reversed(st.traceback))
        log.info("camhub tracemalloc %+d KiB %+d blocks %s", st.size_diff // 1024, st.count_diff, where)
