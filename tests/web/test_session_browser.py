"""Sessions, CSRF and the guard, from a real browser and from raw HTTP."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from tests.web.conftest import PASSWORD, login, screenshot


def _status(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_owner_apis_refuse_without_a_session(make_hub: Any) -> None:
    hub = make_hub()
    for path in (
        "/api/v1/owner/cameras",
        "/api/v1/owner/timeline?camera=front-door&start=0&end=10",
        "/api/v1/owner/segments/1.mp4",
        "/api/v1/owner/requests",
        "/api/v1/owner/audit/entries",
    ):
        status, body = _status(hub.url + path)
        assert (status, body["error"]) == (401, "no_session"), path
    # A made-up cookie is no session either.
    status, body = _status(hub.url + "/api/v1/owner/cameras", headers={"Cookie": "camhub_session=forged"})
    assert (status, body["error"]) == (401, "no_session")


def test_login_logout_and_csrf(make_hub: Any, context: Any) -> None:
    hub = make_hub()
    page = context.new_page()
    page.goto(hub.url + "/")
    page.get_by_role("button", name="Log in").wait_for()
    screenshot(page, "login")
    res = page.request.get(hub.url + "/")
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"

    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong password.").wait_for()
    login(page, hub.url)
    cookie = next(c for c in context.cookies() if c["name"] == "camhub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

    # The session cookie alone does not make a state change: no token, a wrong token, a foreign Origin.
    logout_url = hub.url + "/api/v1/session/logout"
    r = page.request.post(logout_url)
    assert (r.status, r.json()["error"]) == (403, "csrf")
    r = page.request.post(logout_url, headers={"X-CSRF-Token": "x" * 43})
    assert (r.status, r.json()["error"]) == (403, "csrf")
    token = page.request.get(hub.url + "/api/v1/session").json()["csrf"]
    r = page.request.post(logout_url, headers={"X-CSRF-Token": token, "Origin": "http://127.0.0.1:1"})
    assert (r.status, r.json()["error"]) == (403, "csrf")
    assert page.request.get(hub.url + "/api/v1/owner/cameras").status == 200  # still logged in

    # A page on another port of the same host is the same *site*, so SameSite=Strict sends the
    # cookie: only the CSRF token stops its form post.
    attacker = context.new_page()
    attacker.route(
        "http://127.0.0.1:1/evil",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{logout_url}"></form>'
            "<script>document.forms[0].submit()</script>",
        ),
    )
    with attacker.expect_response(logout_url) as forged:
        attacker.goto("http://127.0.0.1:1/evil")
    assert forged.value.status == 403
    assert page.request.get(hub.url + "/api/v1/owner/cameras").status == 200

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    assert page.request.get(hub.url + "/api/v1/owner/cameras").status == 401


def test_login_is_rate_limited(make_hub: Any) -> None:
    hub = make_hub()
    url = hub.url + "/api/v1/session/login"
    headers = {"Content-Type": "application/json"}
    codes = [
        _status(url, "POST", json.dumps({"password": f"nope-{i}-xxxxx"}).encode(), headers)[0]
        for i in range(5)
    ]
    assert codes == [401] * 5
    status, body = _status(url, "POST", json.dumps({"password": PASSWORD}).encode(), headers)
    assert (status, body["error"]) == (429, "rate_limited")  # even the right password waits
    assert re.search(r"try again in \d+ s", body["detail"])


def test_a_changed_hub_identity_is_flagged(make_hub: Any, context: Any) -> None:
    hub = make_hub()
    page = context.new_page()
    page.goto(hub.url + "/")
    page.get_by_role("button", name="Log in").wait_for()
    assert page.evaluate("localStorage.getItem('camhub.hub_id')") == hub.daemon.hub_id  # pinned on first use
    # Another box answering at this address (or the hub's key replaced) is shown before anything is signed.
    page.evaluate("localStorage.setItem('camhub.hub_id', 'a-different-hub-id-seen-before')")
    page.reload()
    page.get_by_role("alert").filter(has_text="this hub's identity changed").wait_for()
