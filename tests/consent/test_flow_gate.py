"""The egress gate on its own (§4): every condition is re-read at send time from the stored approval."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.consent import gate
from hub.store import Store
from hub.store import consent as q

NOW = 1_800_000_000.0
JWK = {"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "camhub.sqlite")

    def seed(c: sqlite3.Connection) -> None:
        q.insert_owner_key(c, "owner", JWK, "o", NOW, None)
        q.upsert_agency(c, "pd", "PD", JWK, "age1x", NOW, "d0")
        q.insert_request(
            c,
            q.RequestRecord(
                "r1", "pd", "0" * 64, "clip", ("front",), NOW - 600, NOW, None, NOW, NOW + 86400, "approved"
            ),
            b"{}",
        )
        q.insert_decision(c, "g1", "approve", "owner", "r1", "jws", NOW, NOW)
        q.insert_grant(
            c,
            q.GrantRecord(
                "g1", "r1", "pd", "clip", ("front",), NOW - 300, NOW - 100, None, 2, NOW + 3600, None, "owner"
            ),
        )
        q.insert_delivery(
            c,
            q.DeliveryRecord(
                "d1", "g1", "r1", "front", NOW - 300, NOW - 100, "deliveries/d1.age", "a" * 64, 1, 0
            ),
            NOW,
        )

    await s.run(seed)
    try:
        yield s
    finally:
        await s.close()


async def _check(store: Store, **kw: object) -> q.GrantRecord:
    args: dict[str, object] = {
        "recipient": "pd", "camera": "front", "start": NOW - 300, "end": NOW - 100, "kind": "clip", "now": NOW,
        "delivery_id": "d1",
    }  # fmt: skip
    args.update(kw)
    return await gate.check(store, **args)


async def _denied(store: Store, code: str, **kw: object) -> None:
    with pytest.raises(gate.EgressDenied) as info:
        await _check(store, **kw)
    assert info.value.code == code and info.value.status == 403


async def test_allows_exactly_the_approval(store: Store) -> None:
    assert (await _check(store)).id == "g1"
    await _denied(store, "not_permitted", camera="back")
    await _denied(store, "not_permitted", start=NOW - 301)
    await _denied(store, "not_permitted", end=NOW - 99)
    await _denied(store, "not_permitted", recipient="someone-else")
    await _denied(store, "not_permitted", kind="live")
    await _denied(store, "not_permitted", delivery_id="nope")


async def test_not_after_is_checked_at_send_time(store: Store) -> None:
    await _denied(store, "grant_expired", now=NOW + 3600)


async def test_fetches_are_counted_atomically(store: Store) -> None:
    await _check(store, take_fetch=True)
    await _check(store, take_fetch=False)  # a re-check between chunks does not count
    await _check(store, take_fetch=True)
    await _denied(store, "fetch_limit_reached", take_fetch=True)


async def test_revocations_take_effect_at_once(store: Store) -> None:
    await store.run(q.revoke_owner_key, "owner", NOW, "d9")
    await _denied(store, "grant_revoked")  # the approving key was revoked


async def test_revoked_grant_and_removed_agency(store: Store) -> None:
    await store.run(q.revoke_grants_for_request, "r1", NOW, "d2")
    await _denied(store, "grant_revoked")
    await store.run(q.remove_agency, "pd", NOW, "d3")
    await _denied(store, "not_permitted")


def _seed_live(c: sqlite3.Connection, grant_id: str, live_s: int, not_after: float) -> None:
    rid = f"r-{grant_id}"
    q.insert_request(
        c, q.RequestRecord(rid, "pd", "0" * 64, "live", ("front",), None, None, live_s, NOW, NOW + 86400, "approved"),
        b"{}",
    )  # fmt: skip
    q.insert_decision(c, grant_id, "approve", "owner", rid, "jws", NOW, NOW)
    q.insert_grant(
        c, q.GrantRecord(grant_id, rid, "pd", "live", ("front",), None, None, live_s, 1, not_after, None, "owner")
    )  # fmt: skip


async def test_live_window_is_total_not_per_connection(store: Store) -> None:
    await store.run(_seed_live, "live1", 60, NOW + 3600)

    async def live(now: float, *, connect: bool = False) -> q.GrantRecord:
        return await gate.check(
            store, "pd", "front", None, None, kind="live", now=now, grant_id="live1", start_live=connect
        )

    # Looking (a recheck, a poll) does not open the window; the first connection does, once.
    assert (await live(NOW + 10)).live_started_at is None
    first = await live(NOW + 100, connect=True)
    assert first.live_started_at == NOW + 100 and first.ends_at == NOW + 160
    again = await live(NOW + 150, connect=True)  # a reconnect keeps the first window
    assert again.live_started_at == NOW + 100 and again.ends_at == NOW + 160
    with pytest.raises(gate.EgressDenied) as info:
        await live(NOW + 161, connect=True)
    assert info.value.code == "grant_expired"


async def test_a_url_is_judged_by_its_own_grant(store: Store) -> None:
    # Two live grants of one agency: the used-up one must not refuse the other's URL, and the
    # other must not let the used-up one's URL through.
    await store.run(_seed_live, "spent", 10, NOW + 3600)
    await store.run(_seed_live, "fresh", 600, NOW + 3600)
    await gate.check(
        store, "pd", "front", None, None, kind="live", now=NOW, grant_id="spent", start_live=True
    )
    later = NOW + 30
    ok = await gate.check(
        store, "pd", "front", None, None, kind="live", now=later, grant_id="fresh", start_live=True
    )
    assert ok.id == "fresh"
    with pytest.raises(gate.EgressDenied) as info:
        await gate.check(store, "pd", "front", None, None, kind="live", now=later, grant_id="spent")
    assert info.value.code == "grant_expired"
