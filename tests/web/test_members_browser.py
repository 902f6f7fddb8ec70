"""Household members in the browser (PROTOCOL §1.2, issue 19): the owner invites from the Household
page, the invited person joins with the link and sees only their camera, Live and Timeline; what
they play is in the owner's "Who watched what" with their name, camera and range, filterable by
person. The new pages pass axe-core like every other page."""

from __future__ import annotations

import time
from typing import Any

from tests.web.conftest import assert_accessible, logged_in, login, wait_ready

MEMBER_PASSWORD = "robin's own passphrase"


def test_member_sees_only_their_camera_and_their_playback_is_in_the_view_log(
    make_hub: Any, context: Any, browser: Any
) -> None:
    start = time.time() - 3600
    hub = make_hub(segments_at=start)
    owner = context.new_page()
    login(owner, hub.url)

    # The owner invites Robin to the front door's recordings and live view, not the garage.
    owner.goto(hub.url + "/#/household")
    wait_ready(owner, "household")
    assert_accessible(owner, "household, empty")
    owner.get_by_label("Name (they log in with it)").fill("Robin")
    owner.get_by_label("Live of Front door").check()
    owner.get_by_label("Recordings of Front door").check()
    owner.get_by_role("button", name="Invite").click()
    link = owner.locator("#hh-link").inner_text()
    assert "/#/join/" in link
    owner.locator("#members").get_by_text("Robin").first.wait_for()
    assert_accessible(owner, "household, one invited")

    # Robin, in another browser, joins with the link and lands on Live with only the front door.
    robin_ctx = browser.new_context(viewport={"width": 1100, "height": 760}, timezone_id="UTC")
    robin_ctx.set_default_timeout(60_000)
    try:
        robin = robin_ctx.new_page()
        robin.goto(link)
        wait_ready(robin, "join")
        assert_accessible(robin, "join")
        robin.get_by_label("New password").fill(MEMBER_PASSWORD)
        robin.get_by_label("The same password again").fill(MEMBER_PASSWORD)
        robin.get_by_role("button", name="Join").click()
        logged_in(robin)
        wait_ready(robin, "live")
        nav = robin.get_by_role("navigation", name="Main")
        visible = [a.inner_text().strip() for a in nav.get_by_role("link").all() if a.is_visible()]
        assert visible == ["Live", "Timeline"], visible
        assert robin.locator("#main").get_by_text("Front door").count() >= 1
        assert robin.locator("#main").get_by_text("Garage").count() == 0
        assert_accessible(robin, "member live")
        # An owner page asked for by hand is the live page (and the hub refuses its API anyway).
        robin.goto(hub.url + "/#/inbox")
        wait_ready(robin, "live")
        assert robin.request.get(hub.url + "/api/v1/owner/requests").status == 403

        # Robin plays a recording of the front door.
        robin.goto(f"{hub.url}/#/timeline?camera=front-door&t={int(start) + 1}")
        wait_ready(robin, "timeline")
        assert [o.get_attribute("value") for o in robin.locator("#tl-camera option").all()] == ["front-door"]
        robin.wait_for_function(
            "() => { const v = document.querySelector('#tl-video'); return v && v.currentTime > 0.3; }",
            timeout=30_000,
        )
        assert_accessible(robin, "member timeline")
        # Logging out and back in by name works too.
        nav.get_by_role("button", name="Log out").click()
        robin.get_by_label("Your name").fill("robin")
        robin.get_by_label("Password").fill(MEMBER_PASSWORD)
        robin.get_by_role("button", name="Log in").click()
        logged_in(robin)
    finally:
        robin_ctx.close()

    # The owner plays a recording too, so that the person filter has two people to tell apart.
    assert owner.request.get(hub.url + "/api/v1/owner/segments/4.mp4").status == 200
    # The owner's "Who watched what" shows Robin's playback with name, camera and range.
    owner.goto(hub.url + "/#/views")
    wait_ready(owner, "views")
    table = owner.locator("#views")
    row = (
        table.locator("tbody tr", has_text="Robin (household)").filter(has_text="played the recording").first
    )
    row.wait_for()
    assert "Front door" in row.inner_text()
    owner.get_by_label("Person").select_option(label="Robin (household)")
    rows = table.locator("tbody tr")
    assert rows.count() >= 1
    assert all("Robin (household)" in rows.nth(i).inner_text() for i in range(rows.count()))
    owner.get_by_label("Person").select_option("owner")
    assert owner.locator("#views tbody tr").count() >= 1
    assert owner.locator("#views").get_by_text("Robin (household)").count() == 0
    assert_accessible(owner, "views, filtered")

    # Removing Robin from the Household page.
    owner.goto(hub.url + "/#/household")
    wait_ready(owner, "household")
    owner.get_by_role("button", name="Remove Robin").click()
    owner.get_by_role("dialog").get_by_role("button", name="Remove Robin").click()
    owner.get_by_text("Removed Robin.").wait_for()
    assert owner.locator("#members").count() == 0


