"""Every rule of PROTOCOL.md §2.1 (an agency's request body) and §3 (owner decisions), one case each,
over HTTP to a real hub: the status, the error code, the audit entry, no media — and for what is
accepted, the exact answer and the exact audit entry.

test_api_rejections.py covers each *kind* of refusal; this module walks the rules one by one and their
boundaries (2000 characters is fine, 2001 is not), so that changing any single check in
`hub/consent/requests.py` or `decisions.py` fails a test here (`make mutate`, docs/MUTATION.md). The
hub runs in the test process (`ThreadHub`), so it can also move the consent service's clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import httpsig, jws, rfc3339
from camhub_protocol.errors import ConsentError
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from tests.consent.flow_env import (
    CAMERA,
    DECISION_TYP,
    HubEnv,
    Response,
    assert_refused,
    http,
    new_agency,
    start_hub_env,
)

PATH = "/api/agency/v1/requests"
DAY = 86400


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    # One agency files far more than the default 30 requests an hour, and the module makes far more
    # than 200 calls from 127.0.0.1 in a few seconds: both limits have their own tests
    # (test_agency_limits.py, tests/security/test_floods.py); each rule here needs a call of its own.
    env = start_hub_env(
        tmp_path_factory.mktemp("hub"), in_process=True, consent="agency_requests_per_hour = 100000\n",
        hub="rate_limit_per_s = 100000\nrate_limit_burst = 1000000\n",
    )  # fmt: skip
    try:
        yield env
    finally:
        env.stop()


def _doc(hub: HubEnv, /, **overrides: Any) -> dict[str, Any]:
    doc = json.loads(hub.request_body(hub.t0 + 10, hub.t0 + 70))
    doc.update(overrides)
    return doc


def _live(hub: HubEnv, seconds: Any = 60, /, **overrides: Any) -> dict[str, Any]:
    doc = _doc(hub, kind="live", start=None, end=None, live_max_seconds=seconds)
    doc.update(overrides)
    return doc


def _post(hub: HubEnv, doc: Any, **kwargs: Any) -> Response:
    return hub.signed("POST", PATH, json.dumps(doc).encode(), **kwargs)


def _accepted(hub: HubEnv, doc: dict[str, Any]) -> dict[str, Any]:
    r = _post(hub, doc)
    assert r.status == 202, (doc, r.body)
    return r.json()


# --- §2 the signature, checked against the request as the hub received it -------------------


def test_a_body_of_exactly_64_kib_is_not_too_large(hub: HubEnv) -> None:
    """§2: bodies *over* 64 KiB get 413; one of exactly 65536 bytes is read, verified and taken."""
    doc = json.dumps(_doc(hub)).encode()
    body = doc + b" " * (64 * 1024 - len(doc))  # trailing white space is still one JSON document
    assert len(body) == 64 * 1024
    r = hub.signed("POST", PATH, body)
    assert r.status == 202, r.body
    since = hub.last_seq()
    assert_refused(hub, hub.signed("POST", PATH, body + b" "), 413, "body_too_large", since)


def test_a_query_is_covered_and_checked_against_the_query_received(hub: HubEnv) -> None:
    """§2: where the URL has a query, `"@query"` must be covered, and what is verified is the query the
    hub received: the poll signed over its query answers; the same query left uncovered, or changed
    after signing, is 401."""
    rid = _accepted(hub, _doc(hub))["id"]
    path = f"{PATH}/{rid}"
    r = hub.signed("GET", path + "?v=1")
    assert r.status == 200 and r.json()["id"] == rid, r.body
    since = hub.last_seq()
    r = hub.signed("GET", path + "?v=1", components=["@method", "@authority", "@path"])
    assert_refused(hub, r, 401, "component_not_covered", since)
    headers = _sign_get(hub, path, query="v=1")
    since = hub.last_seq()
    assert_refused(hub, http("GET", hub.url + path + "?v=2", None, headers), 401, "bad_signature", since)


def test_a_covered_scheme_and_target_uri_are_those_of_the_url_reached(hub: HubEnv) -> None:
    """§2: the signature may cover more than the required components; a covered `"@scheme"` or
    `"@target-uri"` is verified against the URL the hub was reached at (plain http on loopback here),
    so the same signature made for https:// is 401."""
    rid = _accepted(hub, _doc(hub))["id"]
    path = f"{PATH}/{rid}"
    for extra in (["@scheme"], ["@target-uri"]):
        comps = ["@method", "@authority", "@path", *extra]
        r = http("GET", hub.url + path, None, _sign_get(hub, path, components=comps, scheme="http"))
        assert r.status == 200 and r.json()["id"] == rid, (extra, r.body)
        since = hub.last_seq()
        r = http("GET", hub.url + path, None, _sign_get(hub, path, components=comps, scheme="https"))
        assert_refused(hub, r, 401, "bad_signature", since)


def _sign_get(hub: HubEnv, path: str, *, query: str | None = None, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("scheme", "http")
    return dict(
        httpsig.sign_request(
            method="GET", authority=hub.authority, path=path, query=query, headers=[], body=b"",
            private_key=hub.agency.key, keyid=hub.agency.keyid, created=int(time.time()), **kwargs,
        )
    )  # fmt: skip


def test_a_queued_request_is_verified_while_created_is_at_most_the_queue_age_old(hub: HubEnv) -> None:
    """§7.2: a request a relay held may reach the hub after its `expires`; the uplink verifies it
    with `queued_max_age_s` (respond_by_days), so it is taken while `created` is at most that old and
    refused `signature_expired` beyond. Driven through `requests.authenticate` as the uplink calls it
    (the relay itself runs in a subprocess in tests/relay, which mutmut cannot see)."""
    from hub.consent import requests
    from hub.services import Services

    now = int(time.time())

    def verify(created: int, max_age: int | None) -> str:
        body = json.dumps(_doc(hub)).encode()
        headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
        headers += httpsig.sign_request(
            method="POST", authority=hub.authority, path=PATH, query=None, headers=headers, body=body,
            private_key=hub.agency.key, keyid=hub.agency.keyid, created=created, scheme="http",
        )  # fmt: skip
        msg = requests.SignedMessage(
            "POST", hub.authority, PATH, None, headers, body, "http", "relay", f"relay POST {PATH}"
        )

        async def run(s: Services) -> str:
            assert s.consent is not None
            try:
                verified = await requests.authenticate(s.consent, msg, queued_max_age_s=max_age)
            except ConsentError as exc:
                return exc.code
            assert (verified.keyid, verified.created) == (hub.agency.keyid, created)
            return "verified"

        return hub.hub.call(run)

    # expires (created + 300 s) passed an hour ago: good from a queue a day deep, not from a live call.
    assert verify(now - 3600, DAY) == "verified"
    assert verify(now - 3600, None) == "signature_expired"
    assert verify(now - 3600, 1800) == "signature_expired"


def test_a_queued_request_over_64_kib_is_refused_413_before_its_signature_is_read(hub: HubEnv) -> None:
    """§2: bodies over 64 KiB get 413 `body_too_large` before any parsing, also one a relay's queue
    hands the hub (over HTTP the agency route already answers 413 from Content-Length; a queued
    request reaches `requests.authenticate` directly, as the uplink calls it). Counted like every
    refusal that proves nothing about its sender (§5), under the relay's route."""
    from hub.consent import requests
    from hub.services import Services

    body = b"{" + b" " * (64 * 1024) + b"}"
    msg = requests.SignedMessage(
        "POST", hub.authority, PATH, None, [("Content-Type", "application/json")], body, "http", "relay",
        f"relay POST {PATH}",
    )  # fmt: skip

    async def run(s: Services) -> tuple[str, int, str]:
        assert s.consent is not None
        with pytest.raises(ConsentError) as caught:
            await requests.authenticate(s.consent, msg, queued_max_age_s=DAY)
        return caught.value.code, caught.value.status, caught.value.detail

    since = hub.last_seq()
    code, status, detail = hub.hub.call(run)
    assert (code, status) == ("body_too_large", 413) and isinstance(detail, str) and detail, detail
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.rejected"]
    assert (entry["actor"], entry["data"]["code"], entry["data"]["status"]) == (
        "unauthenticated",
        "body_too_large",
        413,
    ), entry
    assert entry["data"]["route"] == f"relay POST {PATH}", entry


# --- §2.1 the request body -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "raw", "code"),
    [
        ("not UTF-8", b'{"hub": "\xff"}', "invalid_json"),
        ("not JSON", b"{", "invalid_json"),
        ("NaN", b'{"x": NaN}', "invalid_json"),
        ("Infinity", b'{"x": -Infinity}', "invalid_json"),
        ("a duplicate member", b'{"hub": "a", "hub": "b"}', "invalid_json"),
        ("a list", b"[]", "invalid_json"),
        ("a string", b'"x"', "invalid_json"),
        ("nested too deep", b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
    ],
)
def test_body_that_is_not_one_json_object(hub: HubEnv, case: str, raw: bytes, code: str) -> None:
    since = hub.last_seq()
    r = hub.signed("POST", PATH, raw)
    entry = assert_refused(hub, r, 400, code, since)
    assert entry["actor"] == f"agency:{hub.agency.keyid}"


def test_unknown_and_missing_fields(hub: HubEnv) -> None:
    since = hub.last_seq()
    r = _post(hub, _doc(hub, zeta=1, alpha=2))
    assert_refused(hub, r, 400, "unknown_field", since)
    assert "alpha, zeta" in r.json()["detail"]
    since = hub.last_seq()
    r = _post(hub, _doc(hub, legal_basis={"type": "consent", "reference": None, "x": 1}))
    assert_refused(hub, r, 400, "unknown_field", since)
    assert "legal_basis.x" in r.json()["detail"]
    for missing in ("hub", "case_id", "kind", "cameras", "reason", "legal_basis", "contact"):
        doc = _doc(hub)
        del doc[missing]
        since = hub.last_seq()
        r = _post(hub, doc)
        assert_refused(hub, r, 400, "missing_field", since)
        assert missing in r.json()["detail"], missing
    # start, end and live_max_seconds may be left out where they must be null.
    doc = _live(hub)
    for absent in ("start", "end"):
        del doc[absent]
    _accepted(hub, doc)
    doc = _doc(hub)
    del doc["live_max_seconds"]
    _accepted(hub, doc)


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("hub not a string", {"hub": 5}),
        ("case_id not a string", {"case_id": 5}),
        ("case_id too long", {"case_id": "c" * 201}),
        ("reason not a string", {"reason": None}),
        ("reason too long", {"reason": "r" * 2001}),
        ("contact not a string", {"contact": ["x"]}),
        ("contact too long", {"contact": "c" * 2001}),
        ("legal_basis not an object", {"legal_basis": "warrant"}),
        ("legal_basis.type unknown", {"legal_basis": {"type": "court", "reference": None}}),
        ("legal_basis.type missing", {"legal_basis": {"reference": None}}),
        ("legal_basis.reference not a string", {"legal_basis": {"type": "warrant", "reference": 7}}),
        ("legal_basis.reference too long", {"legal_basis": {"type": "warrant", "reference": "w" * 2001}}),
        ("cameras not a list", {"cameras": CAMERA}),
        ("cameras empty", {"cameras": []}),
        ("too many cameras", {"cameras": [f"c{i}" for i in range(65)]}),
        ("a camera id not a string", {"cameras": [CAMERA, 7]}),
        ("an empty camera id", {"cameras": [""]}),
        ("a camera id too long", {"cameras": ["c" * 129]}),
        ("a camera twice", {"cameras": [CAMERA, CAMERA]}),
        ("kind unknown", {"kind": "still"}),
        ("kind missing value", {"kind": None}),
        ("clip with live_max_seconds", {"live_max_seconds": 10}),
        ("clip without start", {"start": None}),
        ("clip with a local time", {"start": "2026-11-20T18:00:00+01:00"}),
        ("clip end before start", {"start": "2026-11-20T18:00:01Z", "end": "2026-11-20T18:00:00Z"}),
        ("clip end at start", {"start": "2026-11-20T18:00:00Z", "end": "2026-11-20T18:00:00Z"}),
        ("clip over 24 h", {"start": "2026-11-20T18:00:00Z", "end": "2026-11-21T18:00:01Z"}),
    ],
)
def test_each_field_rule(hub: HubEnv, case: str, overrides: dict[str, Any]) -> None:
    since = hub.last_seq()
    assert_refused(hub, _post(hub, _doc(hub, **overrides)), 400, "invalid_field", since)


