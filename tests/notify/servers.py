"""Real servers for the notification tests, on 127.0.0.1 only: Debian's mosquitto with a password
file, and a Web Push service written here (aiohttp) that checks what the hub sends with libraries
the hub's sender does not use for checking: py-vapid verifies the VAPID JWT, http-ece decrypts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from hub import tls
from tests.conftest import free_port

MQTT_USER = "camhub"
MQTT_PASSWORD = "mqtt-secret-1"


@dataclass
class Mosquitto:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    password_file: Path

    def add_user(self, name: str, password: str) -> None:
        """Let one more user in: mosquitto re-reads its password file on SIGHUP."""
        subprocess.run(["mosquitto_passwd", "-b", str(self.password_file), name, password], check=True)
        reloads = self.log.read_text(errors="replace").count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log.read_text(errors="replace").count("Reloading config") <= reloads:
            if time.monotonic() > deadline:
                raise AssertionError("mosquitto did not reload its password file within 10 s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_mosquitto(
    directory: Path, port: int | None = None, tls_port: int | None = None, user: tuple[str, str] | None = None
) -> Mosquitto:
    """mosquitto on 127.0.0.1 requiring MQTT_USER/MQTT_PASSWORD (shared/SERVER_NOTES.md: `user root`,
    or it drops privileges and cannot read the password file in a 0700 temp dir). With `tls_port`, a
    second listener speaks TLS with a certificate for 127.0.0.1 from a CA made in `directory`
    (`directory/tls/web-ca.crt`). `user`: the one user let in at start instead of MQTT_USER (add
    more with `Mosquitto.add_user`)."""
    assert shutil.which("mosquitto"), "Debian package mosquitto is missing (make sysdeps)"
    directory.mkdir(parents=True, exist_ok=True)
    pwfile = directory / "passwd"
    name, password = user or (MQTT_USER, MQTT_PASSWORD)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), name, password], check=True)
    port = port or free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n"
        "persistence false\n"
    )
    if tls_port is not None:
        (directory / "tls").mkdir(mode=0o700, exist_ok=True)
        files = tls.ensure(directory / "tls", "broker", ["127.0.0.1"])
        with conf.open("a") as f:
            f.write(f"listener {tls_port} 127.0.0.1\ncertfile {files.cert}\nkeyfile {files.key}\n")
    log = directory / "mosquitto.log"
    with log.open("ab") as f:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf), "-v"], stdout=f, stderr=subprocess.STDOUT)
    broker = Mosquitto(port, proc, log, pwfile)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {log.read_text()}")
        with contextlib.suppress(OSError):
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return broker
        time.sleep(0.05)
    broker.stop()
    raise AssertionError("mosquitto did not listen within 10 s")


@contextlib.contextmanager
def mosquitto(
    directory: Path, port: int | None = None, tls_port: int | None = None, user: tuple[str, str] | None = None
) -> Iterator[Mosquitto]:
    broker = start_mosquitto(directory, port, tls_port, user)
    try:
        yield broker
    finally:
        broker.stop()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """What a browser holds for one subscription: the P-256 key and the auth secret (RFC 8291 §2)."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: __import__("os").urandom(16))

    def keys(self) -> dict[str, str]:
        pub = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(pub), "auth": b64url(self.auth)}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    claims: dict[str, Any]
    message: dict[str, Any]


class PushService:
    """A push service on 127.0.0.1 in a thread of its own: `/ok/<n>` verifies and decrypts (201),
    `/gone/<n>` answers 410, `/hang/<n>` never answers. Failures of verification are kept too."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.browsers: dict[str, Browser] = {}
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.hits: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="push-service", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def endpoint(self, kind: str, name: str) -> str:
        return f"{self.url}/{kind}/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind, name = request.match_info["kind"], request.match_info["name"]
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if kind == "hang":
            # Never answers while the test runs; let go at stop so no handler outlives the loop.
            assert self._stop is not None
            await self._stop.wait()
            return web.Response(status=503)
        if kind == "gone":
            return web.Response(status=410)
        body = await request.read()
        try:
            auth = request.headers["Authorization"]
            # RFC 8292 §3: `vapid t=<JWT>, k=<key>`; py-vapid checks the ES256 signature with k.
            assert Vapid02.verify(auth), "VAPID signature does not verify"
            token = auth.split(" ", 1)[1].split(",")[0].strip().removeprefix("t=")
            claims = json.loads(b64url_decode(token.split(".")[1]))
            assert claims["aud"] == self.url, claims
            assert claims["exp"] <= time.time() + 24 * 3600, claims
            assert claims["sub"].startswith(("mailto:", "https://")), claims
            assert request.headers["Content-Encoding"] == "aes128gcm"
            browser = self.browsers[name]
            plain = http_ece.decrypt(
                body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
            )
            self.received.append(
                Received(
                    request.path,
                    {k.lower(): v for k, v in request.headers.items()},
                    claims,
                    json.loads(plain),
                )
            )
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=400)
        return web.Response(status=201)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/{kind}/{name}", self._handle)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> PushService:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