def test_member_joins_with_a_passkey_logs_out_and_logs_back_in_with_it(
    make_hub: Any, context: Any, browser: Any
) -> None:
    """Chromium's CDP virtual authenticator (as in tests/web/test_passkeys.py; the hub opened as
    http://localhost with `passkey_rp_id = "localhost"`): Robin joins with a passkey instead of a
    password, logs out, logs back in with it by name, and sees only the camera the owner gave."""
    from tests.web.test_passkeys import VIRTUAL_AUTHENTICATOR
    from tests.web.test_settings_api import Owner

    hub = make_hub(hub_keys='passkey_rp_id = "localhost"')
    url = hub.url.replace("127.0.0.1", "localhost")  # a secure context whose host is the rpId
    owner = Owner(hub.url)
    owner.login()
    rights = {"front-door": {"live": True, "recordings": True}}
    status, invite = owner.call("POST", "/api/v1/owner/members", {"name": "Robin", "rights": rights})
    assert status == 201, invite

    robin = context.new_page()
    cdp = context.new_cdp_session(robin)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    robin.goto(url + invite["link"])
    wait_ready(robin, "join")
    assert_accessible(robin, "join, with a passkey offered")
    robin.get_by_role("button", name="Use a passkey instead").click()
    logged_in(robin)
    wait_ready(robin, "live")
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})
    assert len(creds["credentials"]) == 1 and creds["credentials"][0]["rpId"] == "localhost"
    joined = [e for e in hub.audit() if e["type"] == "member.joined"]
    assert joined[-1]["data"]["via"] == "passkey" and joined[-1]["data"]["member"] == invite["id"]

    nav = robin.get_by_role("navigation", name="Main")
    nav.get_by_role("button", name="Log out").click()
    robin.get_by_label("Your name").fill("robin")
    assert_accessible(robin, "login, with a passkey offered")
    robin.get_by_role("button", name="Log in with a passkey").click()
    logged_in(robin)
    wait_ready(robin, "live")
    visible = [a.inner_text().strip() for a in nav.get_by_role("link").all() if a.is_visible()]
    assert visible == ["Live", "Timeline"], visible
    assert robin.locator("#main").get_by_text("Front door").count() >= 1
    assert robin.locator("#main").get_by_text("Garage").count() == 0
    cameras = robin.request.get(url + "/api/v1/owner/cameras").json()["cameras"]
    assert [c["id"] for c in cameras] == ["front-door"], cameras
    logins = [e for e in hub.audit() if e["type"] == "member.login"]
    assert (
        logins and logins[-1]["actor"] == f"member:{invite['id']}" and logins[-1]["data"]["via"] == "passkey"
    )
    # The passkey made no owner key.
    owner_keys = [e for e in hub.audit() if e["type"] == "key.enrolled"]
    assert all(e["data"].get("credential_id") != creds["credentials"][0]["credentialId"] for e in owner_keys)
