"""The Settings page shows the relay link (PROTOCOL §7): connected, then retrying while the relay's
NATS is away — and the hub keeps serving the owner meanwhile (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.relay.env import relay_config, single_node, start_relay, stopping
from tests.web.conftest import CAMERAS, login


def test_settings_show_the_relay_link_connected_then_retrying(
    make_hub: Any, context: Any, tmp_path: Path
) -> None:
    nats = single_node(tmp_path / "nats")
    relay = start_relay(tmp_path, [nats.url])
    with stopping(nats, relay):
        hub = make_hub(extra=CAMERAS + relay_config([nats.url], relay.url, area="u33db"))
        page = context.new_page()
        login(page, hub.url)
        page.goto(hub.url + "/#/settings")
        state = page.locator("#relay-state")
        expected = f"connected: agencies reach this hub at {relay.url}/hubs/{hub.daemon.hub_id}, area u33db"
        for _ in range(100):  # the link connects in the background: reload until it says so
            state.wait_for()
            if state.inner_text() == expected:
                break
            page.reload()
            page.wait_for_timeout(200)
        assert state.inner_text() == expected

        nats.kill()
        for _ in range(100):
            page.reload()
            state.wait_for()
            if state.inner_text().startswith("retrying to the relay"):
                break
            page.wait_for_timeout(200)
        assert state.inner_text().startswith("retrying to the relay"), state.inner_text()
        assert state.inner_text().endswith("the hub works as usual meanwhile")
        # The owner's pages still answer while the relay is away.
        assert "Front door" in page.locator("#cameras").inner_text()
