"""A software WebAuthn authenticator for server-level passkey tests (PROTOCOL §3.1).

Written from WebAuthn L2 §6.1 (authenticator data), §6.5 (attestation object, fmt "none") and
RFC 9052 §7 (COSE_Key), independently of the hub's code, so the hub's verifier is checked against
bytes it did not make itself. The browser tests use Chromium's own virtual authenticator instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import rfc3339

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40
ENROLL_LABEL = b"camhub-passkey-enroll-v1"
MEMBER_LABEL = b"camhub-member-passkey-v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class SoftPasskey:
    rp_id: str
    origin: str
    alg: str = "ES256"  # or "EdDSA"
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    counter: int = 0
    key: Any = None

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = (
                ec.generate_private_key(ec.SECP256R1())
                if self.alg == "ES256"
                else Ed25519PrivateKey.generate()
            )

    def cose_key(self) -> bytes:
        if self.alg == "ES256":
            nums = self.key.public_key().public_numbers()
            return cbor2.dumps(
                {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
            )
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517: EC P-256 or OKP Ed25519), as the hub stores a passkey's."""
        if self.alg == "ES256":
            nums = self.key.public_key().public_numbers()
            return {
                "kty": "EC",
                "crv": "P-256",
                "x": b64url(nums.x.to_bytes(32, "big")),
                "y": b64url(nums.y.to_bytes(32, "big")),
            }
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of `public_jwk()`."""
        return b64url(
            hashlib.sha256(
                json.dumps(self.public_jwk(), separators=(",", ":"), sort_keys=True).encode()
            ).digest()
        )

    def _sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data)

    def create(
        self, hub_id: str, *, uv: bool = True, origin: str | None = None, challenge: bytes | None = None
    ) -> dict[str, str]:
        """`navigator.credentials.create()` with the hub's fixed enrolment challenge (or `challenge`,
        e.g. a household member's, `member_challenge`)."""
        if challenge is None:
            challenge = hashlib.sha256(ENROLL_LABEL + b"\x00" + hub_id.encode()).digest()
        client = json.dumps(
            {
                "type": "webauthn.create",
                "challenge": b64url(challenge),
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0)
        attested = (
            bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self.cose_key()
        )
        auth = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([flags])
            + self.counter.to_bytes(4, "big")
            + attested
        )
        att = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return {
            "credential_id": b64url(self.credential_id),
            "client_data_json": b64url(client),
            "attestation_object": b64url(att),
        }

    def assert_(
        self, challenge: str, *, uv: bool = True, origin: str | None = None, rp_id: str | None = None,
        bump: bool = True, type_: str = "webauthn.get",
    ) -> tuple[bytes, bytes, bytes]:  # fmt: skip
        """`navigator.credentials.get()`: (authenticatorData, clientDataJSON, signature)."""
        if bump:
            self.counter += 1
        client = json.dumps(
            {"type": type_, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()
        flags = FLAG_UP | (FLAG_UV if uv else 0)
        auth = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([flags])
            + self.counter.to_bytes(4, "big")
        )
        return auth, client, self._sign(auth + hashlib.sha256(client).digest())


def member_challenge(hub_id: str, member_id: str) -> bytes:
    """A household member's registration challenge (PROTOCOL §1.2), written from the spec text."""
    return hashlib.sha256(MEMBER_LABEL + b"\x00" + hub_id.encode() + b"\x00" + member_id.encode()).digest()


def payload(hub_id: str, fields: dict[str, Any], **overrides: Any) -> bytes:
    body = {
        "v": 1,
        "hub": hub_id,
        **fields,
        "issued_at": rfc3339.format(int(time.time())),
        "jti": secrets.token_urlsafe(16),
    }
    return rfc8785.dumps({**body, **overrides})


def challenge_of(payload_bytes: bytes) -> str:
    return b64url(hashlib.sha256(payload_bytes).digest())


def decision(
    pk: SoftPasskey, payload_bytes: bytes, assertion: tuple[bytes, bytes, bytes] | None = None, **kw: Any
) -> bytes:
    """The §3.1 JSON body for `payload_bytes`, signed by `pk` (or carrying a given assertion)."""
    auth, client, sig = assertion or pk.assert_(challenge_of(payload_bytes), **kw)
    return json.dumps(
        {"v": 1, "format": "webauthn", "kid": pk.kid, "payload": b64url(payload_bytes),
         "authenticator_data": b64url(auth), "client_data_json": b64url(client), "signature": b64url(sig)}
    ).encode()  # fmt: skip
