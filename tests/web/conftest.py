"""Owner-UI browser tests: a real hub daemon, Debian chromium driven by Playwright (MEDIA_NOTES.md).

Never `playwright install`: the browser is /usr/bin/chromium. Screenshots of each main page go to
docs/screenshots/ (committed docs, kept small).

Accessibility is checked with axe-core (`assert_accessible`), installed from tests/web/package.json
by `make webdeps` (npm ci). It is evaluated into the page over the DevTools protocol, which the
page's Content-Security-Policy does not apply to, so the product's CSP stays as strict as shipped.
A missing axe-core fails the test that needs it: a skipped accessibility check would read as a pass.
"""

from __future__ import annotations

import json
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub import store
from hub.api.session import hash_password
from hub.store import consent as consent_q
from hub.store import events as events_q
from hub.store import segments as segments_q
from hub.store import web as web_q
from tests.conftest import DaemonProcess, free_port, start_daemon, write_config
from tests.web.media import jpeg, write_segments

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
]

CAMERAS = """
[[cameras]]
id = "front-door"
name = "Front door"
url = "rtsp://127.0.0.1:9/main"

[[cameras]]
id = "garage"
name = "Garage"
url = "rtsp://127.0.0.1:9/garage"
"""


# Module scope, not session: the sync API keeps its event loop marked running in the main thread for
# as long as it is open, and every asyncio test collected after it would then fail with "cannot be
# called from a running event loop". Closing it at each module's end keeps test order irrelevant
# (pytest tests/web tests/egress works) for the price of a browser start per module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    # Fail, never skip: in CI these tests must run (tests/egress/test_browser_live.py does the same).
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required (make sysdeps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        b.close()


@dataclass
class WebHub:
    daemon: DaemonProcess
    data_dir: Path
    config: Path
    segments: list[Any]
    owner_key: Ed25519PrivateKey | None = None  # the seeded "key file" owner, when password=True

    def audit(self) -> list[dict[str, Any]]:
        """The audit entries, read from the daemon's database (WAL lets a reader in alongside)."""
        conn = sqlite3.connect(f"file:{self.data_dir / 'camhub.sqlite'}?mode=ro", uri=True)
        try:
            return [json.loads(r[0]) for r in conn.execute("SELECT entry FROM audit_entries ORDER BY seq")]
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return self.daemon.url


def seed(
    data_dir: Path, *, password: bool, segments_at: float | None, codec: str = "h264"
) -> tuple[list[Any], Ed25519PrivateKey | None]:
    """Prepare the database before the daemon starts: the owner password and recorded segments."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = store.connect(data_dir / "camhub.sqlite")
    try:
        store.migrate(conn)
        key = None
        if password:
            # An owner enrolled elsewhere (a key file, `camhub owner keygen`) who set a password.
            key = Ed25519PrivateKey.generate()
            jwk = okp_public_jwk(key.public_key())
            consent_q.insert_owner_key(conn, jwk_thumbprint(jwk), jwk, "key file", time.time(), None)
            web_q.set_password_if_unset(conn, hash_password(PASSWORD, log_n=12), time.time())
        written: list[Any] = []
        if segments_at is not None:
            rec = data_dir / "segments"
            written = write_segments(rec, "front-door", segments_at, 3, codec=codec)
            # A gap, then two more: the day bar must show it.
            written += write_segments(rec, "front-door", segments_at + 60, 2, codec=codec)
            for w in written:
                segments_q.insert_segment(
                    conn,
                    segments_q.NewSegment(
                        "front-door", w.start_at, w.end_at, w.bytes, w.sha256, codec, 320, 180, w.path
                    ),
                )
            segments_q.insert_gap(conn, "front-door", segments_at + 6, segments_at + 60, "reconnect")
            for i, (kind, at) in enumerate((("motion", segments_at + 1), ("press", segments_at + 61))):
                rel = f"events/front-door/day/ev{i}.jpg"
                (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (data_dir / rel).write_bytes(jpeg(i))
                events_q.insert_event(
                    conn, events_q.Event(f"ev{i}", "front-door", kind, at, at + 3, 0.5, rel, time.time())
                )
        return written, key
    finally:
        conn.close()


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., WebHub]]:
    started: list[DaemonProcess] = []

    def make(
        *,
        password: bool = True,
        segments_at: float | None = None,
        extra: str = CAMERAS,
        hub_keys: str = "",
        trust_clock: bool = True,
        discovery: str = "",
        codec: str = "h264",
    ) -> WebHub:
        data_dir = tmp_path / f"data{len(started)}"
        written, owner_key = seed(data_dir, password=password, segments_at=segments_at, codec=codec)
        config = write_config(tmp_path / f"camhub{len(started)}.toml", data_dir, free_port(), extra)
        if not trust_clock:  # PROTOCOL §6: rely on the kernel's sync state or the owner's confirmation
            config.write_text(
                config.read_text().replace("trust_system_clock = true", "trust_system_clock = false")
            )
        if hub_keys:  # more [hub] keys (e.g. ice_addresses) go right after its header
            config.write_text(config.read_text().replace("[hub]\n", f"[hub]\n{hub_keys}\n", 1))
        if discovery:  # replaces the [discovery] table's `enabled = false`
            config.write_text(
                config.read_text().replace("[discovery]\nenabled = false\n", f"[discovery]\n{discovery}\n", 1)
            )
        # An untrusted clock on a test machine that keeps NTP time would count as synchronised; the
        # launcher hides the kernel's clock state from the daemon so the §6 guard really applies.
        module = "hub" if trust_clock else "tests.unsynced_clock"
        d = start_daemon(config, tmp_path / f"daemon{len(started)}.log", module=module)
        started.append(d)
        d.wait_ready()
        return WebHub(d, data_dir, config, written, owner_key)

    try:
        yield make
    finally:
        for d in started:
            if d.proc.poll() is None:
                d.stop()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    # UTC in the page, so the datetime-local fields the tests fill mean what the test means.
    ctx = browser.new_context(viewport={"width": 1100, "height": 760}, timezone_id="UTC")
    # A liveness bound, not a speed target: CI machines are shared with other work, and a page that
    # needs more than Playwright's default 30 s there is slow, not broken.
    ctx.set_default_timeout(60_000)
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))

    # A Content-Security-Policy violation is a bug in the page (inline script/style, eval, a foreign
    # origin): the console reports it, and the test fails on it.
    def watch(page: Any) -> None:
        page.on(
            "console",
            lambda m: (
                errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None
            ),
        )

    ctx.on("page", watch)
    try:
        yield ctx
    finally:
        ctx.close()
    assert not errors, f"uncaught page errors or CSP violations: {errors}"


def login(page: Any, url: str, password: str = PASSWORD) -> None:
    page.goto(url + "/")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    logged_in(page)


def logged_in(page: Any, timeout: float = 60_000) -> None:
    """Wait for the app after login or pairing (on a phone the menu stays closed: test the attribute)."""
    page.wait_for_function("() => !document.getElementById('nav').hidden", timeout=timeout)


@pytest.fixture
def sim_camera() -> Iterator[dict[str, Any]]:
    """One simulated camera (`camhub-sim`, a separate process) on loopback; yields its URLs."""
    yield from _run_sim(mdns=False)


@pytest.fixture
def sim_camera_mdns() -> Iterator[dict[str, Any]]:
    """The same, also announced over mDNS on 127.0.0.1 (multicast on lo works here; tests/test_discovery.py)."""
    yield from _run_sim(mdns=True)


def _run_sim(mdns: bool) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from firmware_sim.cli import main; sys.exit(main())", "--cameras", "1", "--rtsp-port", "0", "--control-port", "0",
         *([] if mdns else ["--no-mdns"]), "--width", "640", "--height", "360", "--gop", "15", "--loop-s", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()
    info: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("camhub-sim did not become ready") from None
            if line.strip() == "ready":
                break
            if line.startswith("{"):
                info = json.loads(line)
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def onboard(page: Any, hub: WebHub, password: str = PASSWORD) -> None:
    """First visit: pairing code from the daemon's console, a password, and this browser's key."""
    hub.daemon.wait_ready()
    assert hub.daemon.pairing_code, "the daemon printed no pairing code"
    page.goto(hub.url + "/")
    page.get_by_label("Pairing code").fill(hub.daemon.pairing_code)
    page.get_by_label("Name for this device").fill("test browser")
    page.get_by_label("Password for this hub").fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Pair this browser").click()
    logged_in(page, timeout=15_000)


DOC_MAX_HEIGHT = 2400


def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Save a PNG of the page for the docs (small: the viewport, or the page when it says more)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    clip = None
    if full_page:
        # The docs show the top of a long page (Settings on a phone grows with every feature): at most
        # DOC_MAX_HEIGHT px, so the committed PNGs stay small without failing a test for a new section.
        width, height = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": min(height, DOC_MAX_HEIGHT)}
    page.screenshot(path=str(path), full_page=full_page, clip=clip)
    assert path.stat().st_size < 300_000, f"{path} is too large for the docs"


def phone_context(browser: Any, **kwargs: Any) -> Any:
    """A phone-sized context (390x844, touch), like the `phone` fixtures of the tests."""
    kwargs.setdefault("timezone_id", "UTC")
    kwargs.setdefault("locale", "en-US")
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, **kwargs)
    ctx.set_default_timeout(60_000)
    return ctx


def wait_ready(page: Any, route: str) -> None:
    """Wait until the page for `route` has drawn what it loaded (hub/web/app.js sets data-ready)."""
    page.locator(f"main[data-ready='{route}']").wait_for()


AXE_RUN_JS = """async () => {
  const r = await axe.run(document, { resultTypes: ["violations"] });
  return r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`),
  }));
}"""


def assert_accessible(page: Any, where: str) -> None:
    """axe-core finds no violation on the page as it is now, and the page does not scroll sideways."""
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: run `make webdeps` (npm ci in tests/web)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    violations = page.evaluate(AXE_RUN_JS)
    assert not violations, f"{where}: axe-core violations:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in violations
    )
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{where}: the page scrolls sideways by {overflow} px"
