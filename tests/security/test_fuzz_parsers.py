"""Fuzzing the parsers that read network input (issue 8), with hypothesis.

Each parser has one typed error for bad input; anything else escaping it (IndexError, KeyError,
TypeError, UnicodeError, RecursionError, ...) is a bug, because it turns a hostile byte string into a
500 or a dead task instead of the clear refusal PROTOCOL.md prescribes. The inputs mix pure noise with
mutations of valid messages, so the fuzzer gets past the first checks into the deeper code:

- RFC 8941 structured fields and RFC 9421 `Signature` / `Signature-Input` (`structured_fields`,
  `httpsig.verify_request`) → `SignatureError`;
- a camera's doorbell event stream (`events.doorbell.SseParser`, `is_press`) → never raises;
- the §2.1 JSON request validator (`requests.parse_body`) → `ConsentError`;
- JWS compact parsing (`jws.parse`) → `JWSError`, and owner decisions end to end through the real
  consent service (`decisions.submit`, real signatures over fuzzed payloads) → `ConsentError`;
- passkey decisions (`passkeys.parse`, `verify`, `payload_of`) → `ConsentError`, and passkey
  registrations (`passkeys.register`) → `ValueError` (PROTOCOL §3.1);
- what the hub itself parses of a camera's stream: Annex B NAL scanning (`source._nal_types`,
  `has_parameter_sets`, `rtsp._param_set_nals`), the timestamp fixer, and WHIP SDP offers
  (`whip.WhipSession.accept`, aiortc's SDP parser underneath) → `WhipOfferError`. The RTSP protocol
  and its SDP are parsed by FFmpeg (C, outside this repo), exercised by tests/firmware_sim's faults.

Atheris harnesses for the same parsers live in `fuzz/` (`make fuzz`, not in CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from camhub_protocol import httpsig, jws, rfc3339, structured_fields
from camhub_protocol.errors import ConsentError, JWSError, SignatureError
from camhub_protocol.keys import HubKey, jwk_thumbprint, okp_public_jwk
from hub import config as config_mod
from hub.consent import decisions, pairing
from hub.consent import requests as consent_requests
from hub.consent.owners import enroll_first
from hub.consent.service import ConsentService
from hub.events.doorbell import SseParser, is_press
from hub.ingest import rtsp_client
from hub.ingest import source as ingest_source
from hub.ingest.rtsp import _param_set_nals
from hub.ingest.source import SourceOpenError
from hub.ingest.whip import WhipOfferError, WhipSession
from hub.store import Store
from hub.supervisor import Supervisor
from tests.conftest import free_port, write_config

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HUB_ID = "hub-id-for-fuzzing"
NOW = 1_800_000_000

# Characters that matter to the parsers, so noise reaches past the first byte.
SF_ALPHABET = 'sig1=();"\\:,*?-_. abcdefgkmnoprtxyz0123456789@/+ \t\x7f\x00é'
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def mutate(text: str, data: st.DataObject) -> str:
    """Delete, duplicate or replace a slice of `text` (byte-level mutation, like a fuzzer's)."""
    if not text:
        return data.draw(st.text(SF_ALPHABET, max_size=20))
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i, min(len(text), i + 12)))
    op = data.draw(st.sampled_from(["delete", "dup", "replace", "insert"]))
    if op == "delete":
        return text[:i] + text[j:]
    if op == "dup":
        return text[:j] + text[i:j] + text[j:]
    fill = data.draw(st.text(SF_ALPHABET, max_size=8))
    return text[:i] + fill + (text[j:] if op == "replace" else text[i:])


# --- RFC 8941 / RFC 9421 ------------------------------------------------------------------------

AGENCY = Ed25519PrivateKey.generate()
AGENCY_KID = jwk_thumbprint(okp_public_jwk(AGENCY.public_key()))
BODY = b'{"hello": "world"}'


