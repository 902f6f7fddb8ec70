"""The counting of unauthenticated refusals (hub/consent/rejections.py, PROTOCOL §5): the first of a
group at once, then one entry per window while the flood lasts, a quiet window ends the group, and
nothing counted is lost at shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.consent.rejections import RejectionCounter

WINDOW_S = 0.4


async def test_one_entry_at_once_then_one_per_window_and_none_lost() -> None:
    written: list[tuple[str, str, dict[str, Any]]] = []

    async def record(type_: str, actor: str, data: dict[str, Any]) -> None:
        written.append((type_, actor, data))

    counter = RejectionCounter(record, WINDOW_S)
    assert await counter.note("request.rejected", "GET /x", "bad_signature", {"remote": "a"}) is True
    for _ in range(50):
        assert await counter.note("request.rejected", "GET /x", "bad_signature", {"remote": "a"}) is False
    # Another route or reason is a group of its own.
    assert await counter.note("request.rejected", "GET /x", "unknown_key", {}) is True
    assert await counter.note("decision.rejected", "GET /x", "bad_signature", {}) is True
    assert len(written) == 3 and written[0][2] == {
        "remote": "a",
        "code": "bad_signature",
        "route": "GET /x",
        "count": 1,
    }

    # The flood goes on across three windows: one summary per window, nothing per call.
    for _ in range(3):
        await asyncio.sleep(WINDOW_S * 1.05)
        assert await counter.flush() >= 1
        for _ in range(20):
            assert await counter.note("request.rejected", "GET /x", "bad_signature", {}) is False
    summaries = [d for _, _, d in written if d["count"] > 1 and d["code"] == "bad_signature"]
    assert [d["count"] for d in summaries] == [50, 20, 20], summaries
    assert all(d["first"] <= d["last"] and d["route"] == "GET /x" for d in summaries)

    # Shutdown writes what is still counted.
    await counter.close()
    assert [d["count"] for _, _, d in written if d["code"] == "bad_signature" and d["count"] > 1][-1] == 20
    total = sum(d["count"] for t, _, d in written if t == "request.rejected" and d["code"] == "bad_signature")
    assert total == 1 + 50 + 20 * 3

    # After a quiet window the group is gone: the next refusal is an entry of its own again.
    written.clear()
    counter = RejectionCounter(record, WINDOW_S)
    await counter.note("request.rejected", "GET /x", "bad_signature", {})
    await asyncio.sleep(WINDOW_S * 1.05)
    assert await counter.flush() == 0
    assert await counter.note("request.rejected", "GET /x", "bad_signature", {}) is True
    assert [d["count"] for _, _, d in written] == [1, 1]


async def test_a_rate_limited_agency_is_counted_under_its_own_name() -> None:
    written: list[tuple[str, str, dict[str, Any]]] = []

    async def record(type_: str, actor: str, data: dict[str, Any]) -> None:
        written.append((type_, actor, data))

    counter = RejectionCounter(record, 60)
    for actor in ("agency:a", "agency:a", "agency:b"):
        await counter.note("request.rejected", "POST /r", "rate_limited", {}, actor)
    await counter.close()
    assert [(a, d["count"]) for _, a, d in written] == [("agency:a", 1), ("agency:b", 1), ("agency:a", 1)]
