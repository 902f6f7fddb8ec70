"""Compact JWS with Ed25519 only (RFC 7515, RFC 8037, RFC 9864): round trip and every rejection."""

from __future__ import annotations

import base64
import json

import pytest
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
