"""Events, settings and the audit view (verified in the browser, rollback and fork noticed)."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from typing import Any

import pytest

from camhub_protocol.merkle import MerkleTree, leaf_hash
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
    # Camera names, not ids; motion lasts, a press is a moment (no "0 s").
    texts = [cards.nth(i).inner_text() for i in range(2)]
    assert all("Front door" in t and "front-door" not in t for t in texts), texts
    assert any("lasted 3 seconds" in t for t in texts)
    page.get_by_label("Kind").select_option("press")
    page.wait_for_function("() => document.querySelectorAll('#event-list article').length === 1")
    assert "doorbell" in cards.first.inner_text()
    assert "lasted" not in cards.first.inner_text() and " s" not in cards.first.inner_text().split("UTC")[-1]
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
    # Plain HTTP on loopback is right (a secure context): the page says so instead of warning.
    page.get_by_text("You are on the hub itself (127.0.0.1)").wait_for()
    assert page.get_by_text("not using HTTPS").count() == 0
    # A camera that cannot be reached says why in words, the raw error behind "Technical details".
    state = page.locator("#cameras tr[data-camera='front-door'] .state")
    deadline = time.monotonic() + 30
    while not state.get_by_text("camhub keeps retrying").count():  # the page shows the state it loaded
        assert time.monotonic() < deadline, state.inner_text()
        page.wait_for_timeout(500)
        page.reload()
        page.locator("#cameras tbody tr").first.wait_for()
    assert "Errno" not in state.locator(".bad").inner_text()


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
        checks.get_by_text("entries shown is in the signed log").wait_for(timeout=15_000)
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


def test_audit_page_pages_reads_in_words_and_notices_an_altered_entry(make_hub: Any, context: Any) -> None:
    hub = make_hub()
    page = context.new_page()
    login(page, hub.url)
    token = page.request.get(hub.url + "/api/v1/session").json()["csrf"]
    for days in range(60):  # a log longer than one page (50 entries)
        r = page.request.patch(hub.url + "/api/v1/owner/settings/storage", data=json.dumps({"max_age_days": 10 + days}),
                               headers={"Content-Type": "application/json", "X-CSRF-Token": token})  # fmt: skip
        assert r.ok
    page.goto(hub.url + "/#/audit")
    checks = page.locator("ul.checks")
    checks.get_by_text("entries shown is in the signed log").wait_for()
    size = int(page.request.get(hub.url + "/api/v1/audit/checkpoint").text().split("\n")[1])
    # The checkpoint line and the entry count agree.
    checks.get_by_text(
        f"The log has {size} entries, and the hub's signed checkpoint covers all of them"
    ).wait_for()
    rows = page.locator("#audit tbody tr")
    assert rows.count() == 50  # one page, not the whole log
    assert rows.first.get_attribute("data-seq") == str(size - 1)  # newest first
    assert "You changed how long footage is kept" in rows.first.inner_text()  # in words, not a type code
    page.get_by_role("button", name="Show older entries").click()
    page.wait_for_function(f"() => document.querySelectorAll('#audit tbody tr').length === {size}")
    checks.get_by_text(f"Each of the {size} entries shown is in the signed log").wait_for()
    assert page.get_by_role("button", name="Show older entries").is_hidden()
    # The raw entry is one click away; a link to one entry opens the page there.
    page.goto(hub.url + "/#/audit?seq=3")
    row = page.locator("#audit tr[data-seq='3']")
    row.wait_for()
    assert row.locator("details.raw-details").get_attribute("open") is not None
    assert json.loads(row.locator("pre.raw-entry").inner_text())["seq"] == 3
    # An entry altered in the database (by someone who can write the file, so past its append-only
    # trigger) does not match the signed log, and the page says so.
    conn = sqlite3.connect(hub.data_dir / "camhub.sqlite", timeout=10)
    try:
        conn.execute("DROP TRIGGER audit_entries_no_update")
        entry = conn.execute("SELECT entry FROM audit_entries WHERE seq = ?", (size - 2,)).fetchone()[0]
        altered = bytes(entry).replace(b"max_age_days", b"max_age_dayz")
        assert altered != bytes(entry)
        conn.execute("UPDATE audit_entries SET entry = ? WHERE seq = ?", (altered, size - 2))
        conn.commit()
    finally:
        conn.close()
    page.goto(hub.url + "/#/audit")
    checks.get_by_text("are NOT in the signed log").wait_for()
    assert "not in the signed log" in page.locator(f"#audit tr[data-seq='{size - 2}']").inner_text()


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
    """The page's RFC 9162 code (lib/merkle.js: consistency and inclusion proofs), run in Chromium,
    against the hub's own tree."""
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(33)]
    tree = MerkleTree(leaves)
    b64 = lambda h: base64.b64encode(h).decode()  # noqa: E731
    cases = [
        {"m": m, "n": n, "old": b64(tree.root(m)), "new": b64(tree.root(n)),
         "proof": [b64(h) for h in tree.consistency_proof(m, n)]}
        for n in range(1, 34) for m in range(1, n + 1)
    ]  # fmt: skip
    inclusion = [
        {"i": i, "n": n, "root": b64(tree.root(n)), "proof": [b64(h) for h in tree.inclusion_proof(i, n)]}
        for n in range(1, 34) for i in range(n)
    ]  # fmt: skip
    hub = make_hub()
    page = context.new_page()
    page.goto(hub.url + "/")
    result = page.evaluate(
        """async ({cases, leaves, inclusion}) => {
          const m = await import("/ui/lib/merkle.js");
          const { unb64 } = await import("/ui/lib/b64.js");
          let good = 0, forged = 0;
          for (const c of cases) {
            const proof = c.proof.map(unb64);
            if (await m.verifyConsistency(c.m, c.n, unb64(c.old), unb64(c.new), proof)) good++;
            if (c.m < c.n && await m.verifyConsistency(c.m, c.n, unb64(c.new), unb64(c.new), proof)) forged++;
          }
          const root = await m.treeHash(leaves.map(unb64));
          let included = 0, misplaced = 0;
          for (const c of inclusion) {
            const proof = c.proof.map(unb64);
            if (await m.verifyInclusion(c.i, c.n, unb64(leaves[c.i]), proof, unb64(c.root))) included++;
            // The same proof for the neighbouring leaf, or for another position, must not verify.
            if (await m.verifyInclusion(c.i, c.n, unb64(leaves[(c.i + 1) % 33]), proof, unb64(c.root))) misplaced++;
            if (c.n > 1 && await m.verifyInclusion((c.i + 1) % c.n, c.n, unb64(leaves[c.i]), proof, unb64(c.root))) misplaced++;
          }
          return { good, forged, root: m.b64(root), included, misplaced };
        }""",
        {"cases": cases, "leaves": [b64(h) for h in leaves], "inclusion": inclusion},
    )
    assert result == {
        "good": len(cases),
        "forged": 0,
        "root": b64(tree.root(33)),
        "included": len(inclusion),
        "misplaced": 0,
    }