@pytest.mark.parametrize(
    ("case", "seconds", "overrides"),
    [
        ("live with a start", 60, {"start": "2026-11-20T18:00:00Z"}),
        ("live with an end", 60, {"end": "2026-11-20T18:00:00Z"}),
        ("live seconds true", True, {}),
        ("live seconds a string", "60", {}),
        ("live seconds a float", 60.0, {}),
        ("live seconds 0", 0, {}),
        ("live seconds 3601", 3601, {}),
        ("live seconds null", None, {}),
    ],
)
def test_each_live_rule(hub: HubEnv, case: str, seconds: Any, overrides: dict[str, Any]) -> None:
    since = hub.last_seq()
    assert_refused(hub, _post(hub, _live(hub, seconds, **overrides)), 400, "invalid_field", since)


def test_boundaries_that_are_accepted(hub: HubEnv) -> None:
    for doc in (
        _doc(hub, case_id="c" * 200, reason="r" * 2000, contact="c" * 2000),
        _doc(hub, legal_basis={"type": "warrant", "reference": "w" * 2000}),
        _doc(hub, legal_basis={"type": "exigent", "reference": None}),
        _doc(hub, cameras=[f"c{i}" for i in range(64)]),
        _doc(hub, cameras=["c" * 128, "x"]),
        _doc(hub, start="2026-11-20T18:00:00Z", end="2026-11-21T18:00:00Z"),  # exactly 24 h
        _live(hub, 1),
        _live(hub, 3600),
        _doc(hub, cameras=["no-such-camera"]),  # §2.1: an unknown camera is not an error
    ):
        assert _accepted(hub, doc)["status"] == "pending"


def test_a_clip_may_end_at_the_hub_clock_but_not_after(hub: HubEnv) -> None:
    """§2.1: a clip's `end` may not be later than the hub's clock: equal to it is taken, a second
    after is 400 `invalid_field`."""
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    now = float(int(time.time()))
    consent.now = lambda: now
    try:
        assert _accepted(hub, _doc(hub, start=rfc3339.format(now - 60), end=rfc3339.format(now)))
        since = hub.last_seq()
        late = _doc(hub, start=rfc3339.format(now - 60), end=rfc3339.format(now + 1))
        assert_refused(hub, _post(hub, late), 400, "invalid_field", since)
    finally:
        consent.now = time.time


def test_a_live_request_answer_and_audit_entry(hub: HubEnv) -> None:
    """§2.1: a livestream request is taken like a clip; its `request.received` entry has its kind,
    cameras, case_id and `live_max_seconds`, and no times."""
    since = hub.last_seq()
    answer = _accepted(hub, _live(hub, 90, case_id="2026-8", cameras=[CAMERA, "garage"]))
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    assert {k: v for k, v in entry["data"].items() if k != "request_sha256"} == {
        "request_id": answer["id"],
        "kind": "live",
        "cameras": [CAMERA, "garage"],
        "start": None,
        "end": None,
        "live_max_seconds": 90,
        "case_id": "2026-8",
        "respond_by": answer["respond_by"],
    }


def test_an_empty_case_id_is_taken_and_kept_empty(hub: HubEnv) -> None:
    """§2.1: `case_id` is the agency's free text, at most 200 characters, "" included; the owner sees
    it as sent (the `request.received` entry), never a placeholder."""
    since = hub.last_seq()
    rid = _accepted(hub, _doc(hub, case_id=""))["id"]
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    assert (entry["data"]["request_id"], entry["data"]["case_id"]) == (rid, "")


def test_wrong_hub_and_wrong_content_type(hub: HubEnv) -> None:
    since = hub.last_seq()
    entry = assert_refused(hub, _post(hub, _doc(hub, hub=hub.hub_id + "x")), 400, "wrong_hub", since)
    assert entry["actor"] == f"agency:{hub.agency.keyid}"
    for ctype in ("text/plain", "application/jsonx", ""):
        since = hub.last_seq()
        r = hub.signed(
            "POST", PATH, json.dumps(_doc(hub)).encode(), content_type=ctype or "application/octet-stream"
        )
        entry = assert_refused(hub, r, 415, "unsupported_media_type", since)
        assert entry["data"]["status"] == 415
    # Parameters after the media type are fine.
    r = hub.signed(
        "POST", PATH, json.dumps(_doc(hub)).encode(), content_type="Application/JSON; charset=utf-8"
    )
    assert r.status == 202, r.body


def test_an_accepted_request_answer_and_audit_entry(hub: HubEnv) -> None:
    body = json.dumps(_doc(hub, case_id="2026-7")).encode()
    since = hub.last_seq()
    r = hub.signed("POST", PATH, body)
    assert r.status == 202, r.body
    answer = r.json()
    assert set(answer) == {"id", "status", "respond_by"} and answer["status"] == "pending"
    assert 20 <= len(answer["id"]) <= 24 and answer["id"][0].isalnum()
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    received = rfc3339.parse(entry["time"])
    assert abs(rfc3339.parse(answer["respond_by"]) - (received + 7 * DAY)) < 1.0  # 7 days (default)
    assert entry["actor"] == f"agency:{hub.agency.keyid}"
    assert entry["data"] == {
        "request_id": answer["id"],
        "request_sha256": hashlib.sha256(body).hexdigest(),
        "kind": "clip",
        "cameras": [CAMERA],
        "start": rfc3339.format(hub.t0 + 10),
        "end": rfc3339.format(hub.t0 + 70),
        "live_max_seconds": None,
        "case_id": "2026-7",
        "respond_by": answer["respond_by"],
    }
    assert hub.poll(answer["id"]).json() == answer  # what a poll says before any decision
    since = hub.last_seq()
    live = _accepted(hub, _live(hub, 90, cameras=[CAMERA, "garage"]))
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    assert (entry["data"]["kind"], entry["data"]["cameras"], entry["data"]["start"], entry["data"]["end"]) == (
        "live", [CAMERA, "garage"], None, None,
    )  # fmt: skip
    assert entry["data"]["live_max_seconds"] == 90 and entry["data"]["request_id"] == live["id"]


def test_a_request_id_is_22_base64url_characters_starting_with_a_letter_or_digit() -> None:
    """§2.1: 128 random bits, base64url, never a leading `-` or `_`. One id in 32 would start with
    one of those by chance, so thousands are drawn (a miss by chance: (62/64)**4000, about 1e-55)."""
    import re

    from hub.consent import requests

    ids = [requests.new_id() for _ in range(4000)]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{21}", i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_a_request_sealed_to_the_hub_is_taken_and_its_digest_is_of_the_json_inside(hub: HubEnv) -> None:
    """§7.6: an agency request may be sealed to the hub (`application/age`, what a relay carries;
    accepted on the LAN too). The signature covers the sealed bytes; the digest the owner signs
    over is of the JSON inside."""
    from camhub_protocol import sealed_bodies

    inner = json.dumps(_doc(hub, case_id="sealed-1")).encode()
    recipient = http("GET", hub.url + "/api/v1/hub").json()["recipient"]
    sealed = sealed_bodies.seal(inner, recipient)
    since = hub.last_seq()
    r = hub.signed("POST", PATH, sealed, content_type=sealed_bodies.CONTENT_TYPE)
    assert r.status == 202, r.body
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
    assert entry["data"]["request_sha256"] == hashlib.sha256(inner).hexdigest(), entry
    assert entry["data"]["case_id"] == "sealed-1" and entry["data"]["request_id"] == r.json()["id"]