def signed_headers() -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json")]
    return headers + httpsig.sign_request(
        method="POST", authority="hub.local", path="/api/agency/v1/requests", query=None, headers=headers,
        body=BODY, private_key=AGENCY, keyid=AGENCY_KID, created=NOW, scheme="https",
    )  # fmt: skip


@FUZZ
@given(st.text(SF_ALPHABET, max_size=200) | st.text(max_size=200))
@example('sig1=("@method";req;bs);created=1')
@example("sig1=:" + "A" * 10 + ":, sig1=?1")
@example("a=(" * 3000)
def test_structured_field_dictionary_noise(text: str) -> None:
    try:
        structured_fields.parse_dictionary(text)
    except SignatureError:
        pass


def _verify(headers: list[tuple[str, str]]) -> None:
    httpsig.verify_request(
        method="POST", authority="hub.local", path="/api/agency/v1/requests", query=None, headers=headers,
        body=BODY, now=NOW, resolve_key=lambda kid: AGENCY.public_key() if kid == AGENCY_KID else None,
        nonce_check=lambda *_: True, scheme="https",
    )  # fmt: skip


def test_the_unmutated_request_verifies() -> None:
    _verify(signed_headers())  # so the mutations below start from a message that passes


@FUZZ
@given(data=st.data(), target=st.sampled_from(["signature-input", "signature", "content-digest"]))
def test_signature_headers_mutated(data: st.DataObject, target: str) -> None:
    headers = []
    for name, value in signed_headers():
        if name.lower() == target:
            value = mutate(value, data)
            if data.draw(st.booleans()):
                value = mutate(value, data)
        headers.append((name, value))
    if data.draw(st.booleans()):  # a second field line of the same name (RFC 9110 §5.3 combines them)
        headers.append((target, data.draw(st.text(SF_ALPHABET, max_size=40))))
    try:
        _verify(headers)
    except SignatureError:
        pass


# --- §2.1 request bodies ------------------------------------------------------------------------

VALID_REQUEST: dict[str, Any] = {
    "hub": HUB_ID,
    "case_id": "c-1",
    "kind": "clip",
    "cameras": ["front"],
    "start": "2026-11-01T10:00:00Z",
    "end": "2026-11-01T10:05:00Z",
    "live_max_seconds": None,
    "reason": "r",
    "legal_basis": {"type": "consent", "reference": None},
    "contact": "c",
}


def test_the_valid_request_body_parses() -> None:
    assert consent_requests.parse_body(json.dumps(VALID_REQUEST).encode(), HUB_ID).kind == "clip"


@FUZZ
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"hub": 1e999999}')
@example(b"\xef\xbb\xbf{}")
def test_request_body_bytes(body: bytes) -> None:
    try:
        consent_requests.parse_body(body, HUB_ID)
    except ConsentError:
        pass


@FUZZ
@given(
    member=st.sampled_from([*sorted(VALID_REQUEST), "extra"]),
    value=json_values,
    kind=st.sampled_from(["clip", "live"]),
)
def test_request_body_one_member_replaced(member: str, value: Any, kind: str) -> None:
    doc = dict(VALID_REQUEST, kind=kind)
    if kind == "live":
        doc.update(start=None, end=None, live_max_seconds=60)
    doc[member] = value
    try:
        consent_requests.parse_body(json.dumps(doc).encode(), HUB_ID)
    except ConsentError:
        pass


@FUZZ
@given(
    member=st.sampled_from(["start", "end", "issued_at"]),
    text=st.text(alphabet="0123456789-:TZtz.+ ", max_size=40) | st.text(max_size=40),
)
@example(member="start", text="9999-12-31T23:59:60Z")
@example(member="start", text="0000-01-01T00:00:00Z")
@example(member="start", text="2026-11-01T10:00:00.99999999999999999999Z")
@example(member="start", text="2026-11-01T10:00:00+99:99")
def test_rfc3339_times(member: str, text: str) -> None:
    doc = dict(VALID_REQUEST, **{member: text}) if member != "issued_at" else dict(VALID_REQUEST)
    try:
        rfc3339.parse(text)
    except ValueError:
        pass
    try:
        consent_requests.parse_body(json.dumps(doc).encode(), HUB_ID)
    except ConsentError:
        pass


