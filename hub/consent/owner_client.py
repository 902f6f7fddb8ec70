"""The owner's side of the protocol for a key file instead of the web UI (PROTOCOL.md §1, §3, §6).

`camhub owner ...` and `camhub agency add|remove` use it: an Ed25519 owner key in a PKCS#8 PEM file
(mode 0600, made by `camhub owner keygen`), decision payloads built exactly as §3 writes them, signed
as JWS compact (`alg` Ed25519, `typ` camhub-decision+jws, `kid` = the key's RFC 7638 thumbprint) and
posted over plain HTTP(S) with the standard library. It uses only the public protocol.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws, rfc3339, sealed_bodies
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk, write_secret

DECISION_TYP = "camhub-decision+jws"


class HubHTTPError(Exception):
    """The hub answered with an error; `status` and the JSON `body` are kept for the caller."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def keygen(path: Path) -> tuple[str, dict[str, str]]:
    """Write a new owner key (PEM, 0600; refuses to overwrite); returns (kid, public JWK)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(path, pem)
    jwk = okp_public_jwk(key.public_key())
    return jwk_thumbprint(jwk), jwk


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    return okp_public_jwk(key.public_key())


def kid_of(key: Ed25519PrivateKey) -> str:
    return jwk_thumbprint(public_jwk(key))


def sign_decision(
    key: Ed25519PrivateKey, hub_id: str, fields: dict[str, Any], issued_at: float | None = None
) -> str:
    """A §3 decision JWS: `fields` plus `v`, `hub`, `issued_at` (now) and a fresh random `jti`."""
    payload = {
        "v": 1,
        "hub": hub_id,
        **fields,
        "issued_at": rfc3339.format(int(time.time() if issued_at is None else issued_at)),
        "jti": secrets.token_urlsafe(16),
    }
    return jws.sign(json.dumps(payload).encode("utf-8"), key, kid_of(key), DECISION_TYP)


PASSWORD_PROOF_TYP = "camhub-web-password+jws"


def password_proof(
    key: Ed25519PrivateKey, hub_id: str, *, issued_at: float | None = None, jti: str | None = None,
    purpose: str = "set-password",
) -> str:  # fmt: skip
    """The JWS that lets `POST /api/v1/session/password` set the owner password: signed by an
    enrolled owner key, fresh (±300 s) and single use (hub/api/session.py)."""
    payload = {
        "v": 1,
        "hub": hub_id,
        "purpose": purpose,
        "issued_at": rfc3339.format(int(time.time() if issued_at is None else issued_at)),
        "jti": jti or secrets.token_urlsafe(18),
    }
    return jws.sign(json.dumps(payload).encode("utf-8"), key, kid_of(key), PASSWORD_PROOF_TYP)


def _context(cafile: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=cafile) if cafile else None


def http_json(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str | None = None,
    cafile: str | None = None,
) -> Any:
    """One HTTP call; returns the JSON answer or raises HubHTTPError with the error body."""
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30, context=_context(cafile)) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        raise HubHTTPError(exc.code, parsed) from None


def hub_identity(url: str, cafile: str | None = None) -> dict[str, Any]:
    """`GET /api/v1/hub` (§1). Through a relay (`{relay}/hubs/{hub_id}`, §7.1) the answer comes from
    the relay, which is not trusted: its key must hash to the hub_id in the URL."""
    doc = http_json("GET", url.rstrip("/") + "/api/v1/hub", cafile=cafile)
    pinned = re.search(r"/hubs/([A-Za-z0-9_-]{43})/?$", url)
    if pinned is not None:
        try:
            ok = doc["hub_id"] == pinned.group(1) and jwk_thumbprint(doc["public_jwk"]) == pinned.group(1)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise HubHTTPError(0, {"error": "wrong_hub", "detail": "the relay answered for another hub"})
    return doc


def enroll_first(
    url: str, key: Ed25519PrivateKey, pairing_code: str, name: str, cafile: str | None = None
) -> Any:
    body = json.dumps({"pairing_code": pairing_code, "public_jwk": public_jwk(key), "name": name}).encode()
    return http_json("POST", url.rstrip("/") + "/api/v1/owner/enroll", body, "application/json", cafile)


def post_decision(url: str, compact: str, cafile: str | None = None, path: str = "/api/v1/decisions") -> Any:
    return http_json("POST", url.rstrip("/") + path, compact.encode("ascii"), "application/jose", cafile)


def decide(url: str, key: Ed25519PrivateKey, fields: dict[str, Any], cafile: str | None = None) -> Any:
    """Sign `fields` for the hub at `url` (its hub_id read from `GET /api/v1/hub`) and post it.
    Through a relay (`{relay}/hubs/{hub_id}`) the JWS is sealed to the hub (PROTOCOL §7.6)."""
    hub = hub_identity(url, cafile)
    compact = sign_decision(key, hub["hub_id"], fields)
    if re.search(r"/hubs/[A-Za-z0-9_-]{43}/?$", url):
        return post_sealed_decision(url, hub, compact, cafile)
    return post_decision(url, compact, cafile)


def post_sealed_decision(url: str, hub: dict[str, Any], compact: str, cafile: str | None = None) -> Any:
    """POST a decision sealed to the hub's recipient (checked with the hub key in `hub`)."""
    recipient = sealed_bodies.verified_recipient(hub)
    body = sealed_bodies.seal(compact.encode("ascii"), recipient)
    return http_json("POST", url.rstrip("/") + "/api/v1/decisions", body, sealed_bodies.CONTENT_TYPE, cafile)


def confirm_time(url: str, key: Ed25519PrivateKey, cafile: str | None = None) -> Any:
    """§6: tell the hub this device's time (POST /api/v1/owner/clock)."""
    hub_id = hub_identity(url, cafile)["hub_id"]
    compact = sign_decision(key, hub_id, {"decision": "confirm-time"})
    return post_decision(url, compact, cafile, path="/api/v1/owner/clock")