def test_a_queued_request_is_judged_by_its_respond_by_and_as_an_area_request(hub: HubEnv) -> None:
    """§7.2: a request the hub takes from a relay's queue comes with its respond_by (the signature's
    created + respond_by_days); at that instant or later it is refused 400 `respond_by_passed`,
    before it, taken, by the §2.1 rules (an `end` in the future is refused). §7.4: an area request
    asks for every camera of the hub. Driven through `requests.submit` as the uplink calls it once
    the signature verified (the relay itself runs in a subprocess in tests/relay, which mutmut
    cannot see)."""
    from hub.consent import requests
    from hub.services import Services

    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    now = time.time()
    verified = httpsig.Verified(hub.agency.keyid, int(now), int(now) + 300, "n", (), "")
    cell = "cell-1"

    def take(
        doc: dict[str, Any], respond_by: float, rid: str, area: tuple[str, tuple[str, ...]] | None = None
    ) -> tuple[str, int, str]:
        msg = requests.SignedMessage(
            "POST", hub.authority, PATH, None, [("Content-Type", "application/json")],
            json.dumps(doc).encode(), "http", "relay", f"relay POST {PATH}",
        )  # fmt: skip

        async def run(s: Services) -> tuple[str, int, str]:
            try:
                await requests.submit(
                    s.consent, msg, verified, request_id=rid, respond_by=respond_by, area=area
                )
            except ConsentError as exc:
                assert isinstance(exc.detail, str) and exc.detail, exc.detail
                return exc.code, exc.status, exc.detail
            return "taken", 202, ""

        return hub.hub.call(run)

    consent.now = lambda: now
    try:
        assert take(_doc(hub), now, "q" * 32)[:2] == ("respond_by_passed", 400)
        assert take(_doc(hub), now + 0.001, "p" * 32)[0] == "taken"
        future = _doc(hub, end=rfc3339.format(int(now) + 60))
        assert take(future, now + DAY, "f" * 32)[:2] == ("invalid_field", 400)
        area_doc = {k: v for k, v in _doc(hub).items() if k not in ("hub", "cameras", "live_max_seconds")}
        since = hub.last_seq()
        assert take({**area_doc, "area": cell}, now + DAY, "a" * 32, (cell, (CAMERA, "garage")))[0] == "taken"
        (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.received"]
        assert (entry["data"]["request_id"], entry["data"]["cameras"]) == ("a" * 32, [CAMERA, "garage"]), (
            entry
        )
        assert entry["data"]["respond_by"] == rfc3339.format(now + DAY), entry  # the queue's, not 7 days
        assert take({**area_doc, "area": "cell-2"}, now + DAY, "b" * 32, (cell, (CAMERA,)))[0] == "wrong_area"
        area_future = {**area_doc, "area": cell, "end": rfc3339.format(int(now) + 60)}
        assert take(area_future, now + DAY, "c" * 32, (cell, (CAMERA,)))[:2] == ("invalid_field", 400)
    finally:
        consent.now = time.time


def test_rejections_are_audited_with_what_was_claimed(hub: HubEnv, tmp_path: Path) -> None:
    stranger = new_agency(tmp_path / "stranger")
    since = hub.last_seq()
    r = _post(hub, _doc(hub), agency=stranger)
    entry = assert_refused(hub, r, 401, "unknown_key", since)
    assert entry["actor"] == "unauthenticated"
    assert entry["data"] == {
        "code": "unknown_key",
        "status": 401,
        "method": "POST",
        "path": PATH,
        "remote": "127.0.0.1",
        "claimed_keyid": stranger.keyid,
        # A refusal that proves nothing about its sender is grouped (PROTOCOL §5): the group's route
        # and its count (every one is its own entry here: rejection_audit_window_s = 0).
        "route": f"POST {PATH}",
        "count": 1,
    }
    # A Signature-Input that does not parse, or whose keyid is no string: nothing is claimed.
    for value in ('sig1=("@method";keyid="x"', "sig1=();keyid=5", 'sig2=();keyid="x"'):
        since = hub.last_seq()

        def tamper(headers: dict[str, str], value: str = value) -> None:
            headers["Signature-Input"] = value

        r = _post(hub, _doc(hub), mutate=tamper)
        assert r.status == 401 and r.is_json_error, r.body
        (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.rejected"]
        assert entry["actor"] == "unauthenticated" and "claimed_keyid" not in entry["data"], (value, entry)
    # A claimed keyid is cut at 128 characters in the entry.
    since = hub.last_seq()

    def long_keyid(headers: dict[str, str]) -> None:
        headers["Signature-Input"] = headers["Signature-Input"].replace(hub.agency.keyid, "k" * 200)

    r = _post(hub, _doc(hub), mutate=long_keyid)
    entry = assert_refused(hub, r, 401, "unknown_key", since)
    assert entry["data"]["claimed_keyid"] == "k" * 128
    # The route is the router's pattern, never the raw path (which a flood could vary without end).
    since = hub.last_seq()
    r = hub.signed("GET", f"{PATH}/{'Q' * 22}", agency=stranger)
    entry = assert_refused(hub, r, 401, "unknown_key", since)
    assert entry["data"]["route"] == "GET /api/agency/v1/requests/{id}", entry
    # A long path is cut in the entry (the log is not a place to store what an attacker sends).
    since = hub.last_seq()
    r = hub.signed("GET", PATH + "/" + "x" * 1000)
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "request.rejected"]
    assert r.status == 404 and entry["data"]["path"] == (PATH + "/" + "x" * 1000)[:512]


def test_poll_of_someone_elses_or_no_request(hub: HubEnv, tmp_path: Path) -> None:
    rid = _accepted(hub, _doc(hub))["id"]
    other = new_agency(tmp_path / "other")
    hub.add_agency(other, "Other PD")
    since = hub.last_seq()
    theirs = hub.poll(rid, agency=other)
    entry = assert_refused(hub, theirs, 404, "not_found", since)
    assert entry["actor"] == f"agency:{other.keyid}" and entry["data"]["status"] == 404
    missing = hub.poll("A" * 22)
    assert (missing.status, missing.body) == (theirs.status, theirs.body)
    # An id longer than any id is looked up cut, not refused differently.
    assert hub.poll(rid + "x" * 200).status == 404
    assert hub.poll(rid).json()["id"] == rid


# --- §3 owner decisions: the common rules -----------------------------------------------------


def _request(hub: HubEnv, **overrides: Any) -> tuple[str, str]:
    body = json.dumps(_doc(hub, **overrides)).encode()
    r = hub.signed("POST", PATH, body)
    assert r.status == 202, r.body
    return r.json()["id"], hashlib.sha256(body).hexdigest()


def _decline(hub: HubEnv, rid: str, sha: str) -> dict[str, Any]:
    return {"decision": "decline", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid}


def _raw_jws(payload: Any, key: Ed25519PrivateKey, typ: str = DECISION_TYP) -> str:
    kid = jwk_thumbprint(okp_public_jwk(key.public_key()))
    return jws.sign(json.dumps(payload).encode(), key, kid, typ)


def _payload(hub: HubEnv, fields: dict[str, Any], /, **overrides: Any) -> dict[str, Any]:
    payload = {"v": 1, "hub": hub.hub_id, **fields, "issued_at": rfc3339.format(int(time.time())),
               "jti": base64.urlsafe_b64encode(hashlib.sha256(str(time.time_ns()).encode()).digest()).decode()}  # fmt: skip
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not ...}


def _rejected(hub: HubEnv, compact: str, status: int, code: str) -> dict[str, Any]:
    since = hub.last_seq()
    return assert_refused(hub, hub.post_decision(compact), status, code, since, "decision.rejected")


@pytest.mark.parametrize(
    ("case", "overrides", "code"),
    [
        ("no v", {"v": ...}, "invalid_decision"),
        ("v 2", {"v": 2}, "invalid_decision"),
        ("v true", {"v": True}, "invalid_decision"),
        ("v text", {"v": "1"}, "invalid_decision"),
        ("decision unknown", {"decision": "approve-all"}, "invalid_decision"),
        ("decision a list", {"decision": ["decline"]}, "invalid_decision"),
        ("a member decline may not carry", {"subject": {}}, "invalid_decision"),
        ("no jti", {"jti": ...}, "invalid_decision"),
        ("empty jti", {"jti": ""}, "invalid_decision"),
        ("jti too long", {"jti": "j" * 257}, "invalid_decision"),
        ("jti a number", {"jti": 7}, "invalid_decision"),
        ("no issued_at", {"issued_at": ...}, "invalid_decision"),
        ("issued_at not RFC 3339", {"issued_at": "2026-11-20 18:00:00"}, "invalid_decision"),
        ("hub a number", {"hub": 1}, "invalid_decision"),
        ("no hub", {"hub": ...}, "invalid_decision"),
        ("another hub", {"hub": "h" * 43}, "wrong_hub"),
    ],
)
def test_each_common_decision_rule(hub: HubEnv, case: str, overrides: dict[str, Any], code: str) -> None:
    rid, sha = _request(hub)
    payload = _payload(hub, _decline(hub, rid, sha), **overrides)
    entry = _rejected(hub, _raw_jws(payload, hub.owner), 403 if code == "wrong_hub" else 400, code)
    # Refused before its jti was spent, so anyone who saw the signed JWS could have sent it: counted
    # like an unverified one (no owner actor; the kid it was signed with is in the data).
    assert entry["actor"] == "unauthenticated" and entry["data"]["kid"] == hub.owner_kid
    assert (entry["data"]["route"], entry["data"]["count"]) == ("POST /api/v1/decisions", 1)
    # The request is still open: the refused decision decided nothing.
    assert hub.decide(_decline(hub, rid, sha)).status == 201