# --- JWS and owner decisions --------------------------------------------------------------------

OWNER = Ed25519PrivateKey.generate()
OWNER_KID = jwk_thumbprint(okp_public_jwk(OWNER.public_key()))


@FUZZ
@given(st.text(alphabet="eyJhbGciOiJFZDI1NTE5In0.-_=+/ \x00", max_size=300) | st.binary(max_size=200))
@example("..")
@example("a.b.c.d")
@example(b"\xff.\xfe.\xfd")
def test_jws_noise(compact: str | bytes) -> None:
    try:
        jws.parse(compact, typ=decisions.DECISION_TYP)
    except JWSError:
        pass


@FUZZ
@given(data=st.data(), segment=st.integers(0, 2))
def test_jws_mutated(data: st.DataObject, segment: int) -> None:
    compact = jws.sign(b'{"v":1}', OWNER, OWNER_KID, decisions.DECISION_TYP)
    parts = compact.split(".")
    parts[segment] = mutate(parts[segment], data)
    try:
        parsed = jws.parse(".".join(parts), typ=decisions.DECISION_TYP)
        jws.decode_json(jws.verify(parsed, OWNER.public_key()))
    except JWSError:
        pass


# --- passkey decisions and registrations (PROTOCOL §3.1) --------------------------------------

PASSKEY_MEMBERS = ("kid", "payload", "authenticator_data", "client_data_json", "signature", "v", "format")


@functools.cache  # one authenticator and one body per run: hypothesis needs the same input lengths
def _passkey_setup() -> tuple[Any, Any, bytes, dict[str, str]]:
    from hub.consent import passkeys
    from hub.store import consent as consent_q
    from tests.consent.softauthn import SoftPasskey, decision, payload

    pk = SoftPasskey("localhost", "http://localhost:8080")
    registration = pk.create(HUB_ID)
    new = passkeys.register(passkeys.RelyingParty("localhost"), HUB_ID, registration)
    stored = consent_q.Passkey(new.kid, new.credential_id, new.cose_key, "localhost", 0)
    body = decision(
        pk,
        payload(HUB_ID, {"decision": "decline", "request_id": "r", "request_sha256": "0", "recipient": "a"}),
    )
    return passkeys, stored, body, registration


def test_the_unmutated_passkey_decision_verifies() -> None:
    passkeys, stored, body, _ = _passkey_setup()
    signed = passkeys.parse(body)
    passkeys.verify(passkeys.RelyingParty("localhost"), stored, signed)
    assert passkeys.payload_of(signed)["decision"] == "decline"


@FUZZ
@given(data=st.data(), member=st.sampled_from([*PASSKEY_MEMBERS, "<body>"]))
def test_passkey_decision_mutated(data: st.DataObject, member: str) -> None:
    passkeys, stored, body, _ = _passkey_setup()
    if member == "<body>":
        mutated = mutate(body.decode(), data).encode()
    else:
        obj = json.loads(body)
        obj[member] = data.draw(json_values) if data.draw(st.booleans()) else mutate(str(obj[member]), data)
        mutated = json.dumps(obj).encode()
    try:
        signed = passkeys.parse(mutated)
        passkeys.verify(passkeys.RelyingParty("localhost"), stored, signed)
        passkeys.payload_of(signed)
    except ConsentError:
        pass


