"""§2.2 privacy rule, on the one function that computes what an agency sees: a decline, an approval
with no footage, an approval naming an unknown camera and an expired request are indistinguishable —
`pending` until `respond_by`, then `closed` — while a delivery or a live grant shows as such."""

from __future__ import annotations

import pytest

from hub.consent.requests import PollView, agency_status
from hub.store.consent import DeliveryRecord, GrantRecord, RequestRecord

NOW = 1_800_000_000.0
RESPOND_BY = NOW + 7 * 86400


def _request(state: str, cameras: tuple[str, ...] = ("front-door",), kind: str = "clip") -> RequestRecord:
    return RequestRecord(
        "req", "agency", "0" * 64, kind, cameras, NOW - 3600, NOW - 1800, None, NOW - 60, RESPOND_BY, state
    )


def _grant(kind: str = "clip", revoked: bool = False, not_after: float = NOW + 3600) -> GrantRecord:
    return GrantRecord(
        "g1", "req", "agency", kind, ("front-door",), NOW - 3600, NOW - 1800, None, 3, not_after,
        NOW - 1 if revoked else None, "owner",
    )  # fmt: skip


def _delivery() -> DeliveryRecord:
    return DeliveryRecord(
        "d1", "g1", "req", "front-door", NOW - 3600, NOW - 1800, "deliveries/d1.age", "a" * 64, 10, 0
    )


HIDDEN_OUTCOMES = {
    "no decision yet": PollView(_request("pending"), [], []),
    "declined": PollView(_request("declined"), [], []),
    "approved, no footage": PollView(_request("approved"), [_grant()], []),
    "approved, unknown camera": PollView(_request("approved", ("no-such-camera",)), [_grant()], []),
    "approved, no footage, then revoked": PollView(_request("approved"), [_grant(revoked=True)], []),
}


@pytest.mark.parametrize(
    ("when", "expected"), [(NOW, "pending"), (RESPOND_BY, "closed"), (RESPOND_BY + 1, "closed")]
)
def test_hidden_outcomes_look_the_same(when: float, expected: str) -> None:
    assert {name: agency_status(view, when) for name, view in HIDDEN_OUTCOMES.items()} == dict.fromkeys(
        HIDDEN_OUTCOMES, expected
    )


def test_visible_outcomes() -> None:
    assert agency_status(PollView(_request("approved"), [_grant()], [_delivery()]), NOW) == "fulfilled"
    # A delivered grant that was revoked or ran out shows closed at once.
    assert (
        agency_status(PollView(_request("approved"), [_grant(revoked=True)], [_delivery()]), NOW) == "closed"
    )
    assert (
        agency_status(PollView(_request("approved"), [_grant(not_after=NOW)], [_delivery()]), NOW) == "closed"
    )
    live = PollView(_request("approved", kind="live"), [_grant(kind="live")], [])
    assert agency_status(live, NOW) == "live"
    ended = PollView(_request("approved", kind="live"), [_grant(kind="live", revoked=True)], [])
    assert agency_status(ended, NOW) == "closed"
    # The agency was removed (its requests closed) — closed whatever respond_by says.
    assert agency_status(PollView(_request("closed"), [], []), NOW) == "closed"