def test_the_signature_and_its_key(hub: HubEnv) -> None:
    rid, sha = _request(hub)
    payload = _payload(hub, _decline(hub, rid, sha))
    # Not a JWS object payload: a JSON list signed properly.
    entry = _rejected(hub, _raw_jws([payload], hub.owner), 400, "invalid_decision")
    assert entry["actor"] == "unauthenticated"
    # Signed by another key under the owner's kid.
    kid = hub.owner_kid
    forged = jws.sign(json.dumps(payload).encode(), Ed25519PrivateKey.generate(), kid, DECISION_TYP)
    entry = _rejected(hub, forged, 403, "jws_bad_signature")
    assert entry["actor"] == "unauthenticated" and "kid" not in entry["data"]
    # A key nobody enrolled.
    entry = _rejected(hub, _raw_jws(payload, Ed25519PrivateKey.generate()), 403, "unknown_owner_key")
    assert entry["actor"] == "unauthenticated"
    # Another typ.
    _rejected(hub, _raw_jws(payload, hub.owner, typ="JWT"), 400, "jws_bad_typ")
    # The decision itself still stands open, and the audit names what the refused one claimed.
    entry = _rejected(hub, _raw_jws({**payload, "v": 3}, hub.owner), 400, "invalid_decision")
    assert (entry["data"]["decision"], entry["data"]["request_id"], entry["data"]["jti"]) == (
        "decline", rid, payload["jti"],
    )  # fmt: skip
    # What a refused decision claims is cut to 256 characters each: anyone may send it (§5), and
    # the log is not theirs to fill.
    long = _payload(hub, {**_decline(hub, "r" * 300, sha)}, v=3, jti="j" * 300)
    entry = _rejected(hub, _raw_jws(long, hub.owner), 400, "invalid_decision")
    assert (entry["data"]["request_id"], entry["data"]["jti"]) == ("r" * 256, "j" * 256), entry
    assert hub.post_decision(_raw_jws(payload, hub.owner)).status == 201


def test_jti_is_spent_even_by_a_refused_decision(hub: HubEnv) -> None:
    rid, sha = _request(hub)
    refused = _payload(hub, {**_decline(hub, rid, sha), "request_sha256": "0" * 64})
    entry = _rejected(hub, _raw_jws(refused, hub.owner), 403, "request_digest_mismatch")
    # §5: verified with an active owner key and a new jti, the refusal is the owner's own act, so it
    # is logged on its own under the owner, not counted like a call that proves nothing.
    assert entry["actor"] == f"owner:{hub.owner_kid}", entry
    assert "route" not in entry["data"] and "count" not in entry["data"], entry
    again = _payload(hub, _decline(hub, rid, sha), jti=refused["jti"])
    _rejected(hub, _raw_jws(again, hub.owner), 403, "jti_replayed")
    # A jti of exactly 256 characters is fine.
    ok = _payload(hub, _decline(hub, rid, sha), jti="j" * 255 + str(time.time_ns() % 10))
    assert hub.post_decision(_raw_jws(ok, hub.owner)).status == 201


def test_a_key_revoked_after_its_decision_verified_is_refused_by_the_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§3 (issue 12): the signing key's state is read again inside the transaction that applies the
    decision. Another process (`camhub owner reset`) revoking the key after the signature verified,
    here right after the jti is spent, makes it 403 `owner_key_revoked`: the decision decides
    nothing, and the refusal is the owner's own (its jti was new)."""
    import sqlite3

    from hub.store import consent as q

    (tmp_path / "hub").mkdir()
    env = start_hub_env(tmp_path / "hub", footage=False, in_process=True)
    try:
        b = Ed25519PrivateKey.generate()
        b_kid = jwk_thumbprint(okp_public_jwk(b.public_key()))
        subject = {"public_jwk": okp_public_jwk(b.public_key()), "name": "racer"}
        assert env.decide({"decision": "enroll-key", "subject": subject}).status == 201
        rid, sha = _request(env)
        spend = q.use_jti

        def spend_then_revoke(conn: sqlite3.Connection, jti: str, now: float) -> bool:
            spent = spend(conn, jti, now)
            other = sqlite3.connect(env.data_dir / "camhub.sqlite", timeout=10)
            with other:
                other.execute("UPDATE owner_keys SET revoked_at = ? WHERE kid = ?", (now, b_kid))
            other.close()
            return spent

        monkeypatch.setattr(q, "use_jti", spend_then_revoke)
        entry = _rejected(env, env.sign(_decline(env, rid, sha), key=b), 403, "owner_key_revoked")
        monkeypatch.undo()
        assert entry["actor"] == f"owner:{b_kid}", entry
        assert env.poll(rid).json()["status"] == "pending"
        assert env.decide(_decline(env, rid, sha)).status == 201  # still open: nothing was decided
    finally:
        env.stop()


def test_a_trusted_agency_past_its_rate_limit_is_counted_not_logged_one_by_one(tmp_path: Path) -> None:
    """§5: a trusted agency's refused call is an audit entry of its own (actor `agency:<keyid>`),
    except a 429: rate-limited calls are counted like a flood, per route and code (`"route"`,
    `"count"`), under the agency's actor."""
    (tmp_path / "hub").mkdir()
    env = start_hub_env(
        tmp_path / "hub", footage=False, in_process=True, consent="agency_requests_per_hour = 1\n"
    )
    try:
        actor = f"agency:{env.agency.keyid}"
        since = env.last_seq()
        bad = env.signed("POST", PATH, json.dumps(_doc(env, kind="film")).encode())
        entry = assert_refused(env, bad, 400, "invalid_field", since)
        assert entry["actor"] == actor and "route" not in entry["data"] and "count" not in entry["data"], (
            entry
        )
        env.submit(env.t0 + 10, env.t0 + 20)  # the hour's one request (a refused body took none)
        since = env.last_seq()
        r = env.signed("POST", PATH, env.request_body(env.t0 + 10, env.t0 + 20))
        entry = assert_refused(env, r, 429, "rate_limited", since)
        assert entry["actor"] == actor, entry
        assert 0 < int(r.headers["Retry-After"]) <= 3600, r.headers  # §2.1: 429 with Retry-After
        assert (entry["data"]["route"], entry["data"]["count"]) == ("POST /api/agency/v1/requests", 1), entry
        # From a relay's queue the same refusal is counted under the route it came by (§7.2).
        from hub.consent import requests
        from hub.services import Services

        queued = requests.SignedMessage(
            "POST", env.authority, PATH, None, [("Content-Type", "application/json")],
            env.request_body(env.t0 + 10, env.t0 + 20), "http", "relay", f"relay POST {PATH}",
        )  # fmt: skip
        verified = httpsig.Verified(env.agency.keyid, int(time.time()), int(time.time()) + 300, "n", (), "")

        async def take(s: Services) -> str:
            try:
                await requests.submit(
                    s.consent, queued, verified, request_id="z" * 32, respond_by=time.time() + DAY
                )
            except ConsentError as exc:
                return exc.code
            return "taken"

        since = env.last_seq()
        assert env.hub.call(take) == "rate_limited"
        (entry,) = [e for e in env.audit_entries(since) if e["type"] == "request.rejected"]
        assert (entry["actor"], entry["data"]["route"]) == (actor, f"relay POST {PATH}"), entry
        # The quota is each agency's own: another agency still files its hour's request.
        other = new_agency(tmp_path / "other")
        env.add_agency(other, "Other PD")
        env.submit(env.t0 + 10, env.t0 + 20, agency=other)
    finally:
        env.stop()


def test_a_queued_request_the_hub_refused_answers_polls_as_refused(hub: HubEnv, tmp_path: Path) -> None:
    """§7.2: a queued request the hub refused after the agency's signature verified is answered to
    that agency's polls as `200 {"id", "status": "refused", "respond_by", "error", "detail"}`, and to
    anyone else's as the §2.2 404. (The refusal is stored as the uplink stores it; the relay path
    itself is tests/relay/test_relay_e2e.py's, a subprocess mutmut cannot see.)"""
    from hub.store import consent as q

    rid = "r" * 32  # relay_wire.request_id: 32 hex-like characters
    respond_by = time.time() + DAY
    refusal = q.RelayRefusal(rid, hub.agency.keyid, "wrong_hub", "hub is not this hub's hub_id", respond_by)
    hub.hub.call(lambda s: s.consent.store.run(q.insert_relay_refusal, refusal, time.time()))
    r = hub.poll(rid)
    assert r.status == 200, r.body
    assert r.json() == {
        "id": rid, "status": "refused", "respond_by": rfc3339.format(respond_by),
        "error": "wrong_hub", "detail": "hub is not this hub's hub_id",
    }  # fmt: skip
    other = new_agency(tmp_path / "other")
    hub.add_agency(other, "Other PD")
    since = hub.last_seq()
    assert_refused(hub, hub.signed("GET", f"{PATH}/{rid}", agency=other), 404, "not_found", since)


def test_issued_at_windows(hub: HubEnv) -> None:
    now = int(time.time())
    rid, sha = _request(hub)
    _rejected(
        hub, hub.sign(_decline(hub, rid, sha), issued_at=rfc3339.format(now + 90)), 403, "issued_in_future"
    )
    # 60 s is the allowance, and a decline may be old (not management).
    assert hub.decide(_decline(hub, rid, sha), issued_at=rfc3339.format(now + 45)).status == 201
    rid, sha = _request(hub)
    assert hub.decide(_decline(hub, rid, sha), issued_at=rfc3339.format(now - 3 * DAY)).status == 201
    # Management decisions: within 300 s either way.
    agency = new_agency(hub.tmp / f"mgmt-{now}")
    add = {
        "decision": "add-agency",
        "subject": {"name": "Late PD", "sig_jwk": agency.sig_jwk, "recipient": agency.recipient},
    }
    _rejected(hub, hub.sign(add, issued_at=rfc3339.format(now - 400)), 403, "stale_decision")
    _rejected(hub, hub.sign(add, issued_at=rfc3339.format(now + 70)), 403, "issued_in_future")
    assert hub.decide(add, issued_at=rfc3339.format(now - 250)).status == 201