@FUZZ
@given(data=st.data(), member=st.sampled_from(["credential_id", "client_data_json", "attestation_object"]))
def test_passkey_registration_mutated(data: st.DataObject, member: str) -> None:
    passkeys, _, _, registration = _passkey_setup()
    value = dict(registration)
    value[member] = data.draw(json_values) if data.draw(st.booleans()) else mutate(value[member], data)
    try:
        passkeys.register(passkeys.RelyingParty("localhost"), HUB_ID, value)
    except ValueError:
        pass


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "cty", "crit", "jwk"]), json_values))
def test_jws_headers(header: dict[str, Any]) -> None:
    def b64(raw: bytes) -> str:
        return jws._b64url(raw)

    compact = f"{b64(json.dumps(header).encode())}.{b64(b'{}')}.{b64(bytes(64))}"
    try:
        jws.parse(compact, typ=decisions.DECISION_TYP)
    except JWSError:
        pass


class Hub:
    """A real consent service with an enrolled owner and one pending request, on its own loop."""

    def __init__(self, tmp: Path) -> None:
        cfg = write_config(tmp / "camhub.toml", tmp / "data", free_port())
        self.config = config_mod.load(cfg)
        self.loop = asyncio.new_event_loop()
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def _start(self) -> None:
        from hub import datadir

        datadir.prepare(self.config)
        self.store = await Store.open(self.config.db_path)
        self.supervisor = Supervisor()
        hub_key, _ = HubKey.load_or_create(self.config.keys_dir)
        self.svc = await ConsentService.start(
            self.config, self.store, hub_key, self.supervisor, pairing.PairingGuard()
        )
        code = await self.store.run(pairing.issue)
        await enroll_first(
            self.svc,
            {"pairing_code": code, "public_jwk": okp_public_jwk(OWNER.public_key()), "name": "o"},
            "127.0.0.1",
        )

    async def stop(self) -> None:
        await self.svc.stop()
        await self.supervisor.stop(3.0)
        await self.store.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(tmp_path_factory.mktemp("fuzz-hub"))
    try:
        yield h
    finally:
        h.run(h.stop())
        h.loop.close()


DECISION_TEMPLATES: dict[str, dict[str, Any]] = {
    "approve": {
        "request_id": "r", "request_sha256": "0" * 64, "recipient": "k",
        "scope": {"kind": "clip", "cameras": ["front"], "start": "2026-11-01T10:00:00Z",
                  "end": "2026-11-01T10:01:00Z", "live_max_seconds": None},
        "max_fetches": 1, "not_after": "2099-01-01T00:00:00Z",
    },
    "decline": {"request_id": "r", "request_sha256": "0" * 64, "recipient": "k"},
    "revoke": {"request_id": "r"},
    "enroll-key": {"subject": {"public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}, "name": "n"}},
    "revoke-key": {"subject": {"kid": "k"}},
    "add-agency": {"subject": {"name": "PD", "sig_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "A" * 43},
                               "recipient": "age1xxxxxxxx"}},
    "remove-agency": {"subject": {"keyid": "k"}},
}  # fmt: skip


@settings(FUZZ, max_examples=200)
@given(
    kind=st.sampled_from(sorted(DECISION_TEMPLATES)),
    path=st.lists(st.sampled_from(["scope", "subject", "cameras", "start", "end", "live_max_seconds", "kind",
                                   "public_jwk", "sig_jwk", "x", "kty", "name", "recipient", "kid", "keyid",
                                   "max_fetches", "not_after", "request_id", "v", "hub", "jti", "issued_at",
                                   "decision"]), min_size=1, max_size=3),
    value=json_values,
)  # fmt: skip
def test_decisions_with_fuzzed_payloads(hub: Hub, kind: str, path: list[str], value: Any) -> None:
    """A validly signed decision whose payload has one (nested) member replaced: refused, never a crash."""
    payload: dict[str, Any] = {
        "v": 1, "hub": hub.svc.hub_id, "decision": kind, **json.loads(json.dumps(DECISION_TEMPLATES[kind])),
        "issued_at": rfc3339.format(int(time.time())), "jti": hashlib.sha256(repr((kind, path, value)).encode()).hexdigest(),
    }  # fmt: skip
    node: Any = payload
    for key in path[:-1]:
        if not isinstance(node, dict):
            break
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[path[-1]] = value
    compact = jws.sign(json.dumps(payload).encode(), OWNER, OWNER_KID, decisions.DECISION_TYP)
    try:
        hub.run(decisions.submit(hub.svc, compact.encode()))
    except ConsentError:
        pass


# --- what the hub parses of a camera's stream -------------------------------------------------

nal_bytes = st.lists(
    st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x67", b"\x68", b"\x65", b"\x40\x01", b"\x42\x01",
                     b"\x44\x01", b"\x00", b"\xff"]) | st.binary(max_size=6),
    max_size=30,
).map(b"".join)  # fmt: skip


