"""The egress gate on its own (§4): every condition is re-read at send time from the stored approval."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub import config as config_mod
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
    assert isinstance(info.value.detail, str) and info.value.detail  # the response's human detail


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


async def test_range_edges_and_kinds(store: Store) -> None:
    # RFC 3339 carries milliseconds: up to 1 ms outside the approved range is the same instant.
    assert (await _check(store, start=NOW - 300 - 0.0009, end=NOW - 100 + 0.0009)).id == "g1"
    await _denied(store, "not_permitted", start=NOW - 300 - 0.002)
    await _denied(store, "not_permitted", end=NOW - 100 + 0.002)
    # A range inside the approval is fine; an inverted one is not a range.
    assert (await _check(store, start=NOW - 250, end=NOW - 150)).id == "g1"
    await _denied(store, "not_permitted", start=NOW - 150, end=NOW - 250)
    await _denied(store, "not_permitted", start=None)
    await _denied(store, "not_permitted", end=None)
    for kind in ("still", "", "CLIP"):
        await _denied(store, "not_permitted", kind=kind)
    # The delivery must be of the camera asked about.
    await _denied(store, "not_permitted", camera="front ")


async def test_expiry_is_exclusive_at_not_after(store: Store) -> None:
    assert (await _check(store, now=NOW + 3600 - 0.001)).id == "g1"
    await _denied(store, "grant_expired", now=NOW + 3600)


async def test_an_unknown_approver_is_a_revoked_one(store: Store) -> None:
    def orphan(c: sqlite3.Connection) -> None:
        q.insert_decision(c, "g2", "approve", "nobody", "r1", "jws", NOW, NOW)
        q.insert_grant(
            c,
            q.GrantRecord(
                "g2",
                "r1",
                "pd",
                "clip",
                ("front",),
                NOW - 300,
                NOW - 100,
                None,
                2,
                NOW + 3600,
                None,
                "nobody",
            ),
        )
        q.insert_delivery(
            c,
            q.DeliveryRecord(
                "d2", "g2", "r1", "front", NOW - 300, NOW - 100, "deliveries/d2.age", "b" * 64, 1, 0
            ),
            NOW,
        )

    await store.run(orphan)
    await _denied(store, "grant_revoked", delivery_id="d2")
    assert (await _check(store)).id == "g1"


async def test_live_without_a_grant_id_uses_any_live_grant_of_the_agency(store: Store) -> None:
    async def live(now: float = NOW, **kw: object) -> q.GrantRecord:
        return await gate.check(store, "pd", "front", None, None, kind="live", now=now, **kw)  # type: ignore[arg-type]

    with pytest.raises(gate.EgressDenied) as info:
        await live()
    assert info.value.code == "not_permitted"  # the clip grant is not a live one
    await store.run(_seed_live, "old", 60, NOW + 10)
    await store.run(_seed_live, "new", 60, NOW + 3600)
    assert (await live()).id in ("old", "new")
    # One expired, one good: the good one allows it.
    assert (await live(NOW + 100)).id == "new"
    # Both refused: the first refusal (expired here) is the answer.
    await store.run(q.revoke_grants_for_request, "r-new", NOW, "d5")
    with pytest.raises(gate.EgressDenied) as info:
        await live(NOW + 100)
    assert info.value.code == "grant_expired"
    # Another agency or camera: not permitted.
    with pytest.raises(gate.EgressDenied) as info:
        await gate.check(store, "pd", "back", None, None, kind="live", now=NOW)
    assert info.value.code == "not_permitted"


async def test_the_fetch_count_is_per_delivery_and_only_when_allowed(store: Store) -> None:
    # A refused check takes no fetch: after the refusal both fetches are still there.
    await _denied(store, "not_permitted", camera="back", take_fetch=True)
    await _check(store, take_fetch=True)
    await _check(store, take_fetch=True)
    await _denied(store, "fetch_limit_reached", take_fetch=True)
    # Re-checks between chunks still pass: the limit counts fetches, not chunks.
    assert (await _check(store)).id == "g1"
    # Last: a check after not_after records the grant as over (PROTOCOL §4), so nothing passes after it.
    await _denied(store, "grant_expired", now=NOW + 3600, take_fetch=True)
    await _denied(store, "grant_expired")


async def test_opening_a_live_window_happens_once_and_only_for_live(store: Store) -> None:
    await store.run(_seed_live, "w", 30, NOW + 3600)
    grant = await gate.check(
        store, "pd", "front", None, None, kind="live", now=NOW, grant_id="w", start_live=True
    )
    assert grant.live_started_at == NOW and grant.ends_at == NOW + 30
    # A clip check with start_live set opens nothing.
    g = await _check(store, start_live=True)
    assert g.live_started_at is None


async def test_exactly_on_the_tolerance_and_a_zero_length_range(store: Store) -> None:
    # The bounds themselves are inside: start at the approval's start less exactly 1 ms, end at its end
    # plus exactly 1 ms (the same float arithmetic as the gate's), and a range of no length.
    start = NOW - 300 - gate._EPS
    end = NOW - 100 + gate._EPS
    assert (await _check(store, start=start, end=end)).id == "g1"
    assert (await _check(store, start=NOW - 200, end=NOW - 200)).id == "g1"


async def test_a_grant_id_that_does_not_exist(store: Store) -> None:
    for kind in ("live", "clip"):
        with pytest.raises(gate.EgressDenied) as info:
            await gate.check(store, "pd", "front", NOW - 300, NOW - 100, kind=kind, now=NOW, grant_id="nope")
        assert info.value.code == "not_permitted"


async def test_a_refused_grant_does_not_hide_a_good_one(store: Store) -> None:
    # Two live grants of one agency, one approved by an owner key revoked since (its grant not
    # marked revoked), in either order: the other one still allows the stream.
    def key(c: sqlite3.Connection) -> None:
        q.insert_owner_key(c, "owner2", JWK, "o2", NOW, None)

    await store.run(key)
    await store.run(q.revoke_owner_key, "owner2", NOW, "d-k")
    for bad, good in (("a1", "a2"), ("b2", "b1")):
        await store.run(_seed_live, min(bad, good), 60, NOW + 3600)
        await store.run(_seed_live, max(bad, good), 60, NOW + 3600)
        await store.run(lambda c, g=bad: c.execute("UPDATE decisions SET kid = 'owner2' WHERE id = ?", (g,)))
        grant = await gate.check(store, "pd", "front", None, None, kind="live", now=NOW)
        assert grant.id == good, (bad, good, grant.id)
        await store.run(q.revoke_grants_for_request, f"r-{good}", NOW, f"d-{good}")
    with pytest.raises(gate.EgressDenied) as info:
        await gate.check(store, "pd", "front", None, None, kind="live", now=NOW)
    assert info.value.code == "grant_revoked"


async def test_a_check_without_start_live_opens_no_window(store: Store) -> None:
    await store.run(_seed_live, "quiet", 30, NOW + 3600)
    grant = await gate.check(store, "pd", "front", None, None, kind="live", now=NOW, grant_id="quiet")
    assert grant.live_started_at is None
    grant = await gate.check(store, "pd", "front", None, None, kind="live", now=NOW + 100)
    assert grant.live_started_at is None and grant.ends_at == NOW + 3600


# --- Deadlines: a grant's end on the monotonic clock too (PROTOCOL §6) --------------------------


class _Mono:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def _grant(gid: str = "m1", not_after: float = NOW + 100) -> q.GrantRecord:
    return q.GrantRecord(gid, "r1", "pd", "clip", ("front",), None, None, None, 1, not_after, None, "owner")


def test_deadlines_remaining_is_what_the_stricter_clock_says() -> None:
    mono = _Mono()
    d = gate.Deadlines(mono)
    g = _grant()
    # First look arms it: 100 s left by both clocks.
    assert d.remaining(g, NOW) == 100.0 and len(d) == 1
    # The wall clock set back 50 s: the wall clock says 150 s, the monotonic deadline still 100 s.
    assert d.remaining(g, NOW - 50) == 100.0
    # 30 s pass on the monotonic clock while the wall clock is stuck: 70 s.
    mono.t += 30
    assert d.remaining(g, NOW) == 70.0
    # The wall clock jumps forward 60 s: the deadline moves earlier (to 40 s from here), and stays.
    assert d.remaining(g, NOW + 90) == 10.0
    assert d.remaining(g, NOW + 30) == 10.0  # set back again: still the earlier deadline
    mono.t += 10
    assert d.remaining(g, NOW + 30) == 0.0
    assert d.over(g, NOW + 30) and not d.over(_grant("m2"), NOW)


def test_deadlines_over_by_either_clock_and_forget() -> None:
    mono = _Mono()
    d = gate.Deadlines(mono)
    g = _grant()
    assert not d.over(g, NOW)  # arms it: monotonic deadline 600
    assert d.over(g, NOW + 100)  # not_after itself has passed (exclusive end)
    assert not d.over(g, NOW + 99.5)  # a wall clock ahead tightens the deadline to 500.5
    assert d.arm(g, NOW) == 500.5  # and arming again never moves it later
    mono.t += 0.5  # only the monotonic clock moved on: over, whatever the wall clock says
    assert d.over(g, NOW)
    # An ended grant is over at any time, by any clock, and is not armed for it.
    assert d.over(dataclasses.replace(_grant("m3"), ended_at=NOW), NOW - 1000)
    assert len(d) == 1
    d.forget("m1")
    assert len(d) == 0 and d.arm(g, NOW) == 600.5  # forgotten: armed afresh from the wall clock
    d.forget("nope")  # forgetting an unknown grant is fine
    assert len(d) == 1


async def test_the_gate_forgets_the_deadline_of_a_grant_it_found_over(store: Store) -> None:
    # Armed by a first look, then found over by the wall clock: the gate records the end
    # (`ended_at`) and drops the monotonic deadline, so a long-running hub does not keep one per
    # grant it ever saw.
    d = gate.Deadlines(_Mono())
    assert (await _check(store, deadlines=d)).id == "g1"
    assert len(d) == 1
    await _denied(store, "grant_expired", now=NOW + 3600, deadlines=d)
    assert len(d) == 0


def test_privacy_masks_go_to_agencies_and_to_the_owner_only_if_asked() -> None:
    window = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]]
    masks = (((0.1, 0.1), (0.5, 0.1), (0.5, 0.6)),)
    cfg = config_mod.parse(
        {
            "hub": {"data_dir": "/tmp/camhub-unused"},
            "cameras": [
                {"id": "yard", "url": "rtsp://127.0.0.1/y", "privacy": {"masks": [window]}},
                {
                    "id": "door",
                    "url": "rtsp://127.0.0.1/d",
                    "privacy": {"masks": [window], "owner_views": True},
                },
                {"id": "bare", "url": "rtsp://127.0.0.1/b"},
            ],
        }
    )
    # An agency gets every camera's masks, by default and when named.
    assert gate.privacy_masks(cfg, "yard") == masks
    assert gate.privacy_masks(cfg, "yard", audience="agency") == masks
    assert gate.privacy_masks(cfg, "door") == masks
    # The owner's own view is painted only where the owner turned owner_views on.
    assert gate.privacy_masks(cfg, "yard", audience="owner") == ()
    assert gate.privacy_masks(cfg, "door", audience="owner") == masks
    # No masks, or no such camera: nothing to paint.
    assert gate.privacy_masks(cfg, "bare") == ()
    assert gate.privacy_masks(cfg, "nope") == ()