# --- §3 approve, decline, revoke ---------------------------------------------------------------


def _approve(hub: HubEnv, rid: str, sha: str, **changes: Any) -> dict[str, Any]:
    fields = hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50)
    scope = {**fields["scope"], **changes.pop("scope", {})}
    fields = {**fields, "scope": scope, **changes}
    return {k: v for k, v in fields.items() if v is not ...}


@pytest.mark.parametrize(
    ("case", "changes", "status", "code"),
    [
        ("request_id a number", {"request_id": 5}, 400, "invalid_decision"),
        ("request_sha256 missing", {"request_sha256": ...}, 400, "invalid_decision"),
        ("recipient a list", {"recipient": ["x"]}, 400, "invalid_decision"),
        ("unknown request", {"request_id": "Z" * 22}, 403, "unknown_request"),
        ("another digest", {"request_sha256": "f" * 64}, 403, "request_digest_mismatch"),
        ("another recipient", {"recipient": "r" * 43}, 403, "recipient_mismatch"),
        ("no scope", {"scope": ...}, 400, "invalid_decision"),
        ("scope a list", {"scope": ["clip"]}, 400, "invalid_decision"),
        ("scope with more", {"scope": {"quality": "high"}}, 400, "invalid_decision"),
        ("scope cameras missing", {"scope": {"cameras": None}}, 400, "invalid_decision"),
        ("scope cameras empty", {"scope": {"cameras": []}}, 400, "invalid_decision"),
        ("scope camera not a string", {"scope": {"cameras": [1]}}, 400, "invalid_decision"),
        ("scope camera twice", {"scope": {"cameras": [CAMERA, CAMERA]}}, 400, "invalid_decision"),
        ("scope kind unknown", {"scope": {"kind": "still"}}, 400, "invalid_decision"),
        ("scope audio not a boolean", {"scope": {"audio": 1}}, 400, "invalid_decision"),
        (
            "scope kind live for a clip",
            {"scope": {"kind": "live", "start": None, "end": None, "live_max_seconds": 10}},
            403,
            "scope_exceeds_request",
        ),
        ("scope camera not asked", {"scope": {"cameras": ["garage"]}}, 403, "scope_exceeds_request"),
        ("scope live seconds on a clip", {"scope": {"live_max_seconds": 5}}, 400, "invalid_decision"),
        ("scope start not a time", {"scope": {"start": "soon"}}, 400, "invalid_decision"),
        ("scope end missing", {"scope": {"end": None}}, 400, "invalid_decision"),
        ("scope end at start", {"scope": {"end": "START"}}, 400, "invalid_decision"),
        ("scope before the request", {"scope": {"start": "T0+9"}}, 403, "scope_exceeds_request"),
        ("scope after the request", {"scope": {"end": "T0+71"}}, 403, "scope_exceeds_request"),
        ("not_after missing", {"not_after": ...}, 400, "invalid_decision"),
        ("not_after not a time", {"not_after": 1234}, 400, "invalid_decision"),
        ("not_after now", {"not_after": "NOW"}, 403, "not_after_passed"),
        ("not_after past 30 days", {"not_after": "30D+5"}, 403, "not_after_too_late"),
        ("max_fetches 0", {"max_fetches": 0}, 400, "invalid_decision"),
        ("max_fetches 101", {"max_fetches": 101}, 400, "invalid_decision"),
        ("max_fetches true", {"max_fetches": True}, 400, "invalid_decision"),
        ("max_fetches text", {"max_fetches": "3"}, 400, "invalid_decision"),
    ],
)
def test_each_approval_rule(hub: HubEnv, case: str, changes: dict[str, Any], status: int, code: str) -> None:
    rid, sha = _request(hub)
    now = int(time.time())
    times = {"START": rfc3339.format(hub.t0 + 20), "T0+9": rfc3339.format(hub.t0 + 9),
             "T0+71": rfc3339.format(hub.t0 + 71), "NOW": rfc3339.format(now - 1), "30D+5": rfc3339.format(now + 30 * DAY + 5)}  # fmt: skip
    raw_scope = changes.get("scope", {})  # never pop: the parameters are shared by every run
    changes = {k: times.get(v, v) if isinstance(v, str) else v for k, v in changes.items() if k != "scope"}
    if isinstance(raw_scope, dict):
        scope = {k: times.get(v, v) if isinstance(v, str) else v for k, v in raw_scope.items()}
        fields = _approve(hub, rid, sha, scope=scope, **changes)
    else:  # no scope at all, or not an object
        fields = {**_approve(hub, rid, sha, **changes), "scope": raw_scope}
        fields = {k: v for k, v in fields.items() if v is not ...}
    compact = hub.sign(fields, issued_at=rfc3339.format(now))
    entry = _rejected(hub, compact, status, code)
    assert entry["data"]["decision"] == "approve"
    # Refused: the request is still open for a proper decision.
    assert hub.decide(_approve(hub, rid, sha)).status == 201


def test_approval_boundaries_that_are_accepted(hub: HubEnv) -> None:
    now = int(time.time())
    rid, sha = _request(hub)
    # The whole asked range, upper-case digest, 30 days exactly, 100 fetches.
    fields = hub.approval(
        rid, sha.upper(), hub.t0 + 10, hub.t0 + 70, max_fetches=100, not_after=now + 30 * DAY
    )
    r = hub.decide(fields, issued_at=rfc3339.format(now))
    assert r.status == 201, r.body
    decision_id = r.json()["decision_id"]
    assert r.json() == {"decision_id": decision_id, "request_id": rid}
    # A second decision on the same request: it is no longer open.
    _rejected(hub, hub.sign(_decline(hub, rid, sha)), 403, "request_closed")
    # Without max_fetches the configured default (3) applies: the fourth fetch is refused.
    rid, sha = _request(hub)
    fields = hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 30)
    del fields["max_fetches"]
    assert hub.decide(fields).status == 201
    url = hub.wait_status(rid, "fulfilled")["deliveries"][0]["url"]
    for fetch in (1, 2, 3):
        r = hub.signed("GET", url.removeprefix(hub.url))
        assert r.status == 200, (fetch, r.body[:200])
    since = hub.last_seq()
    assert_refused(hub, hub.signed("GET", url.removeprefix(hub.url)), 403, "fetch_limit_reached", since)


def test_decision_answer_and_audit_entry(hub: HubEnv) -> None:
    rid, sha = _request(hub)
    compact = hub.sign(_decline(hub, rid, sha))
    since = hub.last_seq()
    r = hub.post_decision(compact)
    assert r.status == 201, r.body
    expected_id = base64.urlsafe_b64encode(hashlib.sha256(compact.encode()).digest()).rstrip(b"=").decode()
    assert r.json() == {"decision_id": expected_id, "request_id": rid}
    (entry,) = [e for e in hub.audit_entries(since) if e["type"] == "decision.accepted"]
    assert entry["actor"] == f"owner:{hub.owner_kid}"
    assert entry["data"] == {
        "decision_id": expected_id,
        "decision": "decline",
        "request_id": rid,
        "jws": compact,
    }
    # Stored as evidence (THREAT_MODEL, consent state): the JWS verbatim, its kind, key, request and
    # issued_at as signed, and when the hub accepted it (what the owner's Revoke list shows).
    signed = json.loads(jws.parse(compact, typ=DECISION_TYP).payload)
    row = hub.decision_row(expected_id)
    assert row is not None
    accepted_at = row.pop("accepted_at")
    assert row == {
        "id": expected_id, "kind": "decline", "kid": hub.owner_kid, "request_id": rid, "jws": compact,
        "issued_at": rfc3339.parse(signed["issued_at"]), "format": "jws",
    }  # fmt: skip
    assert isinstance(accepted_at, float) and abs(accepted_at - rfc3339.parse(entry["time"])) < 2.0
    # A JWS with surrounding whitespace is the same JWS.
    rid, sha = _request(hub)
    r = http("POST", hub.url + "/api/v1/decisions", b"\n" + hub.sign(_decline(hub, rid, sha)).encode() + b"\n ",
             {"Content-Type": "application/jose"})  # fmt: skip
    assert r.status == 201, r.body


def test_decline_rules(hub: HubEnv) -> None:
    rid, sha = _request(hub)
    _rejected(hub, hub.sign({**_decline(hub, rid, sha), "scope": {"kind": "clip"}}), 400, "invalid_decision")
    # A scope of null is no scope.
    assert hub.decide({**_decline(hub, rid, sha), "scope": None}).status == 201
    # Declined: closed for decisions, invisible to the agency (pending until respond_by).
    _rejected(hub, hub.sign(_approve(hub, rid, sha)), 403, "request_closed")
    assert hub.poll(rid).json()["status"] == "pending"


def test_a_request_past_respond_by_or_of_a_removed_agency_is_closed(hub: HubEnv, tmp_path: Path) -> None:
    rid, sha = _request(hub)
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    later = time.time() + 8 * DAY
    consent.now = lambda: time.time() + 8 * DAY
    try:
        compact = hub.sign(_approve(hub, rid, sha, not_after=rfc3339.format(later + 3600)),
                           issued_at=rfc3339.format(int(later)))  # fmt: skip
        _rejected(hub, compact, 403, "request_closed")
    finally:
        consent.now = time.time
    other = new_agency(tmp_path / "gone")
    hub.add_agency(other, "Gone PD")
    body = json.dumps(_doc(hub)).encode()
    r = hub.signed("POST", PATH, body, agency=other)
    rid, sha = r.json()["id"], hashlib.sha256(body).hexdigest()
    assert hub.decide({"decision": "remove-agency", "subject": {"keyid": other.keyid}}).status == 201
    fields = hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 50, agency=other)
    _rejected(hub, hub.sign(fields), 403, "request_closed")