@FUZZ
@given(data=nal_bytes | st.binary(max_size=200), codec=st.sampled_from(["h264", "hevc"]))
@example(data=b"\x00\x00\x01", codec="h264")
@example(data=b"\x00\x00\x01\x67\x00\x00\x01", codec="h264")
def test_annexb_nal_scanning(data: bytes, codec: str) -> None:
    ingest_source._nal_types(data, codec)
    ingest_source.has_parameter_sets(data, codec)
    for nal in _param_set_nals(data, codec):
        assert nal in data


def _rtp(seq: int, ts: int, payload: bytes, marker: bool, pt: int) -> bytes:
    packet = bytes((0x80, (0x80 if marker else 0) | pt)) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big")
    packet += b"\0\0\0\1" + payload
    return b"$\0" + len(packet).to_bytes(2, "big") + packet


# RTP packets of H.264/H.265 NAL units, aggregates and fragments (and noise) as a camera interleaves
# them after PLAY: what camhub's own reader (hub/ingest/rtsp_client.py) splits and depacketises.
rtp_streams = st.lists(
    st.builds(
        _rtp,
        st.integers(0, 0xFFFF),
        st.integers(0, 2**32 - 1) | st.sampled_from([0, 3000, 6000, 2**32 - 1]),
        st.sampled_from([b"\x65", b"\x41", b"\x7c\x85", b"\x7c\x45", b"\x7c\x05", b"\x18\x00\x02\x67\x42",
                         b"\x26\x01", b"\x62\x01\x93", b"\x62\x01\x53", b"\x60\x01\x00\x03\x40\x01\x0c",
                         b"\x1d", b"\x64\x01"]).map(lambda h: h) | st.binary(max_size=3),
        st.booleans(),
        st.sampled_from([96, 97]),
    ).map(lambda f: f) | st.binary(max_size=12) | st.sampled_from([b"RTSP/1.0 200 OK\r\n\r\n", b"$\x01\x00\x00"]),
    max_size=40,
).map(b"".join)  # fmt: skip


