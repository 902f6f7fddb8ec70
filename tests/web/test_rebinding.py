"""DNS rebinding in a real browser (issue 12, PROTOCOL §1.1): Chromium resolves `rebind.example` to
the hub's address, as a rebinding attacker's DNS would, and loads it. The hub answers nothing but
421 to a Host that is not its own, so the attacker's page can read nothing and change nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS


def test_a_rebound_host_name_gets_nothing_from_the_hub(playwright: Any, make_hub: Any) -> None:
    hub = make_hub()
    port = urlsplit(hub.url).port
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.example 127.0.0.1"],
        headless=True,
    )
    try:
        page = browser.new_page()
        evil = f"http://rebind.example:{port}"
        response = page.goto(evil + "/")
        assert response is not None and response.status == 421
        assert "misdirected_request" in page.content()
        # The attacker's script, same-origin with the rebound name, tries the APIs.
        answers = page.evaluate(
            """async () => {
                const hub = await fetch('/api/v1/hub');
                const session = await fetch('/api/v1/session');
                const login = await fetch('/api/v1/session/login', {method: 'POST',
                    headers: {'Content-Type': 'application/json'}, body: '{"password": "guess"}'});
                return [hub.status, session.status, login.status, await hub.text()];
            }"""
        )
        assert answers[:3] == [421, 421, 421], answers
        assert json.loads(answers[3])["error"] == "misdirected_request"
        assert "hub_id" not in answers[3]
        # The same browser on the hub's own name gets the page.
        ok = page.goto(f"http://127.0.0.1:{port}/")
        assert ok is not None and ok.status == 200
        assert not [e for e in hub.audit() if e["type"] == "owner.login_failed"]
    finally:
        browser.close()
