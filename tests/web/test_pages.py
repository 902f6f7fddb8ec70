"""Events, settings and the audit view (verified in the browser, rollback and fork noticed)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from hub.consent.merkle import MerkleTree, leaf_hash
from tests.web.conftest import login, onboard, screenshot


def test_events_list_with_thumbnails_and_filters(make_hub: Any, context: Any) -> None:
    start = time.time() - 3600
    if time.gmtime(start + 1).tm_mday != time.gmtime(start + 61).tm_mday:
        start -= 120  # both seeded events on one day
    hub = make_hub(segments_at=start)
    page = context.new_page()
    login(page, hub.url)
    # The page shows one day (today by default): name the events' day, which is yesterday in the
    # first hour after midnight (the browser runs in UTC).
    day = time.strftime("%Y-%m-%d", time.gmtime(start + 61))
    page.goto(hub.url + f"/#/events?day={day}")
    cards = page.locator("#event-list article")
    cards.first.wait_for()
    assert cards.count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('#event-list img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "events")
    page.get_by_label("Kind").select_option("press")
    page.wait_for_function("() => document.querySelectorAll('#event-list article').length === 1")
    assert "doorbell" in cards.first.inner_text()
    # An event opens the timeline at its moment, with the event marked on the day bar.
    cards.first.get_by_role("link").click()
    page.wait_for_selector(".daybar .mark")
    assert page.locator(".daybar:not(.zoom) .mark").count() == 2
    # The link plays the event's footage: from the camera's pre-roll (5 s default) before it to the
    # post-roll (10 s default) after it.
    (press,) = context.request.get(hub.url + "/api/v1/owner/events?kind=press").json()["events"]
    assert press["footage"] == {"start": pytest.approx(start + 56), "end": pytest.approx(start + 74)}
    # A thumbnail is owner-only.
    assert context.request.get(hub.url + "/api/v1/owner/events/ev0.jpg").status == 200
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    assert context.request.get(hub.url + "/api/v1/owner/events/ev0.jpg").status == 401


def test_settings_page(make_hub: Any, context: Any) -> None:
    hub = make_hub()
    page = context.new_page()
    login(page, hub.url)
    page.goto(hub.url + "/#/settings")
    page.locator("#cameras tbody tr").first.wait_for()
    assert page.locator("#cameras tbody tr").count() == 2
    assert "Front door" in page.locator("#cameras").inner_text()
    # Both are camhub.toml cameras: read-only here (the settings screenshot, with a camera added in
    # the browser, comes from tests/web/test_settings_browser.py).
    assert page.get_by_text("camhub.toml (read-only)").count() == 2


def test_audit_log_verified_in_the_browser_and_rollback_noticed(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=False)
    page = context.new_page()
    onboard(page, hub)
    # A checkpoint over the log so far (the §5 owner-session route signs one if none is current);
    # page.request carries this browser's session cookie.
    res = page.request.get(hub.url + "/api/v1/audit/checkpoint")
    assert res.ok and res.text().startswith(f"camhub/{hub.daemon.hub_id}\n")
    page.goto(hub.url + "/#/audit")
    checks = page.locator("ul.checks")
    try:
        checks.get_by_text("entries hash to the checkpoint's root").wait_for(timeout=15_000)
    except Exception as exc:
        raise AssertionError(f"audit page shows: {page.locator('main').inner_text()!r}") from exc
    checks.get_by_text("First visit").wait_for()
    assert checks.locator("li.bad").count() == 0, checks.inner_text()
    assert page.locator("#audit tbody tr").count() >= 2  # hub.started, key.enrolled, owner.login...
    screenshot(page, "audit")

    seen = json.loads(page.evaluate("localStorage.getItem('camhub.audit.seen')"))
    # Next visit, unchanged log: consistent.
    page.reload()
    checks.get_by_text("Consistent with the checkpoint this browser saw").wait_for()
    # The log grows (a failed login is audited) and the hub signs a new checkpoint: the browser checks
    # the hub's RFC 9162 consistency proof from the size it saw to the new signed root.
    page.request.post(hub.url + "/api/v1/session/login", data=json.dumps({"password": "not the password"}),
                      headers={"Content-Type": "application/json"})  # fmt: skip
    grown = int(page.request.get(hub.url + "/api/v1/audit/checkpoint").text().split("\n")[1])
    assert grown > seen["size"]
    page.reload()
    checks.get_by_text("RFC 9162 consistency proof").wait_for()
    assert checks.locator("li.bad").count() == 0, checks.inner_text()
    seen = json.loads(page.evaluate("localStorage.getItem('camhub.audit.seen')"))
    assert seen["size"] == grown
    # What this browser saw at size 1 is not a prefix of this log: the proof fails, a fork is shown.
    page.evaluate(
        "s => localStorage.setItem('camhub.audit.seen', s)",
        json.dumps({**seen, "size": 1, "root": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
    )
    page.reload()
    checks.get_by_text("FORK").wait_for()
    page.evaluate("s => localStorage.setItem('camhub.audit.seen', s)", json.dumps(seen))
    # The browser once saw a longer log: the hub's is now shorter, i.e. rolled back.
    page.evaluate(
        "s => localStorage.setItem('camhub.audit.seen', s)", json.dumps({**seen, "size": seen["size"] + 50})
    )
    page.reload()
    checks.get_by_text("ROLLBACK").wait_for()
    # The browser saw different first entries: a forked (rewritten) log.
    page.evaluate(
        "s => localStorage.setItem('camhub.audit.seen', s)",
        json.dumps({**seen, "root": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}),
    )
    page.reload()
    checks.get_by_text("FORK").wait_for()


def test_owner_confirms_the_hubs_clock_from_settings(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=False, trust_clock=False)
    page = context.new_page()
    onboard(page, hub)
    # The daemon runs under tests/unsynced_clock.py: whatever this machine's NTP state, the hub
    # cannot know its clock is right until the owner confirms it.
    assert page.request.get(hub.url + "/api/v1/owner/settings").json()["clock_synced"] is False
    page.goto(hub.url + "/#/inbox")
    page.get_by_text("The hub's clock is not confirmed").wait_for()
    page.goto(hub.url + "/#/settings")
    page.get_by_role("button", name="Confirm the hub's clock (sign)").click()
    page.locator("#clock-state").filter(has_text="confirmed for this boot").wait_for()
    assert page.locator("#clock").count() == 0
    assert page.request.get(hub.url + "/api/v1/owner/settings").json()["clock_synced"] is True


def test_browser_merkle_code_agrees_with_the_hub(make_hub: Any, context: Any) -> None:
    """The page's RFC 9162 code (lib/merkle.js), run in Chromium, against the hub's own tree."""
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(33)]
    tree = MerkleTree(leaves)
    b64 = lambda h: base64.b64encode(h).decode()  # noqa: E731
    cases = [
        {"m": m, "n": n, "old": b64(tree.root(m)), "new": b64(tree.root(n)),
         "proof": [b64(h) for h in tree.consistency_proof(m, n)]}
        for n in range(1, 34) for m in range(1, n + 1)
    ]  # fmt: skip
    hub = make_hub()
    page = context.new_page()
    page.goto(hub.url + "/")
    result = page.evaluate(
        """async ({cases, leaves}) => {
          const m = await import("/ui/lib/merkle.js");
          const { unb64 } = await import("/ui/lib/b64.js");
          let good = 0, forged = 0;
          for (const c of cases) {
            const proof = c.proof.map(unb64);
            if (await m.verifyConsistency(c.m, c.n, unb64(c.old), unb64(c.new), proof)) good++;
            if (c.m < c.n && await m.verifyConsistency(c.m, c.n, unb64(c.new), unb64(c.new), proof)) forged++;
          }
          const root = await m.treeHash(leaves.map(unb64));
          return { good, forged, root: m.b64(root) };
        }""",
        {"cases": cases, "leaves": [b64(h) for h in leaves]},
    )
    assert result == {"good": len(cases), "forged": 0, "root": b64(tree.root(33))}
