"""Passkeys (PROTOCOL.md §3.1, issue 18): owner keys whose signatures are WebAuthn assertions.

A passkey is an owner key like the WebCrypto and CLI keys (a row of `owner_keys`, kid = RFC 7638
thumbprint of its public key as a JWK), so lineage, revocation and "never the last key" hold for it
unchanged. What differs is only how a decision is signed: the payload's SHA-256 is the WebAuthn
challenge, and the authenticator signs `authenticatorData ‖ SHA-256(clientDataJSON)` (WebAuthn L2
§6.3.3, §7.2). The browser shows nothing of the payload during the ceremony, which is why the UI
shows the whole decision right before it asks (hub/web/views/inbox.js).

Parsing and the checks that have their own error codes are done here, in the documented order; the
signature itself (COSE key decoding, ES256/EdDSA) is verified by the `webauthn` package, which
re-checks the rest once more. The signature counter is checked by the caller (`decisions`), after
the `jti` is spent, so that a replay reads as `jti_replayed` and only a fresh assertion with a stale
counter as a clone (`passkey_counter_regressed`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import rfc8785
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.cose import COSECRV, COSEAlgorithmIdentifier
from webauthn.helpers.decode_credential_public_key import (
    DecodedEC2PublicKey,
    DecodedOKPPublicKey,
    decode_credential_public_key,
)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse

from camhub_protocol import jws
from camhub_protocol.errors import ConsentError, JWSError
from camhub_protocol.keys import b64url, b64url_decode, jwk_thumbprint_any
from hub.store import consent as q

FORMAT = "webauthn"
MEMBERS = frozenset({"v", "format", "kid", "payload", "authenticator_data", "client_data_json", "signature"})
ENROLL_CHALLENGE_LABEL = b"camhub-passkey-enroll-v1"
# A household member's passkey (PROTOCOL §1.2) is registered against its own label and the member's
# id, so an owner's enrolment answer is never a member's, nor one member's another's (and back).
MEMBER_CHALLENGE_LABEL = b"camhub-member-passkey-v1"
# ES256 and EdDSA only (issue 18): the algorithms a passkey is made with on today's phones, both with
# fixed curves. RSA and the rest are refused at enrolment.
ALGS = (COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.EDDSA)
MAX_BODY_BYTES = 64 * 1024
# authenticatorData: rpIdHash (32) ‖ flags (1) ‖ signCount (4) ‖ … (WebAuthn L2 §6.1)
FLAG_UP = 0x01
FLAG_UV = 0x04


def invalid(detail: str) -> ConsentError:
    return ConsentError("invalid_decision", detail, 400)


def refuse(code: str, detail: str) -> ConsentError:
    return ConsentError(code, detail, 403)


@dataclass(frozen=True)
class RelyingParty:
    """The hub as a WebAuthn relying party: its rpId and which origins count as its own."""

    rp_id: str

    def origin_ok(self, origin: Any) -> bool:
        """§3.1: host exactly the rpId over https, or http when the rpId is localhost; any port."""
        if not isinstance(origin, str):
            return False
        try:
            parts = urlsplit(origin)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return False
        if host != self.rp_id or parts.path or parts.query or parts.fragment or parts.username:
            return False
        return parts.scheme == "https" or (parts.scheme == "http" and self.rp_id == "localhost")


def enroll_challenge(hub_id: str) -> bytes:
    """The registration challenge (§3.1): fixed per hub; the pairing code or the signing owner key
    authorises an enrolment, not this."""
    return hashlib.sha256(ENROLL_CHALLENGE_LABEL + b"\x00" + hub_id.encode("ascii")).digest()


def member_challenge(hub_id: str, member_id: str) -> bytes:
    """A member's registration challenge (§1.2): SHA-256(label ‖ 0x00 ‖ hub_id ‖ 0x00 ‖ member_id)."""
    return hashlib.sha256(
        MEMBER_CHALLENGE_LABEL + b"\x00" + hub_id.encode("ascii") + b"\x00" + member_id.encode("ascii")
    ).digest()


def _b64(value: Any, what: str, error: type[Exception] = ValueError) -> bytes:
    if not isinstance(value, str) or len(value) > MAX_BODY_BYTES:
        raise ValueError(f"{what} must be a base64url string")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _client_data(raw: bytes) -> dict[str, Any]:
    try:
        data = jws.decode_json(raw, "clientDataJSON")
    except JWSError as exc:
        raise ValueError(exc.detail) from exc
    if not isinstance(data, dict):
        raise ValueError("clientDataJSON is not a JSON object")
    return data


