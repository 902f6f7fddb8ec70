"""The hub's signature on a WHEP answer (PROTOCOL §2.4, §7.3).

An agency's WHEP offer is covered by its RFC 9421 signature, but the SDP answer comes back through
whatever carried the offer — through a relay, the relay. An answer carries the hub's DTLS
fingerprint: a relay that swapped it (and ran the TURN server) could sit in the middle of the
livestream. So the hub signs every agency answer: `Camhub-Answer-Signature` is a compact JWS
(`typ` `camhub-whep-answer+jws`, `kid` the hub id, Ed25519 with the hub key) over
`{"v":1,"hub","offer_sha256","answer_sha256"}`, the hex SHA-256 of the exact offer and answer
bodies. The agency checks it with the hub key it pinned (thumbprint = hub id) before it applies
the answer; binding the offer means an old answer cannot be replayed to a new offer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws
from camhub_protocol.errors import JWSError
from camhub_protocol.keys import jwk_thumbprint, public_key_from_jwk

HEADER = "Camhub-Answer-Signature"
TYP = "camhub-whep-answer+jws"


def sign_answer(key: Ed25519PrivateKey, hub_id: str, offer: bytes, answer: bytes) -> str:
    payload = {
        "v": 1,
        "hub": hub_id,
        "offer_sha256": hashlib.sha256(offer).hexdigest(),
        "answer_sha256": hashlib.sha256(answer).hexdigest(),
    }
    return jws.sign(json.dumps(payload, separators=(",", ":")).encode(), key, hub_id, TYP)


def verify_answer(compact: str | None, hub_jwk: dict[str, Any], offer: bytes, answer: bytes) -> None:
    """Raise JWSError unless `compact` is the hub's signature over exactly this offer and answer."""
    if not compact:
        raise JWSError("answer_unsigned", f"the WHEP answer has no {HEADER}", status=403)
    hub_id = jwk_thumbprint(hub_jwk)
    parsed = jws.parse(compact, typ=TYP)
    if parsed.header.get("kid") != hub_id:
        raise JWSError("answer_wrong_hub", "the answer is signed for another hub", status=403)
    try:
        key = public_key_from_jwk(hub_jwk)
    except ValueError as exc:
        raise JWSError("jws_bad_key", "the hub key is not an Ed25519 JWK", status=403) from exc
    doc = json.loads(jws.verify(parsed, key))
    expected = {
        "v": 1,
        "hub": hub_id,
        "offer_sha256": hashlib.sha256(offer).hexdigest(),
        "answer_sha256": hashlib.sha256(answer).hexdigest(),
    }
    if doc != expected:
        raise JWSError("answer_mismatch", "the signature is not over this offer and answer", status=403)
