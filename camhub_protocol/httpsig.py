"""RFC 9421 HTTP Message Signatures with Ed25519, as PROTOCOL.md §2 profiles them.

Every call under `/api/agency/v1/` carries one signature labelled `sig1`, `alg="ed25519"`,
`tag="camhub-agency-v1"`, `created`, `expires`, `nonce` and `keyid`, covering at least
`@method`, `@authority`, `@path` (and `@query` when the URL has one, and `content-digest` +
`content-type` when there is a body, with an RFC 9530 `Content-Digest` that matches it).

Why not the `http-message-signatures` library: it verifies against its own wall clock with a fixed
skew, folds every rejection into one `InvalidSignature`, and selects signatures by tag rather than
insisting on exactly one `sig1`. PROTOCOL §2 needs an injected `now`, its own time windows and one
distinct error code per rule (each rejection is audited by code), so we would have to parse the
headers a second time before calling it. The signature base (§2.5) is small and is pinned to the
RFC's own Ed25519 vector (Appendix B.2.6) in the tests; the structured-field parsing lives in
`structured_fields.py`.

The verifier is independent of aiohttp: the route passes method, authority, path and query exactly
as received (not percent-decoded), the header field lines, the body, `now`, a key resolver and a
nonce callback. Nonces are stored by the caller; the callback runs only after the signature and
digest verified, so unauthenticated traffic cannot fill the nonce store.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camhub_protocol.errors import SignatureError
from camhub_protocol.structured_fields import (
    BareItem,
    InnerList,
    Item,
    Token,
    parse_dictionary,
    serialize_bare_item,
    serialize_inner_list,
)

LABEL = "sig1"
ALG = "ed25519"  # RFC 9421 §3.3.6
TAG = "camhub-agency-v1"
MAX_FUTURE_S = 60
MAX_VALIDITY_S = 300
MIN_NONCE_BYTES = 16
MAX_BODY_BYTES = 64 * 1024
NONCE_WINDOW_S = 600
REQUIRED_PARAMS = ("created", "expires", "nonce", "keyid", "alg", "tag")
_INT_PARAMS = frozenset({"created", "expires"})
#: RFC 9421 §2.2 derived components we can resolve for a request.
DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"})

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
KeyResolver = Callable[[str], Ed25519PublicKey | None]
NonceCheck = Callable[[str, str, int], bool]
"""`nonce_check(keyid, nonce, expires) -> fresh`: True if unseen for keyid in 600 s; records it."""
AsyncKeyResolver = Callable[[str], Awaitable[Ed25519PublicKey | None]]
AsyncNonceCheck = Callable[[str, str, int], Awaitable[bool]]


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP request a signature can cover (RFC 9421 §2.2), as received."""

    method: str
    authority: str
    path: str
    query: str | None
    headers: list[tuple[str, str]]
    scheme: str = "https"

    @classmethod
    def build(
        cls,
        method: str,
        authority: str,
        path: str,
        query: str | None,
        headers: Headers,
        scheme: str = "https",
    ) -> Request:
        items = headers.items() if isinstance(headers, Mapping) else headers
        # Multi-dicts (aiohttp CIMultiDict) yield every field line from items(); keep them all.
        return cls(method, authority, path, query, [(str(k), str(v)) for k, v in items], scheme)

    def field_lines(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


@dataclass(frozen=True)
class Verified:
    """A request whose signature, digest and nonce were accepted."""

    keyid: str
    created: int
    expires: int
    nonce: str
    components: tuple[str, ...]
    signature_params: str


def _b64url_nonce_bytes(nonce: str) -> int:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", nonce) or len(nonce) % 4 == 1:
        return -1
    return len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4)))


def field_value(request: Request, name: str) -> str | None:
    """RFC 9421 §2.1: every field line, OWS-trimmed, joined with ", "; None when absent."""
    lines = request.field_lines(name)
    if not lines:
        return None
    return ", ".join(line.strip(" \t") for line in lines)