def public_jwk(cose_key: bytes) -> tuple[dict[str, str], int]:
    """The credential public key as a JWK (for the kid) and its COSE alg; ValueError if not ES256/EdDSA."""
    decoded = decode_credential_public_key(cose_key)
    if isinstance(decoded, DecodedEC2PublicKey):
        if decoded.alg != COSEAlgorithmIdentifier.ECDSA_SHA_256 or decoded.crv != COSECRV.P256:
            raise ValueError("an EC2 passkey must be ES256 on P-256")
        if len(decoded.x) != 32 or len(decoded.y) != 32:
            raise ValueError("a P-256 coordinate is 32 bytes")
        return {"kty": "EC", "crv": "P-256", "x": b64url(decoded.x), "y": b64url(decoded.y)}, int(decoded.alg)
    if isinstance(decoded, DecodedOKPPublicKey):
        if (
            decoded.alg != COSEAlgorithmIdentifier.EDDSA
            or decoded.crv != COSECRV.ED25519
            or len(decoded.x) != 32
        ):
            raise ValueError("an OKP passkey must be EdDSA on Ed25519")
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(decoded.x)}, int(decoded.alg)
    raise ValueError("only ES256 and EdDSA passkeys are accepted")


@dataclass(frozen=True)
class NewPasskey:
    kid: str
    public_jwk: dict[str, str]
    credential_id: str
    cose_key: bytes
    sign_count: int


def register(rp: RelyingParty, hub_id: str, value: Any, *, challenge: bytes | None = None) -> NewPasskey:
    """Check a `navigator.credentials.create()` response (§3.1 "Enrolment"); ValueError says why.
    `challenge` defaults to the owner's enrolment challenge; a member's join passes `member_challenge`."""
    if not isinstance(value, dict) or set(value) != {
        "credential_id",
        "client_data_json",
        "attestation_object",
    }:
        raise ValueError('passkey is {"credential_id", "client_data_json", "attestation_object"}')
    credential_id = _b64(value["credential_id"], "passkey.credential_id")
    client_data_raw = _b64(value["client_data_json"], "passkey.client_data_json")
    attestation = _b64(value["attestation_object"], "passkey.attestation_object")
    if not 16 <= len(credential_id) <= 1023:  # WebAuthn L2 §4 "Credential ID": at most 1023 bytes
        raise ValueError("passkey.credential_id must be 16 to 1023 bytes")
    client_data = _client_data(client_data_raw)
    if client_data.get("type") != "webauthn.create":
        raise ValueError("clientDataJSON.type must be webauthn.create")
    if not rp.origin_ok(client_data.get("origin")):
        raise ValueError(f"origin {client_data.get('origin')!r} is not this hub's ({rp.rp_id})")
    try:
        verified = verify_registration_response(
            credential={
                "id": b64url(credential_id),
                "rawId": b64url(credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data_raw),
                    "attestationObject": b64url(attestation),
                },
            },
            expected_challenge=enroll_challenge(hub_id) if challenge is None else challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=client_data["origin"],
            require_user_presence=True,
            require_user_verification=True,
            supported_pub_key_algs=list(ALGS),
        )
    except InvalidRegistrationResponse as exc:
        raise ValueError(str(exc)) from exc
    except Exception as exc:  # the package's CBOR and attestation parsers raise their own zoo
        raise ValueError(f"attestation_object is malformed ({type(exc).__name__})") from exc
    if verified.credential_id != credential_id:
        raise ValueError("passkey.credential_id differs from the one in the attestation")
    jwk, _alg = public_jwk(verified.credential_public_key)
    return NewPasskey(
        jwk_thumbprint_any(jwk),
        jwk,
        b64url(credential_id),
        verified.credential_public_key,
        verified.sign_count,
    )


@dataclass(frozen=True)
class SignedDecision:
    """A posted passkey decision (§3.1), parsed but not verified."""

    kid: str
    payload_bytes: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    canonical: str  # the body in RFC 8785 form: what is stored and audited

    @property
    def sign_count(self) -> int:
        return int.from_bytes(self.authenticator_data[33:37], "big")

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.canonical)


def is_passkey_body(body: bytes) -> bool:
    """A passkey decision is a JSON object; a JWS compact string never starts with `{`."""
    return body.lstrip()[:1] == b"{"