def test_a_request_is_closed_for_decisions_from_the_instant_of_its_respond_by(hub: HubEnv) -> None:
    """§2.2: `pending` until `respond_by`, then `closed`; the hub decides with the same boundary, so
    at respond_by itself (to the microsecond of the stored value) the owner's decision is refused,
    and a moment before it is accepted."""
    from hub.store import consent as q

    rid, sha = _request(hub)
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    record = hub.hub.call(lambda services: services.consent.store.run(q.request, rid))
    assert record is not None
    respond_by = record.respond_by
    try:
        consent.now = lambda: respond_by
        _rejected(hub, hub.sign(_decline(hub, rid, sha)), 403, "request_closed")
        consent.now = lambda: respond_by - 0.001
        r = hub.post_decision(hub.sign(_decline(hub, rid, sha)))
        assert r.status == 201, r.body
    finally:
        consent.now = time.time


@pytest.mark.parametrize(
    ("case", "changes", "status", "code"),
    [
        ("no request_id", {"request_id": ...}, 400, "invalid_decision"),
        ("request_id a number", {"request_id": 3}, 400, "invalid_decision"),
        ("with a scope", {"scope": {"kind": "clip"}}, 400, "invalid_decision"),
        ("unknown request", {"request_id": "Q" * 22}, 403, "unknown_request"),
        ("another digest", {"request_sha256": "e" * 64}, 403, "request_digest_mismatch"),
        ("another recipient", {"recipient": "p" * 43}, 403, "recipient_mismatch"),
    ],
)
def test_each_revoke_rule(hub: HubEnv, case: str, changes: dict[str, Any], status: int, code: str) -> None:
    rid, sha = _request(hub)
    assert hub.decide(_approve(hub, rid, sha)).status == 201
    fields = {"decision": "revoke", "request_id": rid, **changes}
    entry = _rejected(hub, hub.sign({k: v for k, v in fields.items() if v is not ...}), status, code)
    assert entry["data"]["decision"] == "revoke"
    # Still revocable properly, naming the digest and recipient (both optional, both checked).
    r = hub.decide(
        {"decision": "revoke", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid}
    )
    assert r.status == 201, r.body
    assert r.json() == {"decision_id": r.json()["decision_id"], "request_id": rid}
    # Nothing left to revoke.
    _rejected(hub, hub.sign({"decision": "revoke", "request_id": rid}), 403, "no_active_grant")


def test_a_revoke_of_a_request_never_approved(hub: HubEnv) -> None:
    rid, _ = _request(hub)
    _rejected(hub, hub.sign({"decision": "revoke", "request_id": rid}), 403, "no_active_grant")


def test_wrong_content_type_for_a_decision(hub: HubEnv) -> None:
    r = http("POST", hub.url + "/api/v1/decisions", b"x.y.z", {"Content-Type": "text/plain"})
    assert (r.status, r.json()["error"]) == (415, "unsupported_media_type")


# --- §2.2-§2.3 what a fulfilled request shows, and each fetch ----------------------------------


def test_a_fulfilled_request_its_deliveries_and_each_fetch(hub: HubEnv) -> None:
    rid, sha = _request(hub, cameras=[CAMERA, "no-footage-cam"])
    since = hub.last_seq()
    fields = hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 30, cameras=[CAMERA, "no-footage-cam"])
    decision_id = hub.decide(fields).json()["decision_id"]
    state = hub.wait_status(rid, "fulfilled")
    # One delivery: the camera without footage gets none, and nothing says so.
    assert set(state) == {"id", "status", "respond_by", "deliveries"}
    (item,) = state["deliveries"]
    assert set(item) == {"url", "bytes", "sha256"}
    delivery_id = item["url"].rsplit("/", 1)[-1]
    assert item["url"] == f"{hub.url}/api/agency/v1/deliveries/{delivery_id}"
    # (other tests' approvals may still be building in the background: only this request's count)
    built = [
        e
        for e in hub.audit_entries(since)
        if e["type"] == "delivery.built" and e["data"]["request_id"] == rid
    ]
    assert len(built) == 1 and built[0]["actor"] == "hub"
    data = built[0]["data"]
    assert {k: data[k] for k in ("delivery_id", "request_id", "approval_id", "recipient", "camera", "start", "end")} == {
        "delivery_id": delivery_id, "request_id": rid, "approval_id": decision_id, "recipient": hub.agency.keyid,
        "camera": CAMERA, "start": rfc3339.format(hub.t0 + 20), "end": rfc3339.format(hub.t0 + 30),
    }  # fmt: skip
    # The clip is cut at keyframes (1 s apart here): at most one GOP more at each end.
    assert hub.t0 + 19 - 1e-3 <= rfc3339.parse(data["clip_start"]) <= hub.t0 + 20
    assert hub.t0 + 30 <= rfc3339.parse(data["clip_end"]) <= hub.t0 + 31 + 1e-3
    assert data["segments"] and all(set(s) == {"start", "end", "sha256"} for s in data["segments"])

    for fetch in (1, 2):
        since = hub.last_seq()
        r = hub.signed("GET", f"/api/agency/v1/deliveries/{delivery_id}")
        assert r.status == 200, r.body[:200]
        assert r.headers["Content-Type"] == "application/vnd.camhub.delivery+age"
        assert r.headers["Cache-Control"] == "no-store"
        assert (len(r.body), hashlib.sha256(r.body).hexdigest()) == (item["bytes"], item["sha256"])
        egress = [
            e
            for e in hub.audit_entries(since)
            if e["type"] == "egress.delivery" and e["data"]["request_id"] == rid
        ]
        assert len(egress) == 1 and egress[0]["actor"] == f"agency:{hub.agency.keyid}"
        assert egress[0]["data"] == {
            "delivery_id": delivery_id, "request_id": rid, "approval_id": decision_id, "camera": CAMERA,
            "sha256": item["sha256"], "bytes": item["bytes"], "fetch": fetch,
        }  # fmt: skip
        # §5: a checkpoint after every egress, covering it (signed once the transfer ended).
        deadline = time.monotonic() + hub.deadline_s
        while checkpoint_size(hub) <= egress[0]["seq"]:
            assert time.monotonic() < deadline, "no checkpoint after the egress"
            time.sleep(0.05)
    # The third fetch, opened as an agency does: age-decrypted, manifest verified, the clip named
    # after its camera, the approved range.
    (opened,) = hub.client().fetch(rid, hub.tmp / f"fetched-{rid}")
    assert opened["files"] == [f"clip-{CAMERA}.mp4", "audit-proof.json"]
    assert (opened["camera"], opened["start"], opened["end"]) == (
        CAMERA, rfc3339.format(hub.t0 + 20), rfc3339.format(hub.t0 + 30),
    )  # fmt: skip
    # No HEAD: it would spend a fetch without sending anything.
    assert hub.signed("HEAD", f"/api/agency/v1/deliveries/{delivery_id}").status == 405