def component_value(request: Request, name: str) -> str:
    """The value of one covered component (RFC 9421 §2.1 fields, §2.2 derived components)."""
    if name.startswith("@"):
        if name == "@method":  # §2.2.1: case-sensitive, as sent
            return request.method
        if name == "@authority":  # §2.2.3: lowercased host[:port]
            return request.authority.lower()
        if name == "@scheme":  # §2.2.4
            return request.scheme.lower()
        if name == "@path":  # §2.2.6: an empty path is "/"
            return request.path or "/"
        if name == "@query":  # §2.2.7: "?" + query, or "?" when there is none
            return "?" + (request.query or "")
        if name == "@request-target":  # §2.2.5
            return (request.path or "/") + (f"?{request.query}" if request.query else "")
        if name == "@target-uri":  # §2.2.2
            query = f"?{request.query}" if request.query else ""
            return f"{request.scheme.lower()}://{request.authority.lower()}{request.path or '/'}{query}"
        raise SignatureError("unsupported_component", f"derived component {name} is not supported")
    value = field_value(request, name)
    if value is None:
        code = "digest_missing" if name == "content-digest" else "component_absent"
        raise SignatureError(code, f"covered field {name} is not in the request")
    if any(c in value for c in "\r\n\0"):
        raise SignatureError("signature_malformed", f"field {name} has control characters")
    return value


def signature_base(request: Request, components: Iterable[str], signature_params: str) -> bytes:
    """RFC 9421 §2.5: one `"<id>": <value>` line per component, then `"@signature-params"`."""
    lines = [f"{serialize_bare_item(c)}: {component_value(request, c)}" for c in components]
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines).encode("utf-8")


def serialize_signature_params(components: Iterable[str], params: Iterable[tuple[str, BareItem]]) -> str:
    """The `@signature-params` value (RFC 9421 §2.3): an inner list of component ids with parameters."""
    return serialize_inner_list(InnerList([Item(c) for c in components], dict(params)))


