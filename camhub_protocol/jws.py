"""JWS compact serialization with Ed25519 only (RFC 7515 §3.1, §5.2; RFC 8037 §3.1; RFC 9864).

Owner decisions (PROTOCOL §3) and delivery manifests (§2.3) are JWS compact strings. The accepted
`alg` values are a fixed allowlist: `Ed25519` (the fully specified name of RFC 9864 §2.2) and the
older `EdDSA` (RFC 8037 §3.1). The verifying key is always chosen by the caller from the `kid`;
the header can never select a key type or carry a key (`jwk`, `jku`, `x5u`, `x5c` are refused, so
are `crit` and anything else not on the member allowlist: RFC 7515 §4.1.11 lets a verifier refuse
extensions it does not understand, and we understand none).

Parsing is strict: exactly three segments, unpadded base64url with canonical trailing bits (so one
signature has one encoding), UTF-8 JSON objects without duplicate member names (RFC 7515 §5.2 step
4 permits rejecting them; we must, or two parsers could read different headers), and a size cap.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camhub_protocol.errors import JWSError

#: RFC 9864 fully specified name first; the RFC 8037 polymorphic name is accepted, nothing else.
ALLOWED_ALGS = frozenset({"Ed25519", "EdDSA"})
#: Header members we understand; every other member (crit, jwk, jku, x5u, x5c, b64, zip, ...) is refused.
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "kid", "typ", "cty"})
#: Decisions are small JSON objects; manifests list a handful of files. 64 KiB matches the body cap.
MAX_COMPACT_BYTES = 64 * 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class ParsedJWS(NamedTuple):
    """A syntactically valid, not yet verified JWS: `(header, payload, signing_input, signature)`."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def b64url_decode_strict(text: str, what: str = "segment") -> bytes:
    """Unpadded base64url (RFC 7515 §2, RFC 4648 §5) whose encoding is the canonical one."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JWSError("jws_malformed", f"{what} is not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Non-zero trailing bits decode to the same bytes; accept only the one canonical spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise JWSError("jws_malformed", f"{what} has non-canonical base64url padding bits")
    return raw


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JWSError("jws_duplicate_member", f"duplicate JSON member {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise JWSError("jws_malformed", f"JSON constant {name} is not allowed")


def decode_json(data: bytes, what: str = "payload") -> Any:
    """Strict JSON (RFC 8259) from UTF-8 bytes: no duplicate names, no NaN/Infinity, no BOM."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JWSError("jws_malformed", f"{what} is not UTF-8") from exc
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except JWSError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JWSError("jws_malformed", f"{what} is not JSON") from exc


def sign(payload: bytes, private_key: Ed25519PrivateKey, kid: str, typ: str) -> str:
    """Compact JWS (RFC 7515 §7.1) over `payload`, header `{"alg":"Ed25519","kid","typ"}`."""
    header = json.dumps({"alg": "Ed25519", "kid": kid, "typ": typ}, separators=(",", ":")).encode()
    signing_input = f"{_b64url(header)}.{_b64url(payload)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{_b64url(private_key.sign(signing_input))}"


def parse(compact: str | bytes, *, typ: str | None = None) -> ParsedJWS:
    """Parse a compact JWS (RFC 7515 §5.2 steps 1-7) without verifying it.

    With `typ`, the header's `typ` must equal it (RFC 7515 §4.1.9; explicit typing, RFC 8725 §3.11).
    """
    if isinstance(compact, bytes):
        try:
            compact = compact.decode("ascii")
        except UnicodeDecodeError as exc:
            raise JWSError("jws_malformed", "JWS is not ASCII") from exc
    if not isinstance(compact, str):
        raise JWSError("jws_malformed", "JWS must be a string")
    if len(compact) > MAX_COMPACT_BYTES:
        raise JWSError("jws_too_large", f"JWS longer than {MAX_COMPACT_BYTES} bytes", status=413)
    parts = compact.split(".")
    if len(parts) != 3:
        raise JWSError("jws_malformed", f"expected 3 segments, got {len(parts)}")
    header_b64, payload_b64, sig_b64 = parts
    header = decode_json(b64url_decode_strict(header_b64, "header"), "header")
    if not isinstance(header, dict):
        raise JWSError("jws_malformed", "header is not a JSON object")
    extra = sorted(set(header) - ALLOWED_HEADER_MEMBERS)
    if extra:
        raise JWSError("jws_unsupported_header", f"header members not accepted: {', '.join(extra)}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise JWSError("jws_bad_alg", f"alg must be Ed25519 or EdDSA, got {alg!r}")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise JWSError("jws_malformed", "header needs a non-empty string kid")
    for member in ("typ", "cty"):
        if member in header and not isinstance(header[member], str):
            raise JWSError("jws_malformed", f"{member} must be a string")
    if typ is not None and header.get("typ") != typ:
        raise JWSError("jws_bad_typ", f"typ must be {typ!r}")
    payload = b64url_decode_strict(payload_b64, "payload")
    signature = b64url_decode_strict(sig_b64, "signature")
    if len(signature) != 64:
        raise JWSError("jws_malformed", "an Ed25519 signature is 64 bytes (RFC 8032 §5.1.6)")
    return ParsedJWS(header, payload, f"{header_b64}.{payload_b64}".encode("ascii"), signature)


def verify(parsed: ParsedJWS, public_key: Ed25519PublicKey) -> bytes:
    """Check the Ed25519 signature (RFC 8037 §3.1) with the caller's key; returns the payload."""
    if not isinstance(public_key, Ed25519PublicKey):
        raise JWSError("jws_bad_key", "only Ed25519 keys verify camhub JWS", status=403)
    try:
        public_key.verify(parsed.signature, parsed.signing_input)
    except InvalidSignature as exc:
        raise JWSError("jws_bad_signature", "signature does not verify", status=403) from exc
    return parsed.payload