def checkpoint_size(hub: HubEnv) -> int:
    """The size of the latest signed checkpoint in the database (written after every egress)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT MAX(tree_size) FROM audit_checkpoints").fetchone()
    finally:
        conn.close()
    return int(row[0])


def test_unknown_deliveries_look_alike(hub: HubEnv, tmp_path: Path) -> None:
    rid, sha = _request(hub)
    assert hub.decide(_approve(hub, rid, sha)).status == 201
    url = hub.wait_status(rid, "fulfilled")["deliveries"][0]["url"].removeprefix(hub.url)
    other = new_agency(tmp_path / "other")
    hub.add_agency(other, "Other PD")
    answers = []
    for path, agency in (
        (url, other),
        ("/api/agency/v1/deliveries/" + "D" * 22, None),
        (url + "x" * 200, None),
    ):
        since = hub.last_seq()
        r = hub.signed("GET", path, agency=agency)
        assert_refused(hub, r, 404, "not_found", since)
        answers.append(r.body)
    assert len(set(answers)) == 1
    # The rightful agency still has all its fetches.
    assert hub.signed("GET", url).status == 200


def test_a_live_grant_shows_its_url_and_end(hub: HubEnv) -> None:
    body = json.dumps(_live(hub, 120)).encode()
    r = hub.signed("POST", PATH, body)
    rid, sha = r.json()["id"], hashlib.sha256(body).hexdigest()
    not_after = int(time.time()) + 3600
    fields = {"decision": "approve", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid,
              "scope": {"kind": "live", "cameras": [CAMERA], "start": None, "end": None, "live_max_seconds": 120},
              "max_fetches": 1, "not_after": rfc3339.format(not_after)}  # fmt: skip
    r = hub.decide(fields)
    assert r.status == 201, r.body
    state = hub.poll(rid).json()
    assert state == {
        "id": rid, "status": "live", "respond_by": state["respond_by"],
        "live": {"url": f"{hub.url}/api/agency/v1/live/{r.json()['decision_id']}", "not_after": rfc3339.format(not_after)},
    }  # fmt: skip
    # Live approvals, one rule at a time on a fresh request each: each refused, then the request is
    # still open for a valid one (here, exactly one second).
    for scope_change, status, code in (
        ({"live_max_seconds": 0}, 400, "invalid_decision"),
        ({"live_max_seconds": 121}, 403, "scope_exceeds_request"),
        ({"live_max_seconds": None}, 400, "invalid_decision"),
        ({"live_max_seconds": True}, 400, "invalid_decision"),
        ({"live_max_seconds": "60"}, 400, "invalid_decision"),
        ({"live_max_seconds": 60.0}, 400, "invalid_decision"),
        ({"start": rfc3339.format(hub.t0)}, 400, "invalid_decision"),
        ({"end": rfc3339.format(hub.t0)}, 400, "invalid_decision"),
        ({"cameras": ["garage"]}, 403, "scope_exceeds_request"),
        ({"kind": "clip", "live_max_seconds": None}, 403, "scope_exceeds_request"),
    ):
        body = json.dumps(_live(hub, 120)).encode()
        rid2 = hub.signed("POST", PATH, body).json()["id"]
        f2 = {**fields, "request_id": rid2, "request_sha256": hashlib.sha256(body).hexdigest(),
              "scope": {**fields["scope"], **scope_change}}  # fmt: skip
        _rejected(hub, hub.sign(f2), status, code)
        f2["scope"] = {**fields["scope"], "live_max_seconds": 1}
        assert hub.decide(f2).status == 201, scope_change
    # After a revoke the live grant shows closed.
    assert hub.decide({"decision": "revoke", "request_id": rid}).status == 201
    assert hub.poll(rid).json()["status"] == "closed"


def test_a_restart_builds_what_an_earlier_run_approved_but_could_not(hub: HubEnv) -> None:
    """Approved while the range had no footage (nothing built, nothing shown); the footage is indexed
    later; the next start builds the delivery (deliveries.resume), and the agency sees it. Approvals
    revoked or past their not_after by then, and declined requests, get nothing."""
    from tests.consent.flow_env import record_footage

    before, before_sha = _request(hub)
    assert hub.decide(_approve(hub, before, before_sha)).status == 201
    before_delivery = hub.wait_status(before, "fulfilled")["deliveries"]
    now = time.time()
    made: dict[str, tuple[str, str]] = {}
    for name in ("built", "revoked", "expired", "declined"):
        made[name] = _request(hub, cameras=[f"late-{name}"])
    for name, not_after in (("built", now + 3600), ("revoked", now + 3600), ("expired", now + 2)):
        rid, sha = made[name]
        fields = hub.approval(
            rid, sha, hub.t0 + 20, hub.t0 + 30, cameras=[f"late-{name}"], not_after=not_after
        )
        assert hub.decide(fields).status == 201
    assert hub.decide({"decision": "revoke", "request_id": made["revoked"][0]}).status == 201
    assert hub.decide(_decline(hub, *made["declined"])).status == 201
    deadline = time.monotonic() + hub.deadline_s
    while not all(
        f"request {made[n][0]}: no footage" in hub.daemon.log() for n in ("built", "revoked", "expired")
    ):
        assert time.monotonic() < deadline, hub.daemon.log()
        time.sleep(0.05)
    assert {hub.poll(rid).json()["status"] for rid, _ in made.values()} == {"pending"}
    for name in made:
        record_footage(hub.data_dir, hub.config, hub.t0, 40, camera=f"late-{name}")
    while time.time() <= now + 2:  # the "expired" approval's not_after passes
        time.sleep(0.05)
    files = {p.name for p in (hub.data_dir / "deliveries").iterdir()}
    since = hub.last_seq()
    hub.restart()
    # resume runs once at start: wait for it to end, then everything it built is there (no polling
    # for a status that a broken resume would never reach).
    deadline = time.monotonic() + hub.deadline_s
    while "consent-deliveries-resume" in hub.hub.call(_running):
        assert time.monotonic() < deadline, "resume did not end"
        time.sleep(0.05)
    state = hub.poll(made["built"][0]).json()
    assert state["status"] == "fulfilled" and len(state["deliveries"]) == 1, state
    late = {rid for rid, _ in made.values()}
    built = [e["data"]["request_id"] for e in hub.audit_entries(since) if e["type"] == "delivery.built"]
    assert [rid for rid in built if rid in late] == [made["built"][0]], built
    # What was built before is not built again (resume goes over every approval at every start).
    assert before not in built and hub.poll(before).json()["deliveries"] == before_delivery
    new_files = {p.name for p in (hub.data_dir / "deliveries").iterdir()} - files
    assert f"{state['deliveries'][0]['url'].rsplit('/', 1)[-1]}.age" in new_files
    assert len(new_files) == len(built), (new_files, built)


async def _running(services: Any) -> list[str]:
    return list(services.supervisor.running())


def test_a_revoke_tells_live_egress_at_once(hub: HubEnv) -> None:
    """A revoke notifies ConsentService.grant_listeners (the WHEP sessions' cut) before it answers;
    the sessions' own watchdog would notice only up to 0.5 s later."""
    calls: list[str] = []

    async def listen(services: Any) -> None:
        services.consent.grant_listeners.append(lambda: calls.append("changed"))

    async def stop(services: Any) -> None:
        services.consent.grant_listeners.pop()

    hub.hub.call(listen)
    try:
        rid, sha = _request(hub)
        assert hub.decide(_approve(hub, rid, sha)).status == 201
        assert hub.decide(_decline(hub, *_request(hub))).status == 201
        assert calls == []  # an approval or a decline ends no grant
        assert hub.decide({"decision": "revoke", "request_id": rid}).status == 201
        assert calls == ["changed"]
    finally:
        hub.hub.call(stop)


def test_one_camera_failing_to_build_does_not_stop_the_others(hub: HubEnv) -> None:
    """A camera whose recorded files are unreadable: its delivery fails (logged), the next camera's
    is still built, and the agency sees `fulfilled` with that one."""
    from tests.consent.flow_env import record_footage

    broken = "broken-cam"
    record_footage(hub.data_dir, hub.config, hub.t0, 40, camera=broken)
    for path in (hub.data_dir / "segments" / broken).rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a video")
    rid, sha = _request(hub, cameras=[broken, CAMERA])
    assert (
        hub.decide(hub.approval(rid, sha, hub.t0 + 20, hub.t0 + 30, cameras=[broken, CAMERA])).status == 201
    )
    deadline = time.monotonic() + hub.deadline_s
    while (state := hub.poll(rid).json())["status"] != "fulfilled":
        assert time.monotonic() < deadline, (state, hub.daemon.log())
        time.sleep(0.05)
    assert f"delivery for request {rid} camera {broken} failed" in hub.daemon.log()
    assert len(state["deliveries"]) == 1
    (opened,) = hub.client().fetch(rid, hub.tmp / f"fetched-{rid}")
    assert opened["camera"] == CAMERA


def test_not_after_equal_to_the_hub_clock_has_passed(hub: HubEnv) -> None:
    """§3: not_after must be *later* than now; equal is already past (the hub's clock pinned)."""
    rid, sha = _request(hub)
    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None
    at = float(int(time.time()) + 5)
    consent.now = lambda: at
    try:
        compact = hub.sign(
            _approve(hub, rid, sha, not_after=rfc3339.format(at)), issued_at=rfc3339.format(int(at))
        )
        _rejected(hub, compact, 403, "not_after_passed")
        compact = hub.sign(
            _approve(hub, rid, sha, not_after=rfc3339.format(at + 1)), issued_at=rfc3339.format(int(at))
        )
        assert hub.post_decision(compact).status == 201
    finally:
        consent.now = time.time


def _pinned(hub: HubEnv, at: float) -> Any:
    """A context manager pinning the consent service's clock at `at`."""
    import contextlib

    consent = hub.hub.services.consent if hub.hub.services else None
    assert consent is not None

    @contextlib.contextmanager
    def pin() -> Iterator[None]:
        consent.now = lambda: at
        try:
            yield
        finally:
            consent.now = time.time

    return pin()


def test_time_windows_at_their_exact_bounds(hub: HubEnv, tmp_path: Path) -> None:
    at = float(int(time.time()))
    rid, sha = _request(hub)
    with _pinned(hub, at):
        # issued_at exactly 60 s ahead of the hub is still allowed; 61 s is not.
        _rejected(
            hub, hub.sign(_decline(hub, rid, sha), issued_at=rfc3339.format(at + 61)), 403, "issued_in_future"
        )
        assert hub.decide(_decline(hub, rid, sha), issued_at=rfc3339.format(at + 60)).status == 201
        # Management decisions: exactly 300 s either way is within the window; 301 s is not.
        agency = new_agency(tmp_path / "edge")
        add = {"decision": "add-agency",
               "subject": {"name": "Edge PD", "sig_jwk": agency.sig_jwk, "recipient": agency.recipient}}  # fmt: skip
        _rejected(hub, hub.sign(add, issued_at=rfc3339.format(at - 301)), 403, "stale_decision")
        assert hub.decide(add, issued_at=rfc3339.format(at - 300)).status == 201
        remove = {"decision": "remove-agency", "subject": {"keyid": agency.keyid}}
        assert hub.decide(remove, issued_at=rfc3339.format(at + 60)).status == 201  # +60 s: future rule first


def test_a_one_character_jti_and_long_rejection_details(hub: HubEnv) -> None:
    rid, sha = _request(hub)
    assert hub.decide(_decline(hub, rid, sha), jti=secrets_token(1)).status == 201
    # A refused decision's audit entry keeps its detail, cut at 300 characters.
    rid, sha = _request(hub)
    extra = {f"member_{i:03d}_{'x' * 20}": i for i in range(40)}
    entry = _rejected(hub, hub.sign({**_decline(hub, rid, sha), **extra}), 400, "invalid_decision")
    assert set(entry["data"]) >= {"code", "detail"}
    assert len(entry["data"]["detail"]) == 300 and entry["data"]["detail"].startswith("members not allowed")


def secrets_token(n: int) -> str:
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_letters) for _ in range(n))


def test_a_live_window_opens_at_the_first_connection_and_closes_the_grant(hub: HubEnv) -> None:
    """§2.4: live_max_seconds counts from the first connection; once over, the poll says closed while
    not_after is still an hour away. (This hub has no camera: the connection gets 503 after the gate
    opened the window, which is all the window needs.)"""
    body = json.dumps(_live(hub, 120)).encode()
    rid, sha = hub.signed("POST", PATH, body).json()["id"], hashlib.sha256(body).hexdigest()
    fields = {"decision": "approve", "request_id": rid, "request_sha256": sha, "recipient": hub.agency.keyid,
              "scope": {"kind": "live", "cameras": [CAMERA], "start": None, "end": None, "live_max_seconds": 5},
              "max_fetches": 1, "not_after": rfc3339.format(int(time.time()) + 3600)}  # fmt: skip
    assert hub.decide(fields).status == 201
    url = hub.poll(rid).json()["live"]["url"].removeprefix(hub.url)
    later = time.time() + 30
    with _pinned(hub, later):  # 30 s on, never connected: still live (the window has not opened)
        assert hub.signed("GET", f"{PATH}/{rid}", created=int(later)).json()["status"] == "live"
    r = hub.signed("POST", url, b"v=0\r\n", content_type="application/sdp")
    assert (r.status, r.json()["error"]) == (503, "camera_unavailable")
    with _pinned(hub, time.time() + 6):
        assert hub.signed("GET", f"{PATH}/{rid}", created=int(time.time() + 6)).json()["status"] == "closed"


