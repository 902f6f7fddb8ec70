"""Compact JWS with Ed25519 only (RFC 7515, RFC 8037, RFC 9864): round trip and every rejection."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub_protocol import jws
from camhub_protocol.errors import ConsentError, JWSError

KEY = Ed25519PrivateKey.generate()
TYP = "camhub-decision+jws"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, object] | bytes, payload: bytes = b"{}", key: Ed25519PrivateKey = KEY) -> str:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    signing_input = f"{b64(raw)}.{b64(payload)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def code_of(compact: str | bytes, **kw: object) -> str:
    with pytest.raises(JWSError) as exc:
        jws.verify(jws.parse(compact, **kw), KEY.public_key())  # type: ignore[arg-type]
    return exc.value.code


def test_round_trip() -> None:
    token = jws.sign(b'{"v":1}', KEY, "owner-1", TYP)
    parsed = jws.parse(token, typ=TYP)
    assert parsed.header == {"alg": "Ed25519", "kid": "owner-1", "typ": TYP}
    assert jws.verify(parsed, KEY.public_key()) == b'{"v":1}'


def test_eddsa_name_accepted() -> None:
    token = forge({"alg": "EdDSA", "kid": "k", "typ": TYP})
    jws.verify(jws.parse(token, typ=TYP), KEY.public_key())


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", "RS256", "ed25519", "EdDSA ", None, 1])
def test_other_algs_refused(alg: object) -> None:
    assert code_of(forge({"alg": alg, "kid": "k"})) == "jws_bad_alg"


@pytest.mark.parametrize(
    "member, value",
    [
        ("crit", ["exp"]),
        ("jwk", {"kty": "OKP"}),
        ("jku", "https://x"),
        ("x5u", "https://x"),
        ("x5c", []),
        ("b64", False),
    ],
)
def test_key_carrying_and_critical_members_refused(member: str, value: object) -> None:
    assert code_of(forge({"alg": "Ed25519", "kid": "k", member: value})) == "jws_unsupported_header"


def test_duplicate_header_member_refused() -> None:
    raw = b'{"alg":"Ed25519","kid":"a","kid":"b"}'
    assert code_of(forge(raw)) == "jws_duplicate_member"


def test_duplicate_payload_member_refused() -> None:
    with pytest.raises(JWSError) as exc:
        jws.decode_json(b'{"decision":"decline","decision":"approve"}')
    assert exc.value.code == "jws_duplicate_member"


def test_wrong_typ() -> None:
    assert code_of(forge({"alg": "Ed25519", "kid": "k", "typ": "JWT"}), typ=TYP) == "jws_bad_typ"


def test_bad_signature() -> None:
    other = Ed25519PrivateKey.generate()
    assert code_of(forge({"alg": "Ed25519", "kid": "k"}, key=other)) == "jws_bad_signature"


def test_payload_swap_breaks_signature() -> None:
    h, _, s = jws.sign(b'{"a":1}', KEY, "k", TYP).split(".")
    swapped = b64(b'{"a":2}')
    assert code_of(f"{h}.{swapped}.{s}") == "jws_bad_signature"


@pytest.mark.parametrize(
    "compact",
    [
        "",
        "a.b",
        "a.b.c.d",
        "e30.e30",
        "!!.e30.AAAA",
        "eyJ9.e30.AAAA",
        "e30=.e30.AAAA",
        "eyJhbGciOiJFZDI1NTE5Iiwia2lkIjoiayJ9.e30.A",
        "é.e30.AAAA",
    ],
)
def test_malformed(compact: str) -> None:
    assert code_of(compact) == "jws_malformed"


def test_non_canonical_base64_refused() -> None:
    token = jws.sign(b"{}", KEY, "k", TYP)
    h, p, s = token.split(".")
    # The last char of a 64-byte signature (86 chars) carries 4 spare bits; flip one of them.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(s[-1])
    tweaked = s[:-1] + alphabet[last ^ 1]
    assert code_of(f"{h}.{p}.{tweaked}") == "jws_malformed"


def test_short_signature_refused() -> None:
    h, p, _ = jws.sign(b"{}", KEY, "k", TYP).split(".")
    assert code_of(f"{h}.{p}.{b64(b'x' * 63)}") == "jws_malformed"


def test_oversize_refused() -> None:
    with pytest.raises(JWSError) as exc:
        jws.parse("a" * (64 * 1024 + 1))
    assert exc.value.code == "jws_too_large"
    assert exc.value.status == 413


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_refused(constant: str) -> None:
    with pytest.raises(JWSError) as info:
        jws.decode_json(b'{"x": %s}' % constant.encode())
    assert (info.value.code, info.value.status) == ("jws_malformed", 400)
    assert constant in info.value.detail


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_fuzz_parse_raises_only_consent_error(data: str | bytes) -> None:
    try:
        jws.verify(jws.parse(data), KEY.public_key())
    except ConsentError:
        pass


SEGMENT = st.builds(b64, st.binary(max_size=80)) | st.text("ABCabc-_=.+/ ", max_size=40)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "cty", "zip"]),
        st.one_of(st.none(), st.text(max_size=8), st.integers(), st.lists(st.integers(), max_size=2)),
    ),
    SEGMENT,
    SEGMENT,
)
def test_fuzz_structured_tokens(header: dict[str, object], payload: str, sig: str) -> None:
    token = f"{b64(json.dumps(header).encode())}.{payload}.{sig}"
    try:
        jws.verify(jws.parse(token), KEY.public_key())
    except ConsentError:
        return
    raise AssertionError("a random signature verified")


def test_parse_unpacks_as_the_four_parts() -> None:
    token = jws.sign(b"{}", KEY, "k", TYP)
    header, payload, signing_input, signature = jws.parse(token)
    assert header["kid"] == "k" and payload == b"{}"
    assert signing_input == token.rsplit(".", 1)[0].encode() and len(signature) == 64


# --- Every refusal, pinned: code, HTTP status and the detail a client reads in the JSON body ----------
# The API answers a JWSError as `status {"error": code, "detail": detail}` (errors.ConsentError.to_json),
# so all three are observable; the detail names the part that failed (header, payload, signature).

HDR = {"alg": "Ed25519", "kid": "k"}


def with_part(index: int, replacement: str) -> str:
    parts = jws.sign(b"{}", KEY, "k", TYP).split(".")
    parts[index] = replacement
    return ".".join(parts)


REFUSALS: list[tuple[str, object, dict[str, object], str, int, str]] = [
    ("not ascii", b"\xff.e30.AAAA", {}, "jws_malformed", 400, "JWS is not ASCII"),
    ("not a string", 123, {}, "jws_malformed", 400, "JWS must be a string"),
    # Exactly at the cap is not "too large": it fails later, as any one-segment string does.
    ("at the size cap", "a" * (64 * 1024), {}, "jws_malformed", 400, "expected 3 segments, got 1"),
    ("over the size cap", "a" * (64 * 1024 + 1), {}, "jws_too_large", 413, "JWS longer than 65536 bytes"),
    ("two segments", "a.b", {}, "jws_malformed", 400, "expected 3 segments, got 2"),
    ("header not base64url", "!!.e30.AAAA", {}, "jws_malformed", 400, "header is not unpadded base64url"),
    ("header padded", "e30=.e30.AAAA", {}, "jws_malformed", 400, "header is not unpadded base64url"),
    (
        "header spare bits set",
        "e31.e30.AAAA",
        {},
        "jws_malformed",
        400,
        "header has non-canonical base64url padding bits",
    ),
    ("header not UTF-8", forge(b"\xff"), {}, "jws_malformed", 400, "header is not UTF-8"),
    ("header not JSON", forge(b"{"), {}, "jws_malformed", 400, "header is not JSON"),
    ("header NaN", forge(b'{"alg":NaN}'), {}, "jws_malformed", 400, "JSON constant NaN is not allowed"),
    ("header an array", forge(b"[]"), {}, "jws_malformed", 400, "header is not a JSON object"),
    (
        "duplicate member",
        forge(b'{"alg":"Ed25519","kid":"a","kid":"b"}'),
        {},
        "jws_duplicate_member",
        400,
        "duplicate JSON member 'kid'",
    ),
    (
        "extension members",
        forge({**HDR, "crit": ["b64"], "b64": False}),
        {},
        "jws_unsupported_header",
        400,
        "header members not accepted: b64, crit",
    ),
    (
        "alg none",
        forge({"alg": "none", "kid": "k"}),
        {},
        "jws_bad_alg",
        400,
        "alg must be Ed25519 or EdDSA, got 'none'",
    ),
    (
        "kid missing",
        forge({"alg": "Ed25519"}),
        {},
        "jws_malformed",
        400,
        "header needs a non-empty string kid",
    ),
    (
        "kid a number",
        forge({**HDR, "kid": 1}),
        {},
        "jws_malformed",
        400,
        "header needs a non-empty string kid",
    ),
    (
        "kid empty",
        forge({**HDR, "kid": ""}),
        {},
        "jws_malformed",
        400,
        "header needs a non-empty string kid",
    ),
    ("typ a number", forge({**HDR, "typ": 1}), {}, "jws_malformed", 400, "typ must be a string"),
    ("cty a number", forge({**HDR, "cty": 1}), {}, "jws_malformed", 400, "cty must be a string"),
    ("typ missing", forge(HDR), {"typ": TYP}, "jws_bad_typ", 400, f"typ must be {TYP!r}"),
    ("typ other", forge({**HDR, "typ": "JWT"}), {"typ": TYP}, "jws_bad_typ", 400, f"typ must be {TYP!r}"),
    (
        "payload not base64url",
        with_part(1, "!!"),
        {},
        "jws_malformed",
        400,
        "payload is not unpadded base64url",
    ),
    (
        "signature not base64url",
        with_part(2, "!!"),
        {},
        "jws_malformed",
        400,
        "signature is not unpadded base64url",
    ),
    (
        "signature spare bits set",
        with_part(2, "A" * 85 + "B"),
        {},
        "jws_malformed",
        400,
        "signature has non-canonical base64url padding bits",
    ),
    (
        "signature 63 bytes",
        with_part(2, b64(b"x" * 63)),
        {},
        "jws_malformed",
        400,
        "an Ed25519 signature is 64 bytes (RFC 8032 §5.1.6)",
    ),
    (
        "signature forged",
        with_part(2, b64(b"x" * 64)),
        {},
        "jws_bad_signature",
        403,
        "signature does not verify",
    ),
]


@pytest.mark.parametrize(
    "compact, kwargs, code, status, detail", [row[1:] for row in REFUSALS], ids=[row[0] for row in REFUSALS]
)
def test_every_refusal_pins_code_status_and_detail(
    compact: object, kwargs: dict[str, object], code: str, status: int, detail: str
) -> None:
    with pytest.raises(JWSError) as exc:
        jws.verify(jws.parse(compact, **kwargs), KEY.public_key())  # type: ignore[arg-type]
    err = exc.value
    assert (err.code, err.status, err.detail) == (code, status, detail)
    assert err.to_json() == {"error": code, "detail": detail}


def test_key_of_another_type_refused_as_bad_key() -> None:
    """A kid whose enrolled key is not Ed25519 (e.g. a passkey's P-256 key) never verifies a JWS."""
    parsed = jws.parse(jws.sign(b"{}", KEY, "k", TYP), typ=TYP)
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(JWSError) as exc:
        jws.verify(parsed, p256)  # type: ignore[arg-type]
    err = exc.value
    assert (err.code, err.status, err.detail) == ("jws_bad_key", 403, "only Ed25519 keys verify camhub JWS")


@pytest.mark.parametrize(
    "data, detail",
    [(b"\xff", "payload is not UTF-8"), (b"{", "payload is not JSON"), (b"", "payload is not JSON")],
)
def test_decode_json_names_the_payload_by_default(data: bytes, detail: str) -> None:
    # The hub decodes decision payloads without naming them (hub/consent/decisions.py): the detail says
    # "payload".
    with pytest.raises(JWSError) as exc:
        jws.decode_json(data)
    assert (exc.value.code, exc.value.status, exc.value.detail) == ("jws_malformed", 400, detail)


@pytest.mark.parametrize(
    "text, detail",
    [
        ("!", "segment is not unpadded base64url"),
        ("e30!", "segment is not unpadded base64url"),
        ("A", "segment is not unpadded base64url"),
        ("AB", "segment has non-canonical base64url padding bits"),
        (b"e30", "segment is not unpadded base64url"),
    ],
)
def test_b64url_decode_strict_refusals(text: object, detail: str) -> None:
    with pytest.raises(JWSError) as exc:
        jws.b64url_decode_strict(text)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.status, exc.value.detail) == ("jws_malformed", 400, detail)


def test_sign_writes_the_compact_header_of_protocol() -> None:
    """PROTOCOL §2.3/§2.4/§7.6 give the hub's header byte for byte: no whitespace, this member order."""
    header_b64 = jws.sign(b"{}", KEY, "hub-1", "camhub-whep-answer+jws").split(".")[0]
    assert (
        jws.b64url_decode_strict(header_b64)
        == b'{"alg":"Ed25519","kid":"hub-1","typ":"camhub-whep-answer+jws"}'
    )


@pytest.mark.parametrize("payload", [b"WWW", b"{}\xd7", b"\x00\x00\x17"])
def test_segments_ending_in_any_letter_round_trip(payload: bytes) -> None:
    """Only "=" is stripped from base64url: a segment may end in any alphabet letter (here "X", which
    only a payload of 3n bytes can end in)."""
    token = jws.sign(payload, KEY, "k", TYP)
    assert token.split(".")[1] == b64(payload) and b64(payload)[-1] == "X"
    assert jws.verify(jws.parse(token, typ=TYP), KEY.public_key()) == payload
