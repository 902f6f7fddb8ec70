"""RFC 9421 verification as PROTOCOL §2 profiles it: the RFC's Ed25519 vector and every rejection rule."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

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


def request_kwargs(headers: list[tuple[str, str]], kw: dict[str, Any]) -> dict[str, Any]:
    """A request to the hub's agency route at the test's clock, as both verifiers take it; `kw`
    overrides the target or the clock, or passes through (`scheme`, `queued_max_age_s`)."""
    return {
        "method": "POST", "authority": "hub.local:8443", "path": "/api/agency/v1/requests", "query": None,
        "headers": headers, "body": BODY, "now": NOW,
    } | kw  # fmt: skip


def verify(headers: list[tuple[str, str]], *, nonces: Nonces | None = None, **kw: Any) -> httpsig.Verified:
    return httpsig.verify_request(
        **request_kwargs(headers, kw), resolve_key=resolver, nonce_check=nonces or Nonces()
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


# --- Every refusal path, pinned: code, status and a non-empty str detail (the JSON body's shape) ------

OK_SI_TAG = 'tag="camhub-agency-v1"'


def si_edit(headers: list[tuple[str, str]], old: str, new: str) -> list[tuple[str, str]]:
    si = next(v for k, v in headers if k == "Signature-Input")
    assert old in si
    return replace(headers, "Signature-Input", si.replace(old, new, 1))


def sig_set(headers: list[tuple[str, str]], member: str) -> list[tuple[str, str]]:
    return replace(headers, "Signature", "sig1=" + member)


def the_sig(headers: list[tuple[str, str]]) -> str:
    return next(v for k, v in headers if k == "Signature").removeprefix("sig1=")


def _bad_tag_too(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # A later rule broken as well: a component rule must refuse first, with its own code.
    return si_edit(headers, OK_SI_TAG, 'tag="someone-else"')


async def _async_resolve(keyid: str) -> Ed25519PublicKey | None:
    return resolver(keyid)


class AsyncNonces(Nonces):
    async def check(self, keyid: str, nonce: str, expires: int) -> bool:
        return self(keyid, nonce, expires)


def verify_async(
    headers: list[tuple[str, str]], *, nonces: AsyncNonces | None = None, **kw: Any
) -> httpsig.Verified:
    import asyncio

    return asyncio.run(
        httpsig.verify_request_async(
            **request_kwargs(headers, kw),
            resolve_key=_async_resolve,
            nonce_check=(nonces or AsyncNonces()).check,
        )
    )


def _date_covered_then_dropped() -> list[tuple[str, str]]:
    base = [("Content-Type", "application/json"), ("Date", "Tue, 20 Apr 2021 02:07:55 GMT")]
    extra = httpsig.sign_request(
        method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
        headers=base, body=BODY, private_key=AGENCY, keyid=KEYID, created=NOW,
        components=["@method", "@authority", "@path", "content-digest", "content-type", "date"],
    )  # fmt: skip
    return [base[0], *extra]


def _nonce_dropped() -> list[tuple[str, str]]:
    headers = signed()
    si = next(v for k, v in headers if k == "Signature-Input")
    return replace(
        headers, "Signature-Input", ";".join(p for p in si.split(";") if not p.startswith("nonce="))
    )


REFUSALS: dict[str, tuple[Callable[[], tuple[list[tuple[str, str]], dict[str, Any]]], str, int]] = {
    "body_over_64k": (lambda: (signed(), {"body": b"x" * (64 * 1024 + 1)}), "body_too_large", 413),
    "no_signature": (lambda: ([h for h in signed() if h[0] != "Signature"], {}), "signature_missing", 401),
    "no_signature_input": (
        lambda: ([h for h in signed() if h[0] != "Signature-Input"], {}),
        "signature_missing",
        401,
    ),
    "label_sig2": (
        lambda: (
            [(k, v.replace("sig1=", "sig2=", 1) if k.startswith("Signature") else v) for k, v in signed()],
            {},
        ),
        "bad_label",
        401,
    ),
    "input_member_not_inner_list": (
        lambda: (replace(signed(), "Signature-Input", 'sig1="x"'), {}),
        "signature_malformed",
        401,
    ),
    "signature_member_a_string": (
        lambda: (sig_set(signed(), '"' + "a" * 64 + '"'), {}),
        "signature_malformed",
        401,
    ),
    "signature_member_an_inner_list": (lambda: (sig_set(signed(), '("a")'), {}), "signature_malformed", 401),
    "signature_member_with_params": (
        lambda: (sig_set(signed(), the_sig(signed()) + ";x=1"), {}),
        "signature_malformed",
        401,
    ),
    "signature_3_bytes": (lambda: (sig_set(signed(), ":AAAA:"), {}), "signature_malformed", 401),
    "component_a_token": (
        lambda: (si_edit(signed(), '"content-type"', "content-type"), {}),
        "signature_malformed",
        401,
    ),
    "component_an_integer": (lambda: (si_edit(signed(), '"@path"', "1"), {}), "signature_malformed", 401),
    "component_a_boolean": (lambda: (si_edit(signed(), '"@path"', "?1"), {}), "signature_malformed", 401),
    "component_with_params": (
        lambda: (si_edit(signed(), '"@path"', '"@path";req'), {}),
        "unsupported_component",
        401,
    ),
    "component_uppercase_field": (
        lambda: (si_edit(signed(), '"content-type"', '"Content-Type"'), {}),
        "signature_malformed",
        401,
    ),
    "component_uppercase_derived": (
        lambda: (si_edit(signed(), '"@method"', '"@Method"'), {}),
        "signature_malformed",
        401,
    ),
    "component_empty": (lambda: (si_edit(signed(), '"@path"', '"@path" ""'), {}), "signature_malformed", 401),
    "derived_unknown": (
        lambda: (_bad_tag_too(si_edit(signed(), '"@path"', '"@path" "@foo"')), {}),
        "unsupported_component",
        401,
    ),
    "covers_signature": (
        lambda: (_bad_tag_too(si_edit(signed(), '"@path"', '"@path" "signature"')), {}),
        "unsupported_component",
        401,
    ),
    "covers_signature_input": (
        lambda: (_bad_tag_too(si_edit(signed(), '"@path"', '"@path" "signature-input"')), {}),
        "unsupported_component",
        401,
    ),
    "component_twice": (
        lambda: (_bad_tag_too(si_edit(signed(), '"@path"', '"@path" "@path"')), {}),
        "signature_malformed",
        401,
    ),
    "unknown_parameter": (
        lambda: (si_edit(signed(), OK_SI_TAG, OK_SI_TAG + ";foo=1"), {}),
        "signature_malformed",
        401,
    ),
    "nonce_missing": (lambda: (_nonce_dropped(), {}), "missing_parameter", 401),
    "created_a_string": (
        lambda: (si_edit(signed(), f"created={NOW}", f'created="{NOW}"'), {}),
        "signature_malformed",
        401,
    ),
    "created_a_boolean": (
        lambda: (si_edit(signed(), f"created={NOW}", "created=?1"), {}),
        "signature_malformed",
        401,
    ),
    "nonce_an_integer": (
        lambda: (si_edit(signed(nonce="A" * 24), 'nonce="' + "A" * 24 + '"', "nonce=5"), {}),
        "signature_malformed",
        401,
    ),
    "nonce_a_token": (
        lambda: (si_edit(signed(nonce="A" * 24), 'nonce="' + "A" * 24 + '"', "nonce=" + "a" * 24), {}),
        "signature_malformed",
        401,
    ),
    "wrong_alg": (lambda: (si_edit(signed(), 'alg="ed25519"', 'alg="rsa-pss-sha512"'), {}), "bad_alg", 401),
    "wrong_tag": (lambda: (signed(tag="someone-else"), {}), "bad_tag", 401),
    "content_type_not_covered": (
        lambda: (signed(components=["@method", "@authority", "@path", "content-digest"]), {}),
        "component_not_covered",
        401,
    ),
    "created_in_future": (
        lambda: (signed(created=NOW + 61, expires=NOW + 120), {}),
        "created_in_future",
        401,
    ),
    "expired": (lambda: (signed(created=NOW - 100, expires=NOW - 1), {}), "signature_expired", 401),
    "expires_before_created": (
        lambda: (signed(created=NOW + 30, expires=NOW + 10), {}),
        "signature_malformed",
        401,
    ),
    "validity_301s": (lambda: (signed(created=NOW, expires=NOW + 301), {}), "validity_too_long", 401),
    "nonce_short": (lambda: (signed(nonce="c2hvcnQ"), {}), "bad_nonce", 401),
    "nonce_15_bytes": (lambda: (signed(nonce="A" * 20), {}), "bad_nonce", 401),
    # 25 characters: len % 4 == 1 is no base64 at all (decoding it would raise, not refuse).
    "nonce_25_chars": (lambda: (signed(nonce="A" * 25), {}), "bad_nonce", 401),
    "nonce_standard_alphabet": (lambda: (signed(nonce="+" * 24), {}), "bad_nonce", 401),
    "nonce_with_junk": (lambda: (signed(nonce="A" * 24 + "!!!!"), {}), "bad_nonce", 401),
    "nonce_padded": (lambda: (signed(nonce="A" * 22 + "=="), {}), "bad_nonce", 401),
    "keyid_empty": (lambda: (signed(keyid=""), {}), "signature_malformed", 401),
    "unknown_key": (lambda: (signed(keyid="nobody"), {}), "unknown_key", 401),
    "bad_signature": (lambda: (signed(key=OTHER), {}), "bad_signature", 401),
    "covered_field_absent": (lambda: (_date_covered_then_dropped(), {}), "component_absent", 401),
    "digest_absent": (lambda: ([h for h in signed() if h[0] != "Content-Digest"], {}), "digest_missing", 401),
    "digest_mismatch": (lambda: (signed(), {"body": BODY.replace(b"clip", b"live")}), "digest_mismatch", 401),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_refusal_has_its_code_status_and_detail(case: str, mode: str) -> None:
    make, code, status = REFUSALS[case]
    headers, kw = make()
    with pytest.raises(SignatureError) as exc:
        (verify if mode == "sync" else verify_async)(headers, **kw)
    err = exc.value
    assert (err.code, err.status) == (code, status)
    assert isinstance(err.detail, str) and err.detail
    assert err.to_json() == {"error": code, "detail": err.detail}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_boundaries_that_are_accepted_and_what_verified_reports(mode: str) -> None:
    check = verify if mode == "sync" else verify_async
    # Exactly 64 KiB is not "over 64 KiB"; expires == now is not past; expires == created is a
    # zero-length window, not one before created; 16 bytes (22 chars) is the nonce minimum.
    big = b"x" * (64 * 1024)
    assert check(signed(body=big), body=big).keyid == KEYID
    v = check(signed(created=NOW - 100, expires=NOW, nonce="B" * 22))
    assert (v.keyid, v.created, v.expires, v.nonce) == (KEYID, NOW - 100, NOW, "B" * 22)
    headers = signed(created=NOW, expires=NOW)
    v = check(headers)
    si = next(val for k, val in headers if k == "Signature-Input")
    assert (v.created, v.expires) == (NOW, NOW)
    assert v.signature_params == si.removeprefix("sig1=")
    assert v.components == ("@method", "@authority", "@path", "content-digest", "content-type")


def test_a_queued_request_is_judged_by_created_not_expires() -> None:
    # PROTOCOL §7.2: past its expires, still good while created is at most queued_max_age_s old.
    stale = signed(created=NOW - 1000, expires=NOW - 700)
    assert verify_async(stale, queued_max_age_s=1000).created == NOW - 1000
    with pytest.raises(SignatureError) as exc:
        verify_async(stale)
    assert exc.value.code == "signature_expired"
    with pytest.raises(SignatureError) as exc:
        verify_async(signed(created=NOW - 1001, expires=NOW - 701), queued_max_age_s=1000)
    err = exc.value
    assert (err.code, err.status) == ("signature_expired", 401) and isinstance(err.detail, str) and err.detail


def test_async_replay_is_refused_and_the_nonce_store_gets_the_signed_values() -> None:
    calls: list[tuple[str, str, int]] = []

    async def record(keyid: str, nonce: str, expires: int) -> bool:
        calls.append((keyid, nonce, expires))
        return len(calls) == 1

    import asyncio

    headers = signed(nonce="n" * 24, expires=NOW + 200)

    def run() -> httpsig.Verified:
        return asyncio.run(
            httpsig.verify_request_async(
                method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
                headers=headers, body=BODY, now=NOW, resolve_key=_async_resolve, nonce_check=record,
            )
        )  # fmt: skip

    assert run().nonce == "n" * 24
    with pytest.raises(SignatureError) as exc:
        run()
    err = exc.value
    assert (err.code, err.status) == ("nonce_replayed", 401) and isinstance(err.detail, str) and err.detail
    assert calls == [(KEYID, "n" * 24, NOW + 200)] * 2


ALL_DERIVED = ["@method", "@authority", "@path", "@query", "@scheme", "@target-uri", "@request-target"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scheme", ["http", "https", None])
def test_scheme_and_query_reach_the_signature_base(mode: str, scheme: str | None) -> None:
    # A body-less GET with a query, covering every derived component; None = both sides' default.
    kw: dict[str, Any] = {} if scheme is None else {"scheme": scheme}
    target = {"method": "GET", "path": "/api/agency/v1/requests/r1", "query": "a=1&b=2", "body": b""}
    headers = signed(components=ALL_DERIVED, **target, **kw)  # type: ignore[arg-type]
    assert not any(k == "Content-Digest" for k, _ in headers)  # no body, no digest
    v = (verify if mode == "sync" else verify_async)(headers, **target, **kw)  # type: ignore[arg-type]
    assert v.components == tuple(ALL_DERIVED)
    other = {"scheme": "http" if scheme == "https" or scheme is None else "https"}
    with pytest.raises(SignatureError) as exc:
        (verify if mode == "sync" else verify_async)(headers, **target, **other)  # type: ignore[arg-type]
    assert exc.value.code == "bad_signature"


def test_sign_request_keeps_the_callers_content_digest() -> None:
    given_digest = "sha-256=:" + base64.b64encode(__import__("hashlib").sha256(BODY).digest()).decode() + ":"
    extra = httpsig.sign_request(
        method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
        headers=[("Content-Type", "application/json"), ("content-digest", given_digest)], body=BODY,
        private_key=AGENCY, keyid=KEYID, created=NOW,
    )  # fmt: skip
    assert [k for k, _ in extra] == ["Signature-Input", "Signature"]
    headers = [("Content-Type", "application/json"), ("content-digest", given_digest), *extra]
    assert verify(headers).keyid == KEYID


def test_request_build_defaults_to_https() -> None:
    r = httpsig.Request.build("GET", "h", "/", None, [])
    assert r.scheme == "https"
    assert httpsig.component_value(r, "@scheme") == "https"


FULL = httpsig.Request("POST", "WWW.Example.com:8443", "/p/a%20b", "x=1&y=%20", [], "HTTPS")
BARE = httpsig.Request("GET", "example.com", "", None, [], "http")
NOQ = httpsig.Request("GET", "example.com", "/p", "", [], "https")


@pytest.mark.parametrize(
    ("request_", "component", "value"),
    [
        (FULL, "@method", "POST"),
        (FULL, "@authority", "www.example.com:8443"),
        (FULL, "@scheme", "https"),
        (FULL, "@path", "/p/a%20b"),
        (FULL, "@query", "?x=1&y=%20"),
        (FULL, "@request-target", "/p/a%20b?x=1&y=%20"),
        (FULL, "@target-uri", "https://www.example.com:8443/p/a%20b?x=1&y=%20"),
        (BARE, "@scheme", "http"),
        (BARE, "@path", "/"),
        (BARE, "@query", "?"),
        (BARE, "@request-target", "/"),
        (BARE, "@target-uri", "http://example.com/"),
        (NOQ, "@query", "?"),
        (NOQ, "@request-target", "/p"),
        (NOQ, "@target-uri", "https://example.com/p"),
    ],
)
def test_derived_component_values(request_: httpsig.Request, component: str, value: str) -> None:
    # RFC 9421 §2.2 values, written out (signing and verifying share component_value, so a
    # round trip alone cannot see a wrong one).
    assert httpsig.component_value(request_, component) == value


@pytest.mark.parametrize(
    ("headers", "component", "code"),
    [
        ([], "@foo", "unsupported_component"),
        ([], "x-absent", "component_absent"),
        ([], "content-digest", "digest_missing"),
        ([("X-A", "a\rb")], "x-a", "signature_malformed"),
        ([("X-A", "a\nb")], "x-a", "signature_malformed"),
        ([("X-A", "a\0b")], "x-a", "signature_malformed"),
    ],
)
def test_component_value_refusals(headers: list[tuple[str, str]], component: str, code: str) -> None:
    r = httpsig.Request.build("GET", "h", "/", None, headers)
    for call in (
        lambda: httpsig.component_value(r, component),
        lambda: httpsig.signature_base(r, [component], "()"),
    ):
        with pytest.raises(SignatureError) as exc:
            call()
        err = exc.value
        assert (err.code, err.status) == (code, 401) and isinstance(err.detail, str) and err.detail


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        ([" \tv \t"], "v"),
        (["Xv X"], "Xv X"),
        (["\x0cv\x0b"], "\x0cv\x0b"),  # only SP and HTAB are OWS (RFC 9110 §5.6.3)
        ([" a ", "b\t"], "a, b"),
    ],
)
def test_field_value_trims_only_ows(lines: list[str], value: str) -> None:
    r = httpsig.Request.build("GET", "h", "/", None, [("X-A", v) for v in lines])
    assert httpsig.field_value(r, "x-a") == value


def test_new_nonce_is_32_random_bytes() -> None:
    nonces = [httpsig.new_nonce() for _ in range(1000)]
    assert all(len(n) == 43 and len(b64url_decode(n)) == 32 for n in nonces)
    assert len(set(nonces)) == 1000


SHA256_OK = httpsig.content_digest(BODY).removeprefix("sha-256=")
SHA256_EMPTY = httpsig.content_digest(b"").removeprefix("sha-256=")
SHA512_OK = ":" + base64.b64encode(__import__("hashlib").sha512(BODY).digest()).decode() + ":"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("sha-256=:", "digest_mismatch"),  # not a structured dictionary
        ("(((", "digest_mismatch"),
        ("sha-512=" + SHA512_OK, "digest_missing"),
        ("md5=:AAAA:", "digest_missing"),
        ("sha-256=" + SHA256_EMPTY, "digest_mismatch"),
        # An unknown member is skipped, not an end of the checks:
        ("md5=:AAAA:, sha-256=" + SHA256_EMPTY, "digest_mismatch"),
        ("sha-256=" + SHA256_OK + ", sha-512=" + SHA256_OK, "digest_mismatch"),  # sha-512 is checked too
        ("sha-256=1", "digest_mismatch"),
        ('sha-256="abc"', "digest_mismatch"),
        ('sha-256=("a")', "digest_mismatch"),
        ("sha-256=" + SHA256_OK + ', sha-512=("a")', "digest_mismatch"),
    ],
)
def test_content_digest_refusals(value: str, code: str) -> None:
    with pytest.raises(SignatureError) as exc:
        httpsig.check_content_digest(value, BODY)
    err = exc.value
    assert (err.code, err.status) == (code, 401) and isinstance(err.detail, str) and err.detail


@pytest.mark.parametrize(
    "value",
    [
        "sha-256=" + SHA256_OK,
        "md5=:AAAA:, sha-256=" + SHA256_OK,
        "sha-256=" + SHA256_OK + ", sha-512=" + SHA512_OK,
        "sha-256=" + SHA256_OK + ", unixsum=1",
    ],
)
def test_content_digest_accepted(value: str) -> None:
    httpsig.check_content_digest(value, BODY)