def content_digest(body: bytes) -> str:
    """RFC 9530 §2 `Content-Digest` value with SHA-256."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def check_content_digest(value: str, body: bytes) -> None:
    """RFC 9530 §2: the `sha-256` member must equal SHA-256(body); `sha-512`, if sent, must too."""
    try:
        parsed = parse_dictionary(value)
    except SignatureError as exc:
        raise SignatureError("digest_mismatch", "Content-Digest is not a structured dictionary") from exc
    algs = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
    if "sha-256" not in parsed:
        raise SignatureError("digest_missing", "Content-Digest needs a sha-256 member")
    for name, member in parsed.items():
        if name not in algs:
            continue  # RFC 9530 §2: unknown algorithms are ignored
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise SignatureError("digest_mismatch", f"{name} digest is not a byte sequence")
        if member.value != algs[name](body).digest():
            raise SignatureError("digest_mismatch", f"{name} digest does not match the body")


@dataclass(frozen=True)
class _Checked:
    keyid: str
    created: int
    expires: int
    nonce: str
    components: tuple[str, ...]
    signature_params: str
    base: bytes
    signature: bytes


def _precheck(
    request: Request, body: bytes, now: int, expected_tag: str, queued_max_age_s: int | None = None
) -> _Checked:
    """Every PROTOCOL §2 rule that needs no key: syntax, label, alg, tag, coverage, times, nonce."""
    if len(body) > MAX_BODY_BYTES:
        raise SignatureError("body_too_large", f"body over {MAX_BODY_BYTES} bytes", status=413)
    sig_input_text = field_value(request, "signature-input")
    sig_text = field_value(request, "signature")
    if sig_input_text is None or sig_text is None:
        raise SignatureError("signature_missing", "Signature-Input and Signature are required")
    inputs = parse_dictionary(sig_input_text)
    sigs = parse_dictionary(sig_text)
    if set(inputs) != {LABEL} or set(sigs) != {LABEL}:
        raise SignatureError("bad_label", f"exactly one signature labelled {LABEL} is accepted")
    inner, sig_item = inputs[LABEL], sigs[LABEL]
    if not isinstance(inner, InnerList):
        raise SignatureError("signature_malformed", "Signature-Input member must be an inner list")
    if not isinstance(sig_item, Item) or not isinstance(sig_item.value, bytes) or sig_item.params:
        raise SignatureError("signature_malformed", "Signature member must be a byte sequence")
    if len(sig_item.value) != 64:
        raise SignatureError("signature_malformed", "an Ed25519 signature is 64 bytes")

    components: list[str] = []
    for item in inner.items:
        if not isinstance(item.value, str) or isinstance(item.value, Token) or isinstance(item.value, bool):
            raise SignatureError("signature_malformed", "component identifiers are strings (§2)")
        if item.params:
            raise SignatureError("unsupported_component", "component parameters are not accepted")
        name = item.value
        if not name or name != name.lower():
            raise SignatureError("signature_malformed", f"component {name!r} must be lowercase")
        if name.startswith("@") and name not in DERIVED:
            raise SignatureError("unsupported_component", f"derived component {name} is not supported")
        if name in ("signature", "signature-input"):
            raise SignatureError("unsupported_component", f"{name} cannot be covered")
        if name in components:
            raise SignatureError("signature_malformed", f"component {name} covered twice (§2.5)")
        components.append(name)

    params = inner.params
    unknown = sorted(set(params) - set(REQUIRED_PARAMS))
    if unknown:
        raise SignatureError("signature_malformed", f"unknown signature parameters: {', '.join(unknown)}")
    for name in REQUIRED_PARAMS:
        if name not in params:
            raise SignatureError("missing_parameter", f"signature parameter {name} is required")
        value = params[name]
        if name in _INT_PARAMS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SignatureError("signature_malformed", f"{name} must be an integer")
        elif isinstance(value, Token) or not isinstance(value, str):
            raise SignatureError("signature_malformed", f"{name} must be a string")
    if params["alg"] != ALG:
        raise SignatureError("bad_alg", f'alg must be "{ALG}"')
    if params["tag"] != expected_tag:
        raise SignatureError("bad_tag", f'tag must be "{expected_tag}"')

    required = ["@method", "@authority", "@path"]
    if request.query:
        required.append("@query")
    if body:
        required += ["content-digest", "content-type"]
    missing = [c for c in required if c not in components]
    if missing:
        raise SignatureError("component_not_covered", f"signature must cover {', '.join(missing)}")

    created, expires = int(params["created"]), int(params["expires"])
    if created > now + MAX_FUTURE_S:
        raise SignatureError("created_in_future", f"created is more than {MAX_FUTURE_S} s ahead")
    if queued_max_age_s is not None:
        # PROTOCOL §7.2: a request a relay queued may arrive after its expires; it stays good while
        # created is at most the queue's age old (replays are refused by the request id, not the clock).
        if created < now - queued_max_age_s:
            raise SignatureError("signature_expired", f"created is more than {queued_max_age_s} s ago")
    elif expires < now:
        raise SignatureError("signature_expired", "expires is in the past")
    if expires < created:
        raise SignatureError("signature_malformed", "expires is before created")
    if expires - created > MAX_VALIDITY_S:
        raise SignatureError("validity_too_long", f"expires - created exceeds {MAX_VALIDITY_S} s")
    nonce = str(params["nonce"])
    if _b64url_nonce_bytes(nonce) < MIN_NONCE_BYTES:
        raise SignatureError("bad_nonce", f"nonce must be >= {MIN_NONCE_BYTES} bytes of base64url")
    keyid = str(params["keyid"])
    if not keyid:
        raise SignatureError("signature_malformed", "keyid is empty")

    sig_params = serialize_inner_list(inner)
    base = signature_base(request, components, sig_params)
    return _Checked(keyid, created, expires, nonce, tuple(components), sig_params, base, sig_item.value)


def _finish(checked: _Checked, key: Ed25519PublicKey | None, request: Request, body: bytes) -> Verified:
    if key is None:
        raise SignatureError("unknown_key", "no trusted agency has this keyid")
    try:
        key.verify(checked.signature, checked.base)
    except InvalidSignature as exc:
        raise SignatureError("bad_signature", "signature does not verify") from exc
    if "content-digest" in checked.components:
        value = field_value(request, "content-digest")
        if value is None:  # pragma: no cover - signature_base already required it
            raise SignatureError("digest_missing", "Content-Digest is missing")
        check_content_digest(value, body)
    return Verified(
        checked.keyid,
        checked.created,
        checked.expires,
        checked.nonce,
        checked.components,
        checked.signature_params,
    )


def verify_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str | None,
    headers: Headers,
    body: bytes,
    now: int,
    resolve_key: KeyResolver,
    nonce_check: NonceCheck,
    scheme: str = "https",
    tag: str = TAG,
) -> Verified:
    """Verify a signed agency request (PROTOCOL §2); raises `SignatureError` with the rule's code.

    `authority` is the request's Host as received (aiohttp `request.host`), `path` and `query` the
    raw, still percent-encoded target (`request.raw_path` split at the first "?", query None when
    absent), `headers` every field line (`request.headers`, a multidict). `nonce_check(keyid,
    nonce, expires)` must return False if that nonce was seen for that keyid in the last 600 s and
    otherwise remember it; it is called only once everything else verified.
    """
    request = Request.build(method, authority, path, query, headers, scheme)
    checked = _precheck(request, body, now, tag)
    verified = _finish(checked, resolve_key(checked.keyid), request, body)
    if not nonce_check(verified.keyid, verified.nonce, verified.expires):
        raise SignatureError("nonce_replayed", f"nonce already used within {NONCE_WINDOW_S} s")
    return verified


async def verify_request_async(
    *,
    method: str,
    authority: str,
    path: str,
    query: str | None,
    headers: Headers,
    body: bytes,
    now: int,
    resolve_key: AsyncKeyResolver | KeyResolver,
    nonce_check: AsyncNonceCheck | NonceCheck,
    scheme: str = "https",
    tag: str = TAG,
    queued_max_age_s: int | None = None,
) -> Verified:
    """`verify_request` for callers whose key lookup and nonce store are coroutines (the DB thread).
    `queued_max_age_s`: the request was held in a relay's queue (PROTOCOL §7.2), so `expires` may
    have passed as long as `created` is at most that old."""
    request = Request.build(method, authority, path, query, headers, scheme)
    checked = _precheck(request, body, now, tag, queued_max_age_s)
    key: Any = resolve_key(checked.keyid)
    if inspect.isawaitable(key):
        key = await key
    verified = _finish(checked, key, request, body)
    fresh: Any = nonce_check(verified.keyid, verified.nonce, verified.expires)
    if inspect.isawaitable(fresh):
        fresh = await fresh
    if not fresh:
        raise SignatureError("nonce_replayed", f"nonce already used within {NONCE_WINDOW_S} s")
    return verified


def new_nonce() -> str:
    """32 random bytes, base64url (PROTOCOL §2 asks for at least 16)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def sign_request(
    *,
    method: str,
    authority: str,
    path: str,
    query: str | None,
    headers: Headers,
    body: bytes,
    private_key: Ed25519PrivateKey,
    keyid: str,
    created: int,
    expires: int | None = None,
    nonce: str | None = None,
    components: Iterable[str] | None = None,
    scheme: str = "https",
    tag: str = TAG,
) -> list[tuple[str, str]]:
    """Sign a request as the reference agency client does; returns the header lines to add.

    Adds `Content-Digest` (RFC 9530) when there is a body and the caller did not set one. The
    default component list is the PROTOCOL §2 minimum. `headers` must already hold Content-Type.
    """
    extra: list[tuple[str, str]] = []
    request = Request.build(method, authority, path, query, headers, scheme)
    if body and field_value(request, "content-digest") is None:
        extra.append(("Content-Digest", content_digest(body)))
        request = Request(
            request.method, request.authority, request.path, request.query, request.headers + extra, scheme
        )
    if components is None:
        comps = ["@method", "@authority", "@path"]
        if query:
            comps.append("@query")
        if body:
            comps += ["content-digest", "content-type"]
    else:
        comps = list(components)
    params: list[tuple[str, BareItem]] = [
        ("created", created),
        ("expires", created + MAX_VALIDITY_S if expires is None else expires),
        ("nonce", nonce or new_nonce()),
        ("keyid", keyid),
        ("alg", ALG),
        ("tag", tag),
    ]
    sig_params = serialize_signature_params(comps, params)
    signature = private_key.sign(signature_base(request, comps, sig_params))
    extra.append(("Signature-Input", f"{LABEL}={sig_params}"))
    extra.append(("Signature", f"{LABEL}={serialize_bare_item(signature)}"))
    return extra
