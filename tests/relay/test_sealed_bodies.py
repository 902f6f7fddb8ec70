"""Bodies sealed to the hub (PROTOCOL §7.6): the hub's age identity derived from its key matches what
age itself (pyrage) makes of it, and a recipient the hub key did not state is refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from camhub_protocol import sealed_bodies
from camhub_protocol.errors import ConsentError, JWSError
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk


def _doc(
    key: Ed25519PrivateKey, recipient: str, signer: Ed25519PrivateKey | None = None
) -> dict[str, object]:
    jwk = okp_public_jwk(key.public_key())
    hub_id = jwk_thumbprint(jwk)
    statement = sealed_bodies.recipient_statement(signer or key, hub_id, recipient)
    return {"hub_id": hub_id, "public_jwk": jwk, "recipient": recipient, "recipient_jws": statement}


def test_the_derived_identity_is_an_age_identity_and_opens_what_is_sealed_to_it() -> None:
    key = Ed25519PrivateKey.generate()
    identity, recipient = sealed_bodies.hub_identity(key)
    assert sealed_bodies.hub_identity(key) == (identity, recipient)  # derived, not random
    assert str(x25519.Identity.from_str(identity).to_public()) == recipient  # pyrage agrees (Bech32)
    assert recipient != sealed_bodies.hub_identity(Ed25519PrivateKey.generate())[1]
    sealed = sealed_bodies.seal(b'{"case_id": "x"}', sealed_bodies.verified_recipient(_doc(key, recipient)))
    assert sealed.startswith(b"age-encryption.org/v1\n") and b"case_id" not in sealed
    assert sealed_bodies.open_sealed(sealed, identity) == b'{"case_id": "x"}'
    with pytest.raises(ConsentError) as err:
        sealed_bodies.open_sealed(sealed, sealed_bodies.hub_identity(Ed25519PrivateKey.generate())[0])
    assert err.value.code == "sealed_body_invalid"


def test_a_recipient_the_hub_key_did_not_state_is_refused() -> None:
    key, relay = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _, recipient = sealed_bodies.hub_identity(key)
    _, relays_own = sealed_bodies.hub_identity(relay)
    swapped = _doc(key, recipient) | {"recipient": relays_own}  # the relay's recipient, the hub's statement
    forged = _doc(key, relays_own, signer=relay)  # a statement the relay signed itself
    unstated = {k: v for k, v in _doc(key, recipient).items() if k != "recipient_jws"}
    for doc, code in (
        (swapped, "recipient_mismatch"),
        (forged, "jws_bad_signature"),
        (unstated, "no_recipient"),
    ):
        with pytest.raises(JWSError) as err:
            sealed_bodies.verified_recipient(doc)
        assert err.value.code == code
