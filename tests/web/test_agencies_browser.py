"""Removing an agency in the browser (PROTOCOL §3 remove-agency): the dialog names the agency and says
what removing does; Cancel signs nothing; confirming signs a remove-agency for exactly that agency's
key, its open request closes (the agency's own poll is refused from then on) and the page says so."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from camhub_protocol import jws
from tests.web.conftest import onboard
from tests.web.test_consent_inbox import _agency, _utc


def test_remove_agency_asks_names_it_and_signs_only_when_confirmed(
    make_hub: Any, context: Any, tmp_path: Path
) -> None:
    t0 = float(int(time.time()) - 3600)
    hub = make_hub(password=False, segments_at=t0)
    page = context.new_page()
    onboard(page, hub)
    keep = _agency("keygen", str(tmp_path / "keep"))
    gone = _agency("keygen", str(tmp_path / "gone"))
    page.goto(hub.url + "/#/agencies")
    for name, ident in (("County Insurance", keep), ("Springfield PD", gone)):
        page.get_by_label("Name").fill(name)
        page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
        page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
        page.get_by_role("button", name="Add agency (sign)").click()
        page.locator("#agencies tbody tr").filter(has_text=name).wait_for()
    asked = _agency(
        "request", "--url", hub.url, "--key", str(tmp_path / "gone"), "--camera", "front-door",
        "--start", _utc(t0), "--end", _utc(t0 + 20), "--case-id", "2026-000900",
        "--reason", "Package theft reported", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip

    def decisions() -> list[dict[str, Any]]:
        return [e["data"] for e in hub.audit() if e["type"] == "decision.accepted"]

    before = len(decisions())
    row = page.locator("#agencies tbody tr").filter(has_text="Springfield PD")
    row.get_by_role("button", name="Remove Springfield PD").click()
    dialog = page.locator("dialog.confirm[open]")
    dialog.get_by_text("Remove Springfield PD?").wait_for()
    assert "every approval you gave it is revoked" in dialog.inner_text()
    # Cancel has the focus (a stray Enter signs nothing) and signs nothing.
    assert dialog.get_by_role("button", name="Cancel").evaluate("b => b === document.activeElement")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")
    page.wait_for_timeout(300)
    assert len(decisions()) == before
    assert (
        _agency("status", "--url", hub.url, "--key", str(tmp_path / "gone"), "--", asked["id"])["status"]
        == "pending"
    )

    row.get_by_role("button", name="Remove Springfield PD").click()
    page.locator("dialog.confirm[open]").get_by_role("button", name="Sign and remove").click()
    page.get_by_text("Removed Springfield PD.").wait_for()
    page.locator("#agencies tbody tr").filter(has_text="Springfield PD").get_by_text("removed").wait_for()
    page.locator("#agencies tbody tr").filter(has_text="County Insurance").get_by_role(
        "button", name="Remove County Insurance"
    ).wait_for()
    new = decisions()[before:]
    assert [d.get("decision") for d in new] == ["remove-agency"], new
    signed = json.loads(jws.b64url_decode_strict(new[0]["jws"].split(".")[1]))  # what the browser signed
    assert signed["decision"] == "remove-agency" and signed["subject"] == {"keyid": gone["keyid"]}, signed
    # The removed agency's key no longer opens anything on the hub, its request included.
    out = subprocess_status(tmp_path / "gone", hub.url, asked["id"])
    assert out.returncode != 0 and "unknown_key" in (out.stdout + out.stderr), out


def subprocess_status(key: Path, url: str, request_id: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hub.agency_client", "status", "--url", url, "--key", str(key), "--", request_id],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
