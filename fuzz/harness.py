"""Coverage-guided fuzzing (atheris / libFuzzer) of the parsers that read network input.

The same targets as `tests/security/test_fuzz_parsers.py`, without a fixed budget: `make fuzz` runs
each for FUZZ_SECONDS (60 by default). Not part of CI. A crash (any exception but the target's typed
error) stops the run and libFuzzer writes the input to `crash-<sha1>` in the working directory; add
it to the hypothesis test as an `@example` when fixing it.

    .venv/bin/python fuzz/harness.py TARGET [libFuzzer flags and corpus dirs]

`make fuzz` passes a scratch corpus (fuzz/.corpus/TARGET, not committed) and the seeds in
fuzz/seeds/TARGET (one valid message each, so the fuzzer starts past the first syntax checks).

Targets: structured_fields, httpsig, request_body, jws, decision_payload, annexb, doorbell,
rtp_stream, sdp.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from camhub_protocol import httpsig, jws, structured_fields
    from camhub_protocol.errors import ConsentError, JWSError, SignatureError
    from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
    from hub.consent import decisions
    from hub.consent import requests as consent_requests
    from hub.events.doorbell import SseParser, is_press
    from hub.ingest import rtsp_client, source
    from hub.ingest.rtsp import _param_set_nals
    from hub.ingest.source import SourceOpenError

HUB_ID = "fuzz-hub"
NOW = 1_800_000_000
KEY = Ed25519PrivateKey.generate()
KID = jwk_thumbprint(okp_public_jwk(KEY.public_key()))
BODY = b'{"a": 1}'


def _text(data: bytes) -> str:
    return atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))


def structured_fields_target(data: bytes) -> None:
    try:
        structured_fields.parse_dictionary(_text(data))
    except SignatureError:
        pass


def httpsig_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    headers = [("Content-Type", "application/json"), ("Content-Digest", httpsig.content_digest(BODY))]
    headers.append(("Signature-Input", fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))))
    headers.append(("Signature", fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))))
    try:
        httpsig.verify_request(
            method="POST", authority="hub.local", path="/p", query=None, headers=headers, body=BODY,
            now=NOW, resolve_key=lambda k: KEY.public_key() if k == KID else None,
            nonce_check=lambda *_: True,
        )  # fmt: skip
    except SignatureError:
        pass


def request_body_target(data: bytes) -> None:
    try:
        consent_requests.parse_body(data, HUB_ID)
    except ConsentError:
        pass


def jws_target(data: bytes) -> None:
    try:
        parsed = jws.parse(data, typ=decisions.DECISION_TYP)
        jws.decode_json(parsed.payload)
    except JWSError:
        pass


def decision_payload_target(data: bytes) -> None:
    """The JSON of a (validly signed) decision: syntax checks of §3 step 4 and the approve scope."""
    try:
        payload = jws.decode_json(data)
    except JWSError:
        return
    if not isinstance(payload, dict):
        return
    try:
        decisions.check_common(payload, HUB_ID)
    except ConsentError:
        pass


def annexb_target(data: bytes) -> None:
    for codec in ("h264", "hevc"):
        source._nal_types(data, codec)
        source.has_parameter_sets(data, codec)
        _param_set_nals(data, codec)


def doorbell_target(data: bytes) -> None:
    parser = SseParser()
    for line in _text(data).split("\n"):
        msg = parser.feed(line)
        if msg is not None:
            is_press(msg)


# Audio beside the video (channel 2, RTCP on 1 and 3), chosen by the input's first byte.
_FUZZ_AUDIO = {
    b"a": rtsp_client.AudioRtp("aac", 97, 16000, 1, "rtsp://127.0.0.1/x/a", b"\x14\x08", 13, 3, 3),
    b"g": rtsp_client.AudioRtp("pcm_alaw", 8, 8000, 1, "rtsp://127.0.0.1/x/a"),
    b"o": rtsp_client.AudioRtp("opus", 111, 48000, 2, "rtsp://127.0.0.1/x/a"),
}


def rtp_stream_target(data: bytes) -> None:
    """What a camera sends after PLAY, through camhub's own RTSP/TCP reader."""
    codec = "hevc" if data[:1] == b"h" else "h264"
    track = rtsp_client.VideoTrack(codec, 96, 90000, "rtsp://127.0.0.1/x", ())
    try:
        rtsp_client.depacketize(data[1:65536], track, _FUZZ_AUDIO.get(data[:1]))
    except rtsp_client.ReaderUnsupported:
        pass


def sdp_target(data: bytes) -> None:
    try:
        track, _ = rtsp_client.parse_sdp(_text(data), "rtsp://cam/live")
    except SourceOpenError:
        return
    for nal in track.param_sets:
        try:
            source.sps_size(nal, track.codec)
        except ValueError:
            pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "structured_fields": structured_fields_target,
    "httpsig": httpsig_target,
    "request_body": request_body_target,
    "jws": jws_target,
    "decision_payload": decision_payload_target,
    "annexb": annexb_target,
    "doorbell": doorbell_target,
    "rtp_stream": rtp_stream_target,
    "sdp": sdp_target,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
