"""HTTPS on the LAN: the hub's own CA, the certificate for <name>.local, Secure __Host- cookies, and
the owner UI (WebCrypto needs a secure context) working over TLS in Chromium."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hub import config as config_mod
from tests.conftest import free_port
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, login

CA_RE = re.compile(r"owner UI https url=\S+ ca_sha256=([0-9A-F:]+)")


def _https(hub: Any, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
    ctx = ssl.create_default_context(cafile=str(hub.data_dir / "keys" / "web-ca.crt"))
    # Connect to loopback but verify the certificate as the mDNS name the owner's phone would use.
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(
        __import__("socket").create_connection(("127.0.0.1", port), timeout=10),
        server_hostname="test-hub.local",
    )
    headers = {"Content-Type": "application/json", "Host": f"test-hub.local:{port}"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    return res.status, res.headers, res.read()


def test_https_site_with_local_ca_and_secure_cookie(make_hub: Any) -> None:
    port = free_port()
    hub = make_hub(hub_keys=f"https_port = {port}")
    fingerprint = CA_RE.search(hub.daemon.log()).group(1)  # type: ignore[union-attr]

    status, _, pem = _https(hub, port, "GET", "/ca.crt")
    assert status == 200
    ca = x509.load_pem_x509_certificate(pem)
    assert (
        ca.fingerprint(__import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256())
        .hex(":")
        .upper()
        == fingerprint
    )

    status, headers, body = _https(
        hub, port, "POST", "/api/v1/session/login", json.dumps({"password": PASSWORD}).encode()
    )
    assert status == 200, body
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("__Host-camhub_session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert "Domain" not in cookie


def test_plain_http_only_on_loopback() -> None:
    lan = config_mod.parse({"hub": {"bind": "192.168.1.10"}})
    assert lan.https_port == 8443  # HTTPS is not optional off loopback
    local = config_mod.parse({"hub": {"bind": "127.0.0.1"}})
    assert local.https_port is None
    with pytest.raises(config_mod.ConfigError, match=r"hub\.https_port"):
        config_mod.parse({"hub": {"https_port": 70000}})


def test_owner_ui_over_https_in_chromium(make_hub: Any, playwright: Any) -> None:
    port = free_port()
    hub = make_hub(password=False, hub_keys=f"https_port = {port}")
    # Chromium is told to accept exactly the hub's server key (what trusting the CA does for a user).
    leaf = x509.load_pem_x509_certificates((hub.data_dir / "keys" / "web.crt").read_bytes())[0]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"]
    )
    try:
        page = browser.new_page()
        base = f"https://127.0.0.1:{port}"
        page.goto(base + "/")
        assert page.evaluate("window.isSecureContext") is True
        page.get_by_label("Pairing code").fill(hub.daemon.pairing_code or "")
        page.get_by_label("Password for this hub").fill(PASSWORD)
        page.get_by_label("Password again").fill(PASSWORD)
        page.get_by_role("button", name="Pair this browser").click()
        page.get_by_role("navigation", name="Main").wait_for(timeout=15_000)
        cookie = next(c for c in page.context.cookies() if c["name"] == "__Host-camhub_session")
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # Settings says the page is on HTTPS (and no "needs HTTPS" warning).
        page.goto(base + "/#/settings")
        page.get_by_text("This page is served over HTTPS by the hub's own certificate authority").wait_for()
        assert page.get_by_text("not using HTTPS").count() == 0
    finally:
        browser.close()


def test_plain_http_by_name_warns_that_this_device_cannot_sign(make_hub: Any, playwright: Any) -> None:
    """Settings' "needs HTTPS" warning: a LAN name over plain HTTP is no secure context (no WebCrypto),
    so the page must say this device cannot sign and point at the HTTPS site, and not offer signing.

    Plain HTTP listens on loopback only, so a reverse proxy or a hosts-file name is how an owner
    gets here; Chromium's resolver maps `hub.test` to 127.0.0.1 (nothing leaves the box) and the
    name is allowed the way an owner allows a proxy's name (`[hub] allowed_hosts`)."""
    https_port = free_port()
    hub = make_hub(hub_keys=f'https_port = {https_port}\nallowed_hosts = ["hub.test"]')
    port = hub.url.rsplit(":", 1)[1].rstrip("/")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP hub.test 127.0.0.1"]
    )
    try:
        page = browser.new_page()
        base = f"http://hub.test:{port}"
        page.goto(base + "/")
        assert page.evaluate("window.isSecureContext") is False
        login(page, base)
        page.goto(base + "/#/settings")
        warning = page.get_by_text("This page is not using HTTPS, so this device cannot sign approvals here")
        warning.wait_for(timeout=15_000)
        assert f"https://hub.test:{https_port}/" in warning.inner_text()
        assert page.get_by_text("which browsers treat as secure").count() == 0
        # Nothing to sign with here: signing buttons are disabled.
        page.goto(base + "/#/agencies")
        add = page.get_by_role("button", name="Add agency (sign)")
        add.wait_for(timeout=15_000)
        assert add.is_disabled()
    finally:
        browser.close()
