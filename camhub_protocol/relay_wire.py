"""What the relay and a hub say to each other over NATS (PROTOCOL.md §7), shared by `relay/` and `hub/`.

Subjects (NATS tokens; hub ids and cells are base64url / geohash, which never hold `.`, `*` or `>`):

    camhub.q.hub.<hub_id>      JetStream, stream CAMHUB_QUEUE (work queue): queued agency requests (§7.2)
    camhub.q.area.<cell>       JetStream, stream CAMHUB_AREAS (limits): queued area requests (§7.4)
    camhub.call.hub.<hub_id>   core request/reply: every call forwarded live to one hub (§7.3)
    camhub.call.area.<cell>    core request/reply with many answers: area polls (§7.4)

and two JetStream key-value buckets: `camhub_hubs` (hub_id → what the hub registered: its §1
document and `respond_by_s`) and `camhub_index` (`<hub_id or area.cell>.<id>` → the relay's index of
queued requests, §7.2).

An HTTP request travels as one NATS message: the body as the payload, the rest in NATS headers
(`Camhub-Method`, `Camhub-Path` — the raw path as received, `/hubs/{hub_id}` prefix included, since
the agency signed it —, `Camhub-Query`, and `Camhub-Fields`, the header field lines as a JSON list of
`[name, value]`). An answer is one message the same way (`Camhub-Status`, `Camhub-Fields`), or for a
delivery a stream of messages (`Stream`): a head with `Camhub-Credit` (the subject the relay grants
more chunks on), chunks numbered by `Camhub-Seq`, and a last message with `Camhub-End` (`ok`, or
`abort <code>`). The hub sends at most `WINDOW` chunks that the relay has not yet passed on, so the
relay holds at most WINDOW × CHUNK bytes of a delivery at a time and none afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from camhub_protocol import httpsig
from camhub_protocol.errors import ConsentError, SignatureError
from camhub_protocol.structured_fields import InnerList, parse_dictionary

QUEUE_STREAM = "CAMHUB_QUEUE"
AREA_STREAM = "CAMHUB_AREAS"
HUBS_BUCKET = "camhub_hubs"
INDEX_BUCKET = "camhub_index"

# Delivery chunks over NATS: under the default 1 MB max_payload with room for headers; two per gate
# check (the hub's gate runs between its 1 MiB file chunks, PROTOCOL §2.3).
CHUNK = 512 * 1024
WINDOW = 8  # chunks in flight per transfer: 4 MiB
STREAM_IDLE_S = 30.0  # a transfer that gets no credit (or no chunk) for this long is abandoned

MAX_BODY_BYTES = httpsig.MAX_BODY_BYTES
AREA_RESPOND_BY_S = 7 * 86400
DEFAULT_RESPOND_BY_S = 7 * 86400
# Every area poll waits this long for the hubs of the cell, whatever they answer (§7.4).
AREA_POLL_WAIT_S = 0.5

H_METHOD = "Camhub-Method"
H_PATH = "Camhub-Path"
H_QUERY = "Camhub-Query"
H_FIELDS = "Camhub-Fields"
H_REMOTE = "Camhub-Remote"
H_STATUS = "Camhub-Status"
H_CREDIT = "Camhub-Credit"
H_SEQ = "Camhub-Seq"
H_END = "Camhub-End"
H_HUB = "Camhub-Hub"

# A geohash cell of 5 characters (≈ 4.9 km); the alphabet leaves out a, i, l, o.
CELL_RE = re.compile(r"[0-9b-hjkmnp-z]{5}")
# A hub id is an RFC 7638 thumbprint: 43 base64url characters.
HUB_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")
REQUEST_ID_RE = re.compile(r"[0-9a-f]{32}")


def queue_subject(hub_id: str) -> str:
    return f"camhub.q.hub.{hub_id}"


def area_subject(cell: str) -> str:
    return f"camhub.q.area.{cell}"


def call_subject(hub_id: str) -> str:
    return f"camhub.call.hub.{hub_id}"


def area_call_subject(cell: str) -> str:
    return f"camhub.call.area.{cell}"


# NATS inbox prefixes (§7.7). The relay's replies land under `_RELAY`, a hub's under
# `_INBOX.<hub_id>`: so a hub's NATS user can be allowed to answer the relay and to read only its own
# inbox, and one hub's credentials never see another hub's calls, queue or replies.
RELAY_INBOX_PREFIX = "_RELAY"


def hub_inbox_prefix(hub_id: str) -> str:
    return f"_INBOX.{hub_id}"


def hub_permissions(hub_id: str, area: str | None = None) -> dict[str, dict[str, list[str]]]:
    """The NATS permissions a hub's user needs, and no more (§7.7): answer calls to itself (and its
    area cell), register itself, and pull its own durable consumer on its own queue subject."""
    durable = consumer_name(hub_id)
    publish = [
        f"{RELAY_INBOX_PREFIX}.>",  # answers to the relay's calls, and delivery chunks
        f"$KV.{HUBS_BUCKET}.{hub_id}",
        f"$JS.API.STREAM.INFO.KV_{HUBS_BUCKET}",
    ]
    subscribe = [call_subject(hub_id), f"{hub_inbox_prefix(hub_id)}.>"]
    queues = [(QUEUE_STREAM, queue_subject(hub_id))]
    if area is not None:
        subscribe.append(area_call_subject(area))
        queues.append((AREA_STREAM, area_subject(area)))
    for stream, subject in queues:
        publish += [
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            # The create subject names the filter (nats-server ≥ 2.9): only its own subject.
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{subject}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def consumer_name(hub_id: str) -> str:
    """The hub's durable consumer on a stream (one per hub: the queue is a work queue)."""
    return f"hub-{hub_id}"


