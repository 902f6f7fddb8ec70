"""Interop with an independent RFC 9421 implementation (`http-message-signatures`), both directions.

It is a declared dev dependency (pyproject.toml), so it is imported plainly: a missing library is an
error of the environment, not a reason to skip the only check written by someone else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import http_message_signatures as hms
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import algorithms

from camhub_protocol import httpsig

KEY = Ed25519PrivateKey.generate()
KEYID = "agency-interop"
BODY = b'{"hub":"h","kind":"clip"}'


@dataclass
class Message:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def resolver() -> object:
    return hms.MappingKeyResolver(public_keys={KEYID: KEY.public_key()}, private_keys={KEYID: KEY})


def test_library_signed_request_verifies_here() -> None:
    created = int(time.time())
    msg = Message(
        "POST",
        "https://hub.local:8443/api/agency/v1/requests?x=1",
        {"Content-Type": "application/json", "Content-Digest": httpsig.content_digest(BODY)},
    )
    signer = hms.HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver())
    signer.sign(
        msg,
        key_id=KEYID,
        created=datetime.fromtimestamp(created, UTC),
        expires=datetime.fromtimestamp(created + 300, UTC),
        nonce=httpsig.new_nonce(),
        label="sig1",
        tag=httpsig.TAG,
        covered_component_ids=("@method", "@authority", "@path", "@query", "content-digest", "content-type"),
        use_existing_digest=True,
    )
    verified = httpsig.verify_request(
        method="POST",
        authority="hub.local:8443",
        path="/api/agency/v1/requests",
        query="x=1",
        headers=msg.headers,
        body=BODY,
        now=created,
        resolve_key=lambda k: KEY.public_key() if k == KEYID else None,
        nonce_check=lambda *_: True,
    )
    assert verified.keyid == KEYID


def test_our_signed_request_verifies_with_library() -> None:
    base = {"Content-Type": "application/json"}
    extra = httpsig.sign_request(
        method="POST",
        authority="hub.local:8443",
        path="/api/agency/v1/requests",
        query="x=1",
        headers=base,
        body=BODY,
        private_key=KEY,
        keyid=KEYID,
        created=int(time.time()),
    )
    msg = Message("POST", "https://hub.local:8443/api/agency/v1/requests?x=1", {**base, **dict(extra)})
    verifier = hms.HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver())
    results = verifier.verify(msg, expect_tag=httpsig.TAG, body=BODY)
    assert len(results) == 1 and results[0].parameters["keyid"] == KEYID