@FUZZ
@given(data=rtp_streams | st.binary(max_size=400), codec=st.sampled_from(["h264", "hevc"]))
@example(data=b"$\x00\x00\x0c\x90\x60\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01", codec="h264")  # ext, none
@example(data=b"$\x00\x00\x0d\xa0\x60\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\xff", codec="hevc")
@example(data=b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", codec="h264")
def test_rtp_interleaved_stream(data: bytes, codec: str) -> None:
    track = rtsp_client.VideoTrack(codec, 96, 90000, "rtsp://127.0.0.1/x", ())
    try:
        units = rtsp_client.depacketize(data, track)
    except rtsp_client.ReaderUnsupported:
        return
    for unit in units:
        assert bytes(unit).startswith(b"\x00\x00\x00\x01") and unit.pts == unit.dts


def _on(channel: int, packet: bytes) -> bytes:
    return b"$" + bytes((channel,)) + len(packet).to_bytes(2, "big") + packet


# The same with audio on channel 2 (AAC AU headers, G.711, Opus) and RTCP sender reports on 1 and 3.
av_streams = st.lists(
    st.builds(
        lambda ch, seq, ts, payload, marker, pt: _on(ch, _rtp(seq, ts, payload, marker, pt)[4:]),
        st.sampled_from([0, 2, 2, 3]),
        st.integers(0, 0xFFFF),
        st.integers(0, 2**32 - 1) | st.sampled_from([0, 1024, 3000, 2**32 - 1]),
        st.sampled_from([b"\x65", b"\x41", b"\x7c\x85", b"\x00\x10\x00\x08", b"\x00\x10\xff\xf8",
                         b"\x00\x20\x00\x08\x00\x10", b"\xff\xff", b"\xfb\xff", b"\x03\x3f"]) | st.binary(max_size=6),
        st.booleans(),
        st.sampled_from([0, 96, 97, 111]),
    )
    | st.builds(
        lambda ch, body: _on(ch, b"\x80\xc8\x00\x06" + body),
        st.sampled_from([1, 3]),
        st.binary(min_size=0, max_size=30),
    )
    | st.binary(max_size=12),
    max_size=40,
).map(b"".join)  # fmt: skip
AUDIO_TRACKS = [
    rtsp_client.AudioRtp("aac", 97, 16000, 1, "rtsp://127.0.0.1/x/a", b"\x14\x08", 13, 3, 3),
    rtsp_client.AudioRtp("aac", 97, 16000, 1, "rtsp://127.0.0.1/x/a", b"\x14\x08", 6, 2, 2),
    rtsp_client.AudioRtp("pcm_mulaw", 0, 8000, 1, "rtsp://127.0.0.1/x/a"),
    rtsp_client.AudioRtp("opus", 111, 48000, 2, "rtsp://127.0.0.1/x/a"),
]


@FUZZ
@given(data=av_streams | st.binary(max_size=400), audio=st.sampled_from(AUDIO_TRACKS))
def test_rtp_interleaved_stream_with_audio(data: bytes, audio: rtsp_client.AudioRtp) -> None:
    track = rtsp_client.VideoTrack("h264", 96, 90000, "rtsp://127.0.0.1/x", ())
    try:
        packets = rtsp_client.depacketize(data, track, audio)
    except rtsp_client.ReaderUnsupported:
        return
    for pkt in packets:
        if isinstance(pkt, rtsp_client.ReaderAudioPacket):
            assert pkt.size > 0 and isinstance(pkt.pts, int) and pkt.duration >= 0
            assert pkt.time_base == Fraction(1, audio.clock_rate)
        else:
            assert bytes(pkt).startswith(b"\x00\x00\x00\x01") and pkt.pts == pkt.dts


@FUZZ
@given(
    text=st.text(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                "m=video 0 RTP/AVP 96",
                "m=audio 0 RTP/AVP 0",
                "m=audio 0 RTP/AVP 97",
                "a=rtpmap:97 MPEG4-GENERIC/16000/1",
                "a=fmtp:97 mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;indexdeltalength=3",
                "a=fmtp:97 mode=AAC-hbr;config=zz;sizelength=99",
                "a=rtpmap:97 MP4A-LATM/16000",
                "a=rtpmap:97 opus/48000/2",
                "a=rtpmap:96 H264/90000",
                "a=rtpmap:96 H265/90000",
                "a=rtpmap:96 H264",
                "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAHpWoKA9puAgICBA=,aM48gA==",
                "a=fmtp:96 sprop-vps=QAE;sprop-sps=!!;sprop-max-don-diff=x",
                "a=control:*",
                "a=control:rtsp://h/a",
                "a=control:/abs",
                "a=rtpmap:x y",
                "a=fmtp:",
                "m=video",
            ]
        ),
        max_size=12,
    ).map("\r\n".join)
)
def test_sdp_noise(text: str) -> None:
    try:
        audio = rtsp_client.parse_sdp_audio(text, "rtsp://cam/live")
    except rtsp_client.ReaderUnsupported:
        audio = None
    if audio is not None:
        assert audio.codec in ("aac", "pcm_mulaw", "pcm_alaw", "opus") and audio.clock_rate > 0
        assert audio.control.startswith("rtsp://")
    try:
        track, aggregate = rtsp_client.parse_sdp(text, "rtsp://cam/live")
    except SourceOpenError:  # no video track camhub's reader takes (ReaderUnsupported)
        return
    assert track.codec in ("h264", "hevc") and aggregate.startswith("rtsp://")
    for nal in track.param_sets:
        if nal and ingest_source.nal_type(nal[0], track.codec) in (7, 33):
            with contextlib.suppress(ValueError):
                ingest_source.sps_size(nal, track.codec)