def parse(body: bytes) -> SignedDecision:
    """Syntax of the §3.1 body; 400 `invalid_decision` for anything malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise ConsentError("jws_too_large", f"decision longer than {MAX_BODY_BYTES} bytes", 413)
    try:
        obj = jws.decode_json(body, "decision")
    except JWSError as exc:
        raise invalid(exc.detail) from exc
    if not isinstance(obj, dict) or set(obj) != MEMBERS:
        raise invalid(f"a passkey decision has exactly the members {', '.join(sorted(MEMBERS))}")
    if obj["v"] != 1 or isinstance(obj["v"], bool) or obj["format"] != FORMAT:
        raise invalid('v must be 1 and format "webauthn"')
    if not isinstance(obj["kid"], str) or not 0 < len(obj["kid"]) <= 256:
        raise invalid("kid must be a non-empty string")
    try:
        payload = _b64(obj["payload"], "payload")
        auth_data = _b64(obj["authenticator_data"], "authenticator_data")
        client_data = _b64(obj["client_data_json"], "client_data_json")
        signature = _b64(obj["signature"], "signature")
    except ValueError as exc:
        raise invalid(str(exc)) from exc
    return SignedDecision(
        obj["kid"], payload, auth_data, client_data, signature, rfc8785.dumps(obj).decode("utf-8")
    )


def payload_of(signed: SignedDecision) -> dict[str, Any]:
    """The §3 payload object; its bytes must be its own RFC 8785 form (one payload, one challenge)."""
    try:
        payload = jws.decode_json(signed.payload_bytes, "payload")
    except JWSError as exc:
        raise invalid(exc.detail) from exc
    if not isinstance(payload, dict):
        raise invalid("payload must be a JSON object")
    try:
        canonical = rfc8785.dumps(payload)
    except Exception as exc:
        raise invalid(f"payload cannot be canonicalised: {exc}") from exc
    if canonical != signed.payload_bytes:
        raise invalid("payload bytes are not in RFC 8785 canonical form")
    return payload


def challenge(payload_bytes: bytes) -> str:
    return b64url(hashlib.sha256(payload_bytes).digest())


def verify(rp: RelyingParty, key: q.Passkey, signed: SignedDecision) -> None:
    """§3.1 checks after the key is found, each with its code; the counter is left to the caller."""
    try:
        client_data = _client_data(signed.client_data_json)
    except (ValueError, JWSError) as exc:
        raise refuse("passkey_bad_client_data", "clientDataJSON is not a JSON object") from exc
    if client_data.get("type") != "webauthn.get":
        raise refuse("passkey_bad_client_data", "clientDataJSON.type must be webauthn.get")
    if client_data.get("challenge") != challenge(signed.payload_bytes):
        raise refuse("passkey_wrong_challenge", "the assertion was made for another payload")
    if not rp.origin_ok(client_data.get("origin")):
        raise refuse(
            "passkey_bad_origin", f"origin {str(client_data.get('origin'))[:100]!r} is not this hub's"
        )
    auth = signed.authenticator_data
    if (
        len(auth) < 37
        or auth[:32] != hashlib.sha256(rp.rp_id.encode("ascii")).digest()
        or key.rp_id != rp.rp_id
    ):
        raise refuse("passkey_bad_rp_id", f"the assertion is not for relying party {rp.rp_id}")
    if auth[32] & (FLAG_UP | FLAG_UV) != FLAG_UP | FLAG_UV:
        raise refuse("passkey_user_not_verified", "the authenticator did not verify the user (UV flag)")
    try:
        verify_authentication_response(
            credential={
                "id": key.credential_id,
                "rawId": key.credential_id,
                "type": "public-key",
                "response": {
                    "authenticatorData": b64url(auth),
                    "clientDataJSON": b64url(signed.client_data_json),
                    "signature": b64url(signed.signature),
                },
            },
            expected_challenge=hashlib.sha256(signed.payload_bytes).digest(),
            expected_rp_id=rp.rp_id,
            expected_origin=client_data["origin"],
            credential_public_key=key.public_key,
            credential_current_sign_count=0,  # checked by the caller after the jti (module docstring)
            require_user_verification=True,
        )
    except InvalidAuthenticationResponse as exc:
        raise refuse("passkey_bad_signature", "the assertion's signature does not verify") from exc
    except Exception as exc:
        raise refuse(
            "passkey_bad_signature", f"the assertion's signature does not verify ({type(exc).__name__})"
        ) from exc


def counter_regressed(stored: int, seen: int) -> bool:
    """WebAuthn L2 §6.1.1: a counter that does not grow means two copies of the credential (unless
    the authenticator keeps none: 0 both times, as synced passkeys do)."""
    return (stored > 0 or seen > 0) and seen <= stored
