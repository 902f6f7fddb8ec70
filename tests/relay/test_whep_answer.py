"""The hub's signature on a WHEP answer (camhub_protocol/whep.py): what a relay in the middle of the
signalling cannot fake — another DTLS fingerprint in the answer, an old answer to a new offer, another
key — is refused before the answer is applied."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import whep
from camhub_protocol.errors import JWSError
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk

OFFER = b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 AA:BB\r\n"
ANSWER = b"v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\na=fingerprint:sha-256 CC:DD\r\n"


def test_the_hubs_answer_verifies_and_nothing_else_does() -> None:
    hub = Ed25519PrivateKey.generate()
    jwk = okp_public_jwk(hub.public_key())
    hub_id = jwk_thumbprint(jwk)
    signature = whep.sign_answer(hub, hub_id, OFFER, ANSWER)
    whep.verify_answer(signature, jwk, OFFER, ANSWER)

    swapped = ANSWER.replace(b"CC:DD", b"EE:FF")  # the relay's own DTLS fingerprint
    cases = {
        "answer_mismatch": (signature, jwk, OFFER, swapped),
        "answer_mismatch ": (signature, jwk, OFFER + b"a=x\r\n", ANSWER),  # an old answer to a new offer
        "answer_unsigned": (None, jwk, OFFER, ANSWER),
    }
    other = Ed25519PrivateKey.generate()
    other_jwk = okp_public_jwk(other.public_key())
    cases["answer_wrong_hub"] = (
        whep.sign_answer(other, jwk_thumbprint(other_jwk), OFFER, ANSWER),
        jwk,
        OFFER,
        ANSWER,
    )
    cases["jws_bad_signature"] = (whep.sign_answer(other, hub_id, OFFER, ANSWER), jwk, OFFER, ANSWER)
    for code, args in cases.items():
        with pytest.raises(JWSError) as err:
            whep.verify_answer(*args)
        assert err.value.code == code.strip(), (code, err.value.code)