@FUZZ
@given(data=st.binary(max_size=60), codec=st.sampled_from(["h264", "hevc"]))
@example(data=b"\x67\x64\x00\x1f\xff\xff\xff\xff\xff", codec="h264")
def test_sps_noise(data: bytes, codec: str) -> None:
    try:
        width, height = ingest_source.sps_size(data, codec)
    except ValueError:  # a truncated or malformed SPS: the reader says so (ReaderUnsupported)
        return
    assert width > 0 and height > 0


@FUZZ
@given(
    steps=st.lists(
        st.tuples(
            st.none() | st.integers(-(2**40), 2**40),
            st.none() | st.integers(-(2**40), 2**40),
            st.integers(-(2**20), 2**20),
        ),
        max_size=40,
    ),
    tb=st.sampled_from([Fraction(1, 90000), Fraction(1, 1000), Fraction(1, 15)]),
)
def test_timestamp_fixer(steps: list[tuple[int | None, int | None, int]], tb: Fraction) -> None:
    """Whatever timestamps a camera sends: dts increases (or the packet is a flagged discontinuity)
    and pts >= dts, which is what the muxer needs."""
    fixer = ingest_source.TimestampFixer(tb)
    last: int | None = None
    for pts, dts, duration in steps:
        p, d, discontinuity = fixer.fix(pts, dts, duration)
        assert p >= d
        if last is not None and not discontinuity:
            assert d > last
        last = d


VALID_OFFER: str | None = None


def valid_offer() -> str:
    """An SDP offer as a WHIP camera (the simulator's aiortc publisher) sends it."""
    global VALID_OFFER
    if VALID_OFFER is None:
        from aiortc import RTCPeerConnection

        async def make() -> str:
            pc = RTCPeerConnection()
            pc.addTransceiver("video", direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            await pc.close()
            return sdp

        VALID_OFFER = asyncio.run(make())
    return VALID_OFFER


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_whip_offer_mutated(data: st.DataObject) -> None:
    lines = valid_offer().split("\r\n")
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "mutate", "dup", "noise"]))
        if op == "drop":
            lines.pop(i)
        elif op == "mutate":
            lines[i] = mutate(lines[i], data)
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines.insert(i, data.draw(st.text(max_size=40)))
        if not lines:
            break
    offer = "\r\n".join(lines)

    async def attempt() -> None:
        session = WhipSession("fuzz-cam")
        try:
            await session.accept(offer)
        except WhipOfferError:
            pass
        finally:
            await session.close("fuzz")

    asyncio.run(attempt())


@FUZZ
@given(
    lines=st.lists(
        st.sampled_from(["", "event: press", "data: {}", 'data: {"type": "press"}', 'data: {"type": []}',
                         'data: {"kind": {"a": 1}}', "retry: ²", "retry: " + "9" * 5000, "id: \x00", ": hi"])
        | st.text(max_size=30),
        max_size=20,
    )
)  # fmt: skip
def test_doorbell_event_stream(lines: list[str]) -> None:
    """What a camera (or anything on the LAN claiming to be one) sends on its event stream."""
    parser = SseParser()
    for line in lines:
        msg = parser.feed(line)
        if msg is not None:
            assert is_press(msg) in (True, False)
    assert parser.retry_ms is None or 0 <= parser.retry_ms < 10**9