# --- §3 hold and release-hold (retention, §3.2) -----------------------------------------------


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    """A hub that knows its camera (a hold names only cameras of this hub), recording nothing (its
    footage is indexed before the start), with one privacy mask on it (§4.1)."""
    from tests.conftest import free_port

    camera = (
        f'\n[[cameras]]\nid = "{CAMERA}"\nurl = "rtsp://127.0.0.1:{free_port()}/none"\nrecord = false\n'
        "[cameras.privacy]\nmasks = [[[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]]]\n"
    )
    env = start_hub_env(tmp_path_factory.mktemp("held"), in_process=True, extra_config=camera, audio=True)
    try:
        yield env
    finally:
        env.stop()


def _subject(at: float, /, **changes: Any) -> dict[str, Any]:
    subject = {
        "cameras": [CAMERA], "start": rfc3339.format(at - 600), "end": rfc3339.format(at - 300),
        "until": rfc3339.format(at + 3600), "reason": "insurance claim for the dented car",
        "asked_by": "Acme Insurance, claim 42",
    }  # fmt: skip
    subject.update(changes)
    return {k: v for k, v in subject.items() if v is not ...}


def _owner_hold(hub: HubEnv, hold_id: str) -> dict[str, Any] | None:
    return hub.row("owner_holds", hold_id)


AT = float(int(time.time()))  # the consent clock, pinned for the hold rules; issued_at is AT too
HOLD_DAYS = 366 * DAY


@pytest.mark.parametrize(
    ("case", "subject", "status", "code"),
    [
        ("subject not an object", ["x"], 400, "invalid_decision"),
        ("a member missing", _subject(AT, asked_by=...), 400, "invalid_decision"),
        ("a member too many", _subject(AT, extra=1), 400, "invalid_decision"),
        ("cameras not a list", _subject(AT, cameras=CAMERA), 400, "invalid_decision"),
        ("no camera", _subject(AT, cameras=[]), 400, "invalid_decision"),
        ("65 cameras", _subject(AT, cameras=[f"c{i}" for i in range(65)]), 400, "invalid_decision"),
        ("64 cameras, unknown", _subject(AT, cameras=[f"c{i}" for i in range(64)]), 403, "unknown_camera"),
        ("a camera not a string", _subject(AT, cameras=[CAMERA, 7]), 400, "invalid_decision"),
        ("a camera twice", _subject(AT, cameras=[CAMERA, CAMERA]), 400, "invalid_decision"),
        ("an unknown camera", _subject(AT, cameras=[CAMERA, "attic"]), 403, "unknown_camera"),
        ("start not a time", _subject(AT, start="yesterday"), 400, "invalid_decision"),
        ("end a number", _subject(AT, end=5), 400, "invalid_decision"),
        ("until not a time", _subject(AT, until="soon"), 400, "invalid_decision"),
        ("empty reason", _subject(AT, reason=""), 400, "invalid_decision"),
        ("blank reason", _subject(AT, reason="   "), 400, "invalid_decision"),
        ("reason 501 characters", _subject(AT, reason="r" * 501), 400, "invalid_decision"),
        ("reason not a string", _subject(AT, reason=5), 400, "invalid_decision"),
        ("asked_by 201 characters", _subject(AT, asked_by="a" * 201), 400, "invalid_decision"),
        ("empty asked_by", _subject(AT, asked_by=""), 400, "invalid_decision"),
        ("start = end", _subject(AT, start=rfc3339.format(AT - 300)), 400, "invalid_decision"),
        ("start after end", _subject(AT, start=rfc3339.format(AT - 299)), 400, "invalid_decision"),
        ("end 61 s ahead", _subject(AT, end=rfc3339.format(AT + 61)), 400, "invalid_decision"),
        ("until now", _subject(AT, until=rfc3339.format(AT)), 400, "invalid_decision"),
        ("until past", _subject(AT, until=rfc3339.format(AT - 1)), 400, "invalid_decision"),
        (
            "until 366 days + 1 s",
            _subject(AT, until=rfc3339.format(AT + HOLD_DAYS + 1)),
            400,
            "invalid_decision",
        ),
    ],
)
def test_each_hold_rule(held: HubEnv, case: str, subject: Any, status: int, code: str) -> None:
    with _pinned(held, AT):
        compact = held.sign({"decision": "hold", "subject": subject}, issued_at=rfc3339.format(AT))
        entry = _rejected(held, compact, status, code)
    assert entry["data"]["decision"] == "hold"
    if case == "an unknown camera":  # the detail names the camera this hub does not have, only it
        assert entry["data"]["detail"].endswith(" attic"), entry


def test_a_hold_at_its_bounds_its_answer_audit_and_release(held: HubEnv) -> None:
    # Accepted at every bound: 64 cameras would need 64 of them; end exactly 60 s ahead, until 1 s
    # and exactly 366 days ahead, a 500-character reason and a 200-character asked_by.
    with _pinned(held, AT):
        for subject in (
            _subject(AT, end=rfc3339.format(AT + 60), until=rfc3339.format(AT + 1)),
            _subject(AT, until=rfc3339.format(AT + HOLD_DAYS), reason="r" * 500, asked_by="a" * 200),
            _subject(AT, start=rfc3339.format(AT - 301), reason=" why ", asked_by=" who "),
        ):
            compact = held.sign({"decision": "hold", "subject": subject}, issued_at=rfc3339.format(AT))
            since = held.last_seq()
            r = held.post_decision(compact)
            assert r.status == 201, (subject, r.body)
            hold_id = (
                base64.urlsafe_b64encode(hashlib.sha256(compact.encode()).digest()).rstrip(b"=").decode()
            )
            assert r.json() == {"decision_id": hold_id, "hold_id": hold_id}
            (placed,) = [e for e in held.audit_entries(since) if e["type"] == "hold.placed"]
            assert placed["actor"] == f"owner:{held.owner_kid}"
            assert placed["data"] == {"hold_id": hold_id, **subject}
            row = _owner_hold(held, hold_id)
            assert row is not None
            assert (json.loads(row["cameras"]), row["kid"], row["reason"], row["asked_by"]) == (
                subject["cameras"], held.owner_kid, subject["reason"], subject["asked_by"],
            )  # fmt: skip
            assert (row["start_at"], row["end_at"], row["until"], row["created_at"]) == (
                rfc3339.parse(subject["start"]), rfc3339.parse(subject["end"]), rfc3339.parse(subject["until"]), AT,
            )  # fmt: skip
            assert row["released_at"] is None

    # release-hold: the subject's shape, a hold that is not in force, then the release itself.
    for subject in (["x"], {"hold_id": hold_id, "extra": 1}, {"hold_id": 7}, {}):
        _rejected(held, held.sign({"decision": "release-hold", "subject": subject}), 400, "invalid_decision")
    _rejected(
        held, held.sign({"decision": "release-hold", "subject": {"hold_id": "nope"}}), 403, "unknown_hold"
    )
    since = held.last_seq()
    compact = held.sign({"decision": "release-hold", "subject": {"hold_id": hold_id}})
    r = held.post_decision(compact)
    assert r.status == 201, r.body
    released_by = base64.urlsafe_b64encode(hashlib.sha256(compact.encode()).digest()).rstrip(b"=").decode()
    assert r.json() == {"decision_id": released_by, "hold_id": hold_id}
    (released,) = [e for e in held.audit_entries(since) if e["type"] == "hold.released"]
    assert released["data"] == {"hold_id": hold_id, "decision_id": released_by}
    row = _owner_hold(held, hold_id)
    assert row is not None and row["released_by"] == released_by and row["released_at"] is not None
    # Released: no longer in force, so a second release finds nothing.
    _rejected(
        held, held.sign({"decision": "release-hold", "subject": {"hold_id": hold_id}}), 403, "unknown_hold"
    )


def test_a_masked_camera_delivers_the_painted_clip_and_says_so(held: HubEnv, tmp_path: Path) -> None:
    # §4.1: the delivery of a camera with masks is re-encoded with them painted, and both the manifest
    # and the delivery.built entry name the painted polygons; the re-encoded clip carries no sound,
    # even from footage with sound under a grant that allows it.
    since = held.last_seq()
    start, end = held.t0 + 10, held.t0 + 14
    rid, sha = held.submit(start, end)
    assert held.decide(held.approval(rid, sha, start, end, audio=True)).status == 201
    held.wait_status(rid, "fulfilled")
    (fetched,) = held.client().fetch(rid, tmp_path / "case")
    manifest = json.loads((Path(fetched["directory"]) / "manifest.json").read_text())
    red = manifest["redaction"]
    w, h = red["width"], red["height"]
    assert red == {"masks": [[[round(0.1 * w), round(0.1 * h)], [round(0.5 * w), round(0.1 * h)],
                              [round(0.5 * w), round(0.6 * h)]]],
                   "width": w, "height": h, "fill": "black", "codec": "h264"}  # fmt: skip
    (built,) = [e for e in held.audit_entries(since) if e["type"] == "delivery.built"]
    assert built["data"]["redaction"] == red and built["data"]["audio_codec"] is None
    assert (manifest["camera"], manifest["audio"]) == (CAMERA, True)
