"""The hub's own identity (PROTOCOL.md §1): an Ed25519 key made on first start that never leaves the box.

`hub_id` is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key as an OKP JWK
(RFC 8037 §2). The private key is stored PKCS#8 PEM in `keys/hub.key`, mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camhub_protocol import durable


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5), as every JOSE field uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of `b64url`: exactly one string decodes to given bytes.

    The stdlib decoder skips characters outside the alphabet and ignores the unused low bits of the
    last character, so `x + "!!"` or `x` with other trailing bits would decode to the same key under
    a different JWK thumbprint (an alias kid that survives revoking the visible one: issue 12). Only
    the canonical unpadded spelling (RFC 4648 §3.5, §5) is accepted.
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise ValueError("not the canonical base64url encoding (non-zero trailing bits)")
    return raw


def okp_public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an OKP JWK (RFC 8037 §2)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("only Ed25519 OKP JWKs are accepted")
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def jwk_thumbprint_any(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an owner key of either kind: an Ed25519 OKP JWK, or a passkey's EC
    P-256 JWK (required members crv, kty, x, y in that order; PROTOCOL §3.1)."""
    if jwk.get("kty") == "EC":
        if (
            jwk.get("crv") != "P-256"
            or not isinstance(jwk.get("x"), str)
            or not isinstance(jwk.get("y"), str)
        ):
            raise ValueError("only P-256 EC JWKs are accepted")
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())
    return jwk_thumbprint(jwk)


def public_key_from_jwk(jwk: dict[str, str]) -> Ed25519PublicKey:
    """Parse an Ed25519 OKP JWK; raises ValueError on anything else (no private members accepted)."""
    if not isinstance(jwk, dict) or "d" in jwk:
        raise ValueError("expected a public OKP JWK")
    jwk_thumbprint(jwk)  # validates kty/crv/x
    # 32 bytes are exactly 43 unpadded characters; checked first so nothing long is decoded.
    if len(jwk["x"]) != 43:
        raise ValueError("x must be the unpadded base64url of exactly 32 bytes (43 characters)")
    raw = b64url_decode(jwk["x"])
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class HubKey:
    """The device signing key and its derived identity."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_jwk(self) -> dict[str, str]:
        return okp_public_jwk(self.public_key)

    @property
    def hub_id(self) -> str:
        return jwk_thumbprint(self.public_jwk)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> tuple[HubKey, bool]:
        """Load `keys_dir/hub.key`, creating it (0600, atomically) if absent. Returns (key, created)."""
        return cls.load_or_create_at(keys_dir / "hub.key")

    @classmethod
    def load_or_create_at(cls, path: Path) -> tuple[HubKey, bool]:
        """Load the key at `path` (`[hub] key_file`), creating it (0600, atomically) if absent."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 private key")
            return cls(key), False
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_secret(path, pem)
        return cls(key), True


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file with mode 0600 from the first byte on (never world-readable), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    durable.replace(tmp, path)  # a lost rename would bring back no key, and a new one at next start
