"""RFC 9421 verification as PROTOCOL §2 profiles it: the RFC's Ed25519 vector and every rejection rule."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub_protocol import httpsig
from camhub_protocol.errors import ConsentError, SignatureError
from camhub_protocol.keys import b64url_decode
from camhub_protocol.structured_fields import InnerList, Item, parse_dictionary, serialize_inner_list

# RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6 (signing a request using ed25519).
B14_SEED = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"
B14_X = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"
B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)
B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
# The B.2 test request: POST /foo?param=Value&Pet=dog, body {"hello": "world"}.
B2_REQUEST = httpsig.Request.build(
    "POST",
    "example.com",
    "/foo",
    "param=Value&Pet=dog",
    [
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        (
            "Content-Digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("Content-Length", "18"),
    ],
)


def test_rfc9421_b26_signature_base_and_signature_byte_for_byte() -> None:
    inner = parse_dictionary(B26_INPUT.split("=", 1)[0] + "=" + B26_INPUT.split("=", 1)[1])["sig-b26"]
    assert isinstance(inner, InnerList)
    params = serialize_inner_list(inner)
    assert "sig-b26=" + params == B26_INPUT  # re-serialisation is byte-identical
    components = [str(i.value) for i in inner.items]
    base = httpsig.signature_base(B2_REQUEST, components, params)
    assert base == B26_BASE.encode()
    key = Ed25519PrivateKey.from_private_bytes(b64url_decode(B14_SEED))
    sig = key.sign(base)
    expected = parse_dictionary(B26_SIGNATURE)["sig-b26"]
    assert isinstance(expected, Item)
    assert sig == expected.value  # Ed25519 is deterministic (RFC 8032): the RFC's exact bytes
    assert "sig-b26=:" + base64.b64encode(sig).decode() + ":" == B26_SIGNATURE
    Ed25519PublicKey.from_public_bytes(b64url_decode(B14_X)).verify(expected.value, base)


def test_rfc9530_digests_of_the_rfc9421_test_body() -> None:
    # RFC 9421 B.2 sends the sha-512 digest of {"hello": "world"}; the sha-256 one is RFC 9530's B.1 value.
    body = b'{"hello": "world"}'
    sha512 = "WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew=="
    httpsig.check_content_digest(
        f"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:{sha512}:", body
    )
    with pytest.raises(SignatureError) as exc:
        httpsig.check_content_digest(
            f"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:{sha512}:", b""
        )
    assert exc.value.code == "digest_mismatch"


NOW = 1_800_000_000
AGENCY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KEYID = "agency-key-1"


class Nonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, keyid: str, nonce: str, expires: int) -> bool:
        if (keyid, nonce) in self.seen:
            return False
        self.seen.add((keyid, nonce))
        return True


def resolver(keyid: str) -> Ed25519PublicKey | None:
    return AGENCY.public_key() if keyid == KEYID else None


BODY = b'{"hub": "h", "kind": "clip"}'


def signed(
    *,
    method: str = "POST",
    path: str = "/api/agency/v1/requests",
    query: str | None = None,
    body: bytes = BODY,
    key: Ed25519PrivateKey = AGENCY,
    keyid: str = KEYID,
    created: int = NOW,
    **kw: object,
) -> list[tuple[str, str]]:
    headers = (
        [("Host", "hub.local:8443"), ("Content-Type", "application/json")]
        if body
        else [("Host", "hub.local:8443")]
    )
    extra = httpsig.sign_request(
        method=method,
        authority="hub.local:8443",
        path=path,
        query=query,
        headers=headers,
        body=body,
        private_key=key,
        keyid=keyid,
        created=created,
        **kw,  # type: ignore[arg-type]
    )
    return headers + extra


def verify(
    headers: list[tuple[str, str]],
    *,
    method: str = "POST",
    path: str = "/api/agency/v1/requests",
    query: str | None = None,
    body: bytes = BODY,
    now: int = NOW,
    nonces: Nonces | None = None,
) -> httpsig.Verified:
    return httpsig.verify_request(
        method=method,
        authority="hub.local:8443",
        path=path,
        query=query,
        headers=headers,
        body=body,
        now=now,
        resolve_key=resolver,
        nonce_check=nonces or Nonces(),
    )


def code_of(headers: list[tuple[str, str]], **kw: object) -> str:
    with pytest.raises(SignatureError) as exc:
        verify(headers, **kw)  # type: ignore[arg-type]
    assert exc.value.status in (401, 413)
    return exc.value.code


def replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name.lower() else v) for k, v in headers]


def test_good_request_verifies() -> None:
    v = verify(signed())
    assert v.keyid == KEYID
    assert set(v.components) >= {"@method", "@authority", "@path", "content-digest", "content-type"}


def test_get_with_query_needs_query_covered() -> None:
    ok = signed(method="GET", path="/api/agency/v1/requests/r1", query="x=1", body=b"")
    verify(ok, method="GET", path="/api/agency/v1/requests/r1", query="x=1", body=b"")
    bad = signed(
        method="GET",
        path="/api/agency/v1/requests/r1",
        query="x=1",
        body=b"",
        components=["@method", "@authority", "@path"],
    )
    assert code_of(bad, method="GET", path="/api/agency/v1/requests/r1", query="x=1", body=b"") == (
        "component_not_covered"
    )


def test_async_variant_awaits_callbacks() -> None:
    import asyncio

    async def resolve(keyid: str) -> Ed25519PublicKey | None:
        return resolver(keyid)

    async def fresh(keyid: str, nonce: str, expires: int) -> bool:
        return True

    async def run() -> httpsig.Verified:
        return await httpsig.verify_request_async(
            method="POST",
            authority="hub.local:8443",
            path="/api/agency/v1/requests",
            query=None,
            headers=signed(),
            body=BODY,
            now=NOW,
            resolve_key=resolve,
            nonce_check=fresh,
        )

    assert asyncio.run(run()).keyid == KEYID


def test_multidict_headers_accepted() -> None:
    from multidict import CIMultiDict

    assert verify(CIMultiDict(signed())).keyid == KEYID  # type: ignore[arg-type]


def test_missing_signature_headers() -> None:
    headers = [h for h in signed() if h[0] != "Signature"]
    assert code_of(headers) == "signature_missing"


def test_label_not_sig1() -> None:
    headers = [(k, v.replace("sig1=", "sig2=", 1) if k.startswith("Signature") else v) for k, v in signed()]
    assert code_of(headers) == "bad_label"


def test_second_signature_label_refused() -> None:
    headers = signed()
    sig = next(v for k, v in headers if k == "Signature")
    headers.append(("Signature", sig.replace("sig1=", "sig2=")))
    assert code_of(headers) == "bad_label"


def test_wrong_alg() -> None:
    headers = signed()
    si = next(v for k, v in headers if k == "Signature-Input")
    assert code_of(
        replace(headers, "Signature-Input", si.replace('alg="ed25519"', 'alg="rsa-pss-sha512"'))
    ) == ("bad_alg")


def test_wrong_tag() -> None:
    assert code_of(signed(tag="someone-else")) == "bad_tag"


@pytest.mark.parametrize("dropped", ["@method", "@authority", "@path", "content-digest", "content-type"])
def test_required_component_not_covered(dropped: str) -> None:
    comps = [c for c in ["@method", "@authority", "@path", "content-digest", "content-type"] if c != dropped]
    assert code_of(signed(components=comps)) == "component_not_covered"


def test_created_in_future() -> None:
    assert code_of(signed(created=NOW + 61, expires=NOW + 120)) == "created_in_future"
    verify(signed(created=NOW + 60, expires=NOW + 120))


def test_expired() -> None:
    assert code_of(signed(created=NOW - 100, expires=NOW - 1)) == "signature_expired"


def test_validity_window_too_long() -> None:
    assert code_of(signed(created=NOW, expires=NOW + 301)) == "validity_too_long"
    verify(signed(created=NOW, expires=NOW + 300))


def test_nonce_replay() -> None:
    nonces = Nonces()
    headers = signed()
    verify(headers, nonces=nonces)
    assert code_of(headers, nonces=nonces) == "nonce_replayed"


def test_short_nonce() -> None:
    assert code_of(signed(nonce="c2hvcnQ")) == "bad_nonce"


def test_unknown_key() -> None:
    assert code_of(signed(keyid="nobody")) == "unknown_key"


def test_bad_signature() -> None:
    assert code_of(signed(key=OTHER)) == "bad_signature"


def test_tampered_covered_field_breaks_signature() -> None:
    headers = replace(signed(), "Content-Type", "text/plain")
    assert code_of(headers) == "bad_signature"


def test_digest_mismatch() -> None:
    assert code_of(signed(), body=BODY.replace(b"clip", b"live")) == "digest_mismatch"


def test_digest_missing() -> None:
    headers = [h for h in signed() if h[0] != "Content-Digest"]
    assert code_of(headers) == "digest_missing"


def test_missing_parameter() -> None:
    headers = signed()
    si = next(v for k, v in headers if k == "Signature-Input")
    stripped = ";".join(p for p in si.split(";") if not p.startswith("nonce="))
    assert code_of(replace(headers, "Signature-Input", stripped)) == "missing_parameter"


def test_body_too_large() -> None:
    assert code_of(signed(), body=b"x" * (64 * 1024 + 1)) == "body_too_large"


def test_covered_header_absent() -> None:
    comps = ["@method", "@authority", "@path", "content-digest", "content-type", "x-case"]
    base = [("Content-Type", "application/json"), ("X-Case", "1")]
    extra = httpsig.sign_request(
        method="POST",
        authority="hub.local:8443",
        path="/api/agency/v1/requests",
        query=None,
        headers=base,
        body=BODY,
        private_key=AGENCY,
        keyid=KEYID,
        created=NOW,
        components=comps,
    )
    assert code_of([base[0], *extra]) == "component_absent"


def test_component_parameters_refused() -> None:
    headers = signed()
    si = next(v for k, v in headers if k == "Signature-Input")
    assert code_of(replace(headers, "Signature-Input", si.replace('"@path"', '"@path";req', 1))) == (
        "unsupported_component"
    )


def test_duplicate_dictionary_keys_refused() -> None:
    headers = signed()
    sig = next(v for k, v in headers if k == "Signature")
    assert code_of(replace(headers, "Signature", sig + ", " + sig)) == "signature_malformed"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sig1=(",
        'sig1=("@method" ',
        "sig1=:abc:",
        "sig1=:AAAA:,",
        "Sig1=:AAAA:",
        "sig1=1.5",
        'sig1=("a""b")',
        "sig1=?2",
        'sig1="\\x"',
        "sig1=\u00e9",
    ],
)
def test_malformed_structured_fields(value: str) -> None:
    with pytest.raises(SignatureError) as exc:
        parse_dictionary(value)
    assert exc.value.code == "signature_malformed"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_dictionary_parser_raises_only_signature_error(text: str) -> None:
    try:
        parse_dictionary(text)
    except SignatureError:
        pass


ALPHABET = st.sampled_from(list('sig1=(":;, )@-_?*0123456789abcdefAB+/\\\t'))


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=120), st.text(ALPHABET, max_size=120))
def test_fuzz_verify_raises_only_consent_error(sig_input: str, sig: str) -> None:
    headers = [("Content-Type", "application/json"), ("Signature-Input", sig_input), ("Signature", sig)]
    try:
        verify(headers)
    except ConsentError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.binary(max_size=64))
def test_fuzz_mutated_signature_input_never_verifies(pos: int, junk: bytes) -> None:
    headers = signed()
    si = next(v for k, v in headers if k == "Signature-Input")
    pos %= len(si)
    mutated = si[:pos] + junk.decode("latin-1") + si[pos + 1 :]
    if mutated == si:
        return
    with pytest.raises(ConsentError):
        verify(replace(headers, "Signature-Input", mutated))


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.integers(-(10**15) + 1, 10**15 - 1),
    st.binary(max_size=40),
    st.booleans(),
)
def test_structured_field_round_trip(text: str, number: int, data: bytes, flag: bool) -> None:
    inner = InnerList([Item(text), Item(number)], {"s": text, "n": number, "b": data, "f": flag})
    header = "sig1=" + serialize_inner_list(inner) + ", other=" + serialize_inner_list(InnerList([]))
    parsed = parse_dictionary(header)
    assert parsed["sig1"] == inner
    assert serialize_inner_list(parsed["sig1"]) == serialize_inner_list(inner)  # type: ignore[arg-type]


def test_scheme_and_target_uri_components_default_to_https() -> None:
    # Signed covering @scheme and @target-uri with the default scheme (https) on both sides, then
    # judged as http: the scheme is part of what is signed.
    components = [
        "@method",
        "@authority",
        "@path",
        "@scheme",
        "@target-uri",
        "content-digest",
        "content-type",
    ]
    headers = signed(components=components)
    assert verify(headers).keyid == KEYID
    with pytest.raises(SignatureError) as exc:
        httpsig.verify_request(
            method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
            headers=headers, body=BODY, now=NOW, resolve_key=resolver, nonce_check=Nonces(), scheme="http",
        )  # fmt: skip
    assert exc.value.code == "bad_signature"
    http_signed = signed(components=components, scheme="http")
    assert code_of(http_signed) == "bad_signature"


def test_the_nonce_check_gets_the_signed_values() -> None:
    calls: list[tuple[str, str, int]] = []

    def record(keyid: str, nonce: str, expires: int) -> bool:
        calls.append((keyid, nonce, expires))
        return True

    headers = signed(nonce="n" * 24, expires=NOW + 200)
    httpsig.verify_request(
        method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
        headers=headers, body=BODY, now=NOW, resolve_key=resolver, nonce_check=record,
    )  # fmt: skip
    assert calls == [(KEYID, "n" * 24, NOW + 200)]


def test_a_replayed_nonce_says_why() -> None:
    nonces = Nonces()
    headers = signed()
    verify(headers, nonces=nonces)
    with pytest.raises(SignatureError) as exc:
        verify(headers, nonces=nonces)
    assert exc.value.code == "nonce_replayed" and exc.value.status == 401 and exc.value.detail
