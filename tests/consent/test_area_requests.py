"""Area requests (PROTOCOL §7.4) as the hub reads them: the §2.1 rules of a clip, with `area` instead of
`hub` and `cameras`, and every one of the hub's cameras asked for.

`requests.parse_area_body` on its own, in the test process: the relay tests (tests/relay/) drive it end
to end through a daemon in a subprocess, where `make mutate` cannot see which test reaches it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from camhub_protocol import rfc3339
from camhub_protocol.errors import ConsentError
from hub.consent.requests import RequestFields, parse_area_body

NOW = 1_800_000_000.0
CELL = "u33db"
CAMERAS = ("front-door", "yard")


def _doc(**overrides: Any) -> dict[str, Any]:
    doc = {
        "area": CELL, "case_id": "2026-1234", "kind": "clip",
        "start": rfc3339.format(NOW - 3600), "end": rfc3339.format(NOW - 600),
        "reason": "a break-in on the street", "legal_basis": {"type": "warrant", "reference": "W-1"},
        "contact": "desk@pd.example",
    }  # fmt: skip
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def _body(**overrides: Any) -> bytes:
    return json.dumps(_doc(**overrides)).encode()


def _refused(body: bytes, code: str, cameras: tuple[str, ...] = CAMERAS, now: float | None = NOW) -> str:
    with pytest.raises(ConsentError) as info:
        parse_area_body(body, CELL, cameras, now)
    assert (info.value.code, info.value.status) == (code, 400), info.value
    # PROTOCOL: the error body is {"error", "detail"} with a human detail, a string.
    assert isinstance(info.value.detail, str) and info.value.detail, info.value.detail
    return info.value.detail


def test_an_area_request_asks_for_every_camera_of_the_hub() -> None:
    fields = parse_area_body(_body(), CELL, CAMERAS, NOW)
    assert fields == RequestFields("clip", CAMERAS, NOW - 3600, NOW - 600, None, "2026-1234")
    # Without a clock given, the end is not checked against one.
    assert parse_area_body(_body(end=rfc3339.format(NOW + 600)), CELL, CAMERAS).end == NOW + 600
    # The edges that pass: end exactly now, a 24 h span, a null reference, other legal bases.
    assert parse_area_body(_body(end=rfc3339.format(NOW)), CELL, CAMERAS, NOW).end == NOW
    day = _body(start=rfc3339.format(NOW - 86400), end=rfc3339.format(NOW))
    assert parse_area_body(day, CELL, CAMERAS, NOW).start == NOW - 86400
    for basis in ("consent", "exigent"):
        body = _body(legal_basis={"type": basis, "reference": None})
        assert parse_area_body(body, CELL, ("one",), NOW).cameras == ("one",)


@pytest.mark.parametrize(
    ("case", "body", "code"),
    [
        ("not UTF-8", b'{"area": "\xff"}', "invalid_json"),
        ("not JSON", b"{", "invalid_json"),
        ("a list", b"[]", "invalid_json"),
        ("a string", b'"u33db"', "invalid_json"),
        ("NaN", b'{"area": NaN}', "invalid_json"),
        ("a duplicate member", b'{"area": "u33db", "area": "u33db"}', "invalid_json"),
        ("nested too deep", b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ],
)
def test_a_body_that_is_not_a_json_object(case: str, body: bytes, code: str) -> None:
    _refused(body, code)


@pytest.mark.parametrize("member", ["hub", "cameras", "live_max_seconds", "camera"])
def test_members_an_area_request_does_not_have(member: str) -> None:
    # No hub and no cameras: the agency does not know who has cameras; a clip has no live seconds.
    detail = _refused(_body(**{member: None}), "unknown_field")
    assert member in detail


def test_unknown_members_are_named_in_order() -> None:
    assert _refused(_body(zeta=1, alpha=2), "unknown_field").endswith("alpha, zeta")


@pytest.mark.parametrize("area", [..., None, "u33dc", "U33DB", "u33d", 5, [CELL]])
def test_the_area_must_be_the_cell_of_the_url(area: Any) -> None:
    _refused(_body(area=area), "wrong_area")


@pytest.mark.parametrize("kind", [..., "live", "CLIP", None, ["clip"]])
def test_only_clips(kind: Any) -> None:
    assert _refused(_body(kind=kind), "invalid_field").startswith("kind")


def test_a_hub_without_cameras_refuses() -> None:
    _refused(_body(), "no_cameras", cameras=())


@pytest.mark.parametrize(
    ("case", "overrides", "code", "field"),
    [
        ("no case_id", {"case_id": ...}, "missing_field", "case_id"),
        ("no reason", {"reason": ...}, "missing_field", "reason"),
        ("no legal_basis", {"legal_basis": ...}, "missing_field", "legal_basis"),
        ("no contact", {"contact": ...}, "missing_field", "contact"),
        ("case_id a number", {"case_id": 7}, "invalid_field", "case_id"),
        ("reason too long", {"reason": "r" * 2001}, "invalid_field", "reason"),
        ("legal basis unknown", {"legal_basis": {"type": "asked nicely", "reference": None}}, "invalid_field",
         "legal_basis.type"),
        ("legal basis extra", {"legal_basis": {"type": "consent", "reference": None, "x": 1}}, "unknown_field",
         "legal_basis.x"),
        ("no start", {"start": ...}, "invalid_field", "start/end"),
        ("no end", {"end": ...}, "invalid_field", "start/end"),
        ("start not RFC 3339", {"start": "yesterday"}, "invalid_field", "start/end"),
        ("end before start", {"end": rfc3339.format(NOW - 7200)}, "invalid_field", "end"),
        ("no length", {"end": rfc3339.format(NOW - 3600)}, "invalid_field", "end"),
        ("more than 24 h", {"start": rfc3339.format(NOW - 86401), "end": rfc3339.format(NOW)}, "invalid_field",
         "end"),
        ("end in the future", {"end": rfc3339.format(NOW + 1)}, "invalid_field", "end"),
    ],
)  # fmt: skip
def test_every_other_clip_rule_holds(case: str, overrides: dict[str, Any], code: str, field: str) -> None:
    assert field in _refused(_body(**overrides), code)
