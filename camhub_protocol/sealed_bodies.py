"""Bodies sealed to the hub (PROTOCOL §7.6): what a relay carries but must not read.

(Not `hub/record/sealed.py`, which seals footage at rest.)

A relay sees every byte agencies and owners send through it. Agency requests (case, reason, contact,
cameras, time range) and owner decisions (approve or decline, scope) are sealed to the hub with age
(age-encryption.org/v1, X25519), `Content-Type: application/age`; the hub opens them and then judges
them exactly as if they came in clear. The signature still covers what is sent (RFC 9421
`content-digest` of the sealed bytes; a decision's JWS is inside), so a relay can neither read nor
alter them.

The hub's age identity is derived from its Ed25519 key (HKDF-SHA256, info
`camhub hub age identity v1`): it needs no file of its own, moves with `[hub] key_file` off the
card, and is gone with the hub key. The hub states its recipient in `GET /api/v1/hub` as
`"recipient": "age1…"` with `"recipient_jws"`, a compact JWS by the hub key (`typ`
`camhub-hub-recipient+jws`) over `{"v":1,"hub","recipient"}`: a client that pinned the hub key
(thumbprint = hub id) checks it before sealing anything, so a relay cannot slip in its own recipient.

age writes X25519 keys in Bech32 (BIP 173): the encoder is here, checked against pyrage's parser.
"""

from __future__ import annotations

import json
from typing import Any

import pyrage
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyrage import x25519

from camhub_protocol import jws
from camhub_protocol.errors import ConsentError, JWSError
from camhub_protocol.keys import jwk_thumbprint, public_key_from_jwk

CONTENT_TYPE = "application/age"
RECIPIENT_TYP = "camhub-hub-recipient+jws"
_INFO = b"camhub hub age identity v1"
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def bech32(hrp: str, data: bytes) -> str:
    """BIP 173 Bech32 of `data` (8-bit groups regrouped to 5 bits, padded) under `hrp`, lowercase."""
    acc, bits, words = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = _polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def hub_identity(hub_key: Ed25519PrivateKey) -> tuple[str, str]:
    """(age identity `AGE-SECRET-KEY-1…`, recipient `age1…`) the hub derives from its Ed25519 key."""
    raw = hub_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    return bech32("age-secret-key-", secret).upper(), bech32("age", public)


def recipient_statement(hub_key: Ed25519PrivateKey, hub_id: str, recipient: str) -> str:
    payload = json.dumps({"v": 1, "hub": hub_id, "recipient": recipient}, separators=(",", ":")).encode()
    return jws.sign(payload, hub_key, hub_id, RECIPIENT_TYP)


def verified_recipient(hub_doc: dict[str, Any]) -> str:
    """The hub's age recipient from its §1 document, once its statement verifies with the document's
    key; the caller has already checked that key's thumbprint against the hub id it expects."""
    try:
        jwk = hub_doc["public_jwk"]
        hub_id = jwk_thumbprint(jwk)
        parsed = jws.parse(str(hub_doc["recipient_jws"]), typ=RECIPIENT_TYP)
        doc = json.loads(jws.verify(parsed, public_key_from_jwk(jwk)))
    except (KeyError, TypeError, ValueError) as exc:
        raise JWSError("no_recipient", "the hub states no age recipient", status=403) from exc
    recipient = doc.get("recipient") if isinstance(doc, dict) else None
    if (
        parsed.header.get("kid") != hub_id
        or doc.get("hub") != hub_id
        or recipient != hub_doc.get("recipient")
    ):
        raise JWSError("recipient_mismatch", "the recipient statement is not this hub's", status=403)
    return str(recipient)


def seal(plaintext: bytes, recipient: str) -> bytes:
    return pyrage.encrypt(plaintext, [x25519.Recipient.from_str(recipient)])


def open_sealed(ciphertext: bytes, identity: str) -> bytes:
    """The plaintext of a body sealed to the hub; 400 `sealed_body_invalid` if it does not open."""
    try:
        return pyrage.decrypt(ciphertext, [x25519.Identity.from_str(identity)])
    except (pyrage.DecryptError, ValueError) as exc:
        raise ConsentError("sealed_body_invalid", "the body is not sealed to this hub", 400) from exc


def is_sealed(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == CONTENT_TYPE