def index_key(scope: str, request_id: str) -> str:
    """`scope` is a hub id or `area.<cell>`."""
    return f"{scope}.{request_id}"


def request_id(keyid: str, nonce: str) -> str:
    """§7.2: the id of a request that came through a relay, derived from its signature's keyid and nonce."""
    digest = hashlib.sha256(b"camhub-relay-request-v1\0" + keyid.encode() + b"\0" + nonce.encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class SignatureClaims:
    """What a request's `Signature-Input` claims (unverified: the relay never verifies, §7.1)."""

    keyid: str
    nonce: str
    created: int


def claims(fields: list[tuple[str, str]]) -> SignatureClaims:
    """Parse `sig1`'s keyid, nonce and created from the header fields; SignatureError if absent."""
    lines = [v for k, v in fields if k.lower() == "signature-input"]
    if not lines:
        raise SignatureError("signature_missing", "no Signature-Input")
    member = parse_dictionary(", ".join(lines)).get(httpsig.LABEL)
    if not isinstance(member, InnerList):
        raise SignatureError("signature_malformed", f"no {httpsig.LABEL} in Signature-Input")
    keyid, nonce, created = (member.params.get(k) for k in ("keyid", "nonce", "created"))
    if not isinstance(keyid, str) or not isinstance(nonce, str) or not 0 < len(keyid) <= 128:
        raise SignatureError("signature_malformed", "sig1 needs a keyid and a nonce")
    if not 0 < len(nonce) <= 256 or isinstance(created, bool) or not isinstance(created, int):
        raise SignatureError("signature_malformed", "sig1 needs a nonce and an integer created")
    return SignatureClaims(keyid, nonce, created)


@dataclass
class Envelope:
    """One HTTP request or answer as it travels over NATS."""

    method: str = ""
    path: str = ""
    query: str | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    status: int = 0
    remote: str = ""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.fields if k.lower() == lname), None)

    def request_headers(self) -> dict[str, str]:
        out = {H_METHOD: self.method, H_PATH: self.path, H_FIELDS: json.dumps(self.fields)}
        if self.query is not None:
            out[H_QUERY] = self.query
        if self.remote:
            out[H_REMOTE] = self.remote
        return out

    def answer_headers(self) -> dict[str, str]:
        return {H_STATUS: str(self.status), H_FIELDS: json.dumps(self.fields)}

    @classmethod
    def from_request(cls, headers: dict[str, str] | None, body: bytes) -> Envelope:
        headers = headers or {}
        method, path = headers.get(H_METHOD, ""), headers.get(H_PATH, "")
        if not method or not path.startswith("/"):
            raise ConsentError("bad_envelope", "a relayed call needs a method and a path", 400)
        return cls(method, path, headers.get(H_QUERY), _fields(headers), body, 0, headers.get(H_REMOTE, ""))

    @classmethod
    def from_answer(cls, headers: dict[str, str] | None, body: bytes) -> Envelope:
        headers = headers or {}
        status = headers.get(H_STATUS, "")
        if not (status.isascii() and status.isdigit() and 100 <= int(status) <= 599):
            raise ConsentError("bad_envelope", "an answer needs a status", 502)
        return cls(fields=_fields(headers), body=body, status=int(status))


def _fields(headers: dict[str, str]) -> list[tuple[str, str]]:
    try:
        raw = json.loads(headers.get(H_FIELDS, "[]"))
    except ValueError as exc:
        raise ConsentError("bad_envelope", "Camhub-Fields is not JSON", 400) from exc
    if not isinstance(raw, list) or len(raw) > 128:
        raise ConsentError("bad_envelope", "Camhub-Fields must be a list of at most 128 fields", 400)
    out = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(x, str) and len(x) <= 8190 for x in item)
        ):
            raise ConsentError("bad_envelope", "each field is [name, value]", 400)
        out.append((item[0], item[1]))
    return out


def json_answer(status: int, doc: object, extra: list[tuple[str, str]] | None = None) -> Envelope:
    body = json.dumps(doc).encode()
    return Envelope(fields=[("Content-Type", "application/json"), *(extra or [])], body=body, status=status)


def error_answer(exc: ConsentError) -> Envelope:
    extra = []
    if exc.retry_after is not None:
        extra.append(("Retry-After", str(max(1, int(exc.retry_after + 0.999)))))
    return json_answer(exc.status, exc.to_json(), extra)
