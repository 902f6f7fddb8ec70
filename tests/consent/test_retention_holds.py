"""Retention the owner controls (PROTOCOL §3, §3.2): max age is a hard limit for segments, deliveries
and exports; only the owner's signed hold, a pending request (until respond_by, cut to receipt time and
to max age + respond_by_days) or an approval not yet built keep footage past it.

End to end: the real daemon with indexed footage, the owner holds one range, an agency has one request
pending and one declined, one approved and delivered; `camhub export` writes two files. Then the owner
shortens max age (a restart with a new camhub.toml) and the test watches what retention deletes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from camhub_protocol import rfc3339
from hub.store import consent as q
from tests.conftest import free_port
from tests.consent.flow_env import CAMERA, HubEnv, start_hub_env

LONG = "[storage]\nmax_age_days = 30\n"
SHORT = "[storage]\nmax_age_days = 0.0002\n"  # 17 s: all the indexed footage is past it


def _camera() -> str:
    return f'\n[[cameras]]\nid = "{CAMERA}"\nurl = "rtsp://127.0.0.1:{free_port()}/none"\nrecord = false\n'


def _segments(hub: HubEnv) -> list[tuple[float, float]]:
    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute("SELECT start_at, end_at FROM segments ORDER BY start_at")]
    finally:
        conn.close()


def _covered(segs: list[tuple[float, float]], start: float, end: float) -> bool:
    return any(s <= end and e >= start for s, e in segs)


def _export(hub: HubEnv, start: float, end: float, out: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "export", CAMERA, rfc3339.format(start), rfc3339.format(end),
         "-o", str(out), "--config", str(hub.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "deletes this file with the footage" in proc.stderr


def test_max_age_is_a_hard_limit_except_for_what_is_held(tmp_path: Path) -> None:
    hub = start_hub_env(tmp_path, extra_config=_camera() + LONG)
    try:
        t0 = hub.t0
        # The owner holds [t0+10, t0+20] for an insurer.
        r = hub.decide(
            {
                "decision": "hold",
                "subject": {
                    "cameras": [CAMERA], "start": rfc3339.format(t0 + 10), "end": rfc3339.format(t0 + 20),
                    "until": rfc3339.format(time.time() + 3600), "reason": "insurance claim for the dented car",
                    "asked_by": "Acme Insurance, claim 42",
                },
            }
        )  # fmt: skip
        assert r.status == 201, r.body
        hold_id = r.json()["hold_id"]
        # Bad holds: a range not recorded yet, an unknown camera, until past, wrong members.
        bad = [
            ({"end": rfc3339.format(time.time() + 3600)}, 400, "invalid_decision"),
            ({"cameras": ["nope"]}, 403, "unknown_camera"),
            ({"until": rfc3339.format(time.time() - 1)}, 400, "invalid_decision"),
            ({"reason": ""}, 400, "invalid_decision"),
        ]
        for change, status, code in bad:
            subject = {
                "cameras": [CAMERA], "start": rfc3339.format(t0 + 10), "end": rfc3339.format(t0 + 20),
                "until": rfc3339.format(time.time() + 3600), "reason": "x", "asked_by": "me", **change,
            }  # fmt: skip
            r = hub.decide({"decision": "hold", "subject": subject})
            assert (r.status, r.json()["error"]) == (status, code), (change, r.body)

        # An agency: one request pending, one declined, one approved and delivered.
        pending, _ = hub.submit(t0 + 40, t0 + 50)
        declined, declined_sha = hub.submit(t0 + 60, t0 + 66)
        d = hub.approval(declined, declined_sha, t0 + 60, t0 + 66)
        assert hub.decide({**d, "decision": "decline", "scope": None}).status == 201
        approved, approved_sha = hub.submit(t0 + 75, t0 + 85)
        assert hub.decide(hub.approval(approved, approved_sha, t0 + 75, t0 + 85)).status == 201
        state = hub.wait_status(approved, "fulfilled")
        assert len(state["deliveries"]) == 1

        # Two exports: one inside the owner's hold, one of footage nobody holds.
        held_export, loose_export = tmp_path / "held.mp4", tmp_path / "loose.mp4"
        _export(hub, t0 + 12, t0 + 18, held_export)
        _export(hub, t0 + 0, t0 + 6, loose_export)
        # Each export is a view, audited with who made it (PROTOCOL §5).
        exported = [e for e in hub.audit_entries() if e["type"] == "view.export"]
        assert [e["data"]["path"] for e in exported] == [
            str(held_export.resolve()),
            str(loose_export.resolve()),
        ]
        assert all(e["actor"].startswith("box:") and e["data"]["who"] == e["actor"] for e in exported)

        # The owner shortens max age: everything indexed is past it now.
        hub.config.write_text(hub.config.read_text().replace(LONG, SHORT))
        hub.restart()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            deleted = [e for e in hub.audit_entries() if e["type"] == "retention.deleted"]
            segs = _segments(hub)
            if (
                not loose_export.exists()
                and any(e["data"].get("deliveries") for e in deleted)
                and not _covered(segs, t0 + 61, t0 + 65)
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"retention did not run: {deleted}")

        segs = _segments(hub)
        assert _covered(segs, t0 + 11, t0 + 19), "the owner's hold was not kept"
        assert _covered(segs, t0 + 41, t0 + 49), "the pending request's range was not kept"
        assert not _covered(segs, t0 + 61, t0 + 65), "the declined request's range was kept"
        assert not _covered(segs, t0 + 25, t0 + 35), "unheld footage past max age was kept"
        assert not _covered(segs, t0 + 76, t0 + 84), "an approval whose delivery is built kept its range"
        assert held_export.exists() and not loose_export.exists()
        # The delivery aged out with its footage: the agency's fetch is now a 404.
        delivery_id = state["deliveries"][0]["url"].rsplit("/", 1)[-1]
        r = hub.signed("GET", f"/api/agency/v1/deliveries/{delivery_id}")
        assert (r.status, r.json()["error"]) == (404, "not_found")
        assert not list((hub.data_dir / "deliveries").glob(f"{delivery_id}*"))
        exports = [x for e in deleted for x in e["data"].get("exports", [])]
        assert str(loose_export.resolve()) in exports and str(held_export.resolve()) not in exports

        # The owner sees the holds with who asked and why.
        conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            detail = q.holds_detail(conn, time.time())
        finally:
            conn.close()
        mine = next(h for h in detail if h["reason"] == "owner_hold")
        assert (mine["hold_id"], mine["asked_by"], mine["why"], mine["key_name"]) == (
            hold_id, "Acme Insurance, claim 42", "insurance claim for the dented car", "test-owner",
        )  # fmt: skip
        theirs = next(h for h in detail if h["reason"] == "pending_request")
        assert theirs["request_id"] == pending and theirs["asked_by"] == "Test PD" and theirs["why"]

        # Releasing the hold lets retention take that footage too.
        # ... by the owner CLI (`camhub owner release-hold`), with the owner's key as a file.
        from tests.consent.test_flow_e2e import _pem

        key = tmp_path / "owner.key"
        key.write_bytes(_pem(hub))
        key.chmod(0o600)
        proc = subprocess.run(
            [sys.executable, "-m", "hub", "owner", "release-hold", "--url", hub.url, "--key", str(key),
             "--hold-id", hold_id],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        r = hub.decide({"decision": "release-hold", "subject": {"hold_id": hold_id}})
        assert (r.status, r.json()["error"]) == (403, "unknown_hold")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            _covered(_segments(hub), t0 + 11, t0 + 19) or held_export.exists()
        ):
            time.sleep(0.5)
        assert not _covered(_segments(hub), t0 + 11, t0 + 19) and not held_export.exists()
        types = [e["type"] for e in hub.audit_entries()]
        assert "hold.placed" in types and "hold.released" in types
    finally:
        hub.stop()


def test_agency_holds_are_cut_to_receipt_and_to_max_age_plus_respond_by() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    from hub.store import migrate

    migrate(conn)
    now = 1_000_000.0
    conn.execute(
        "INSERT INTO agencies (keyid, name, sig_jwk, recipient, added_at, added_by)"
        " VALUES ('a', 'PD', '{}', 'age1x', 0, 'd')"
    )
    body = b'{"reason": "theft"}'
    for rid, start, end, respond_by in (
        ("old", now - 5000, now - 4000, now + 100),  # partly older than max age + respond_by
        ("future", now - 50, now + 500, now + 100),  # asks past its receipt: cut at receipt
        ("expired", now - 50, now - 10, now - 1),  # respond_by passed: holds nothing
    ):
        conn.execute(
            "INSERT INTO consent_requests (id, agency_keyid, body, body_sha256, kind, cameras, start_at,"
            " end_at, received_at, respond_by) VALUES (?, 'a', ?, 'x', 'clip', '[\"cam\"]', ?, ?, ?, ?)",
            (rid, body, start, end, now, respond_by),
        )
    limits = q.HoldLimits(default_max_age_s=3000, respond_by_s=1500)
    held = q.holds(conn, now, limits)
    assert held == [("cam", now - 4500, now - 4000), ("cam", now - 50, now)]
    # Without a max age known, only receipt time cuts.
    assert q.holds(conn, now) == [("cam", now - 5000, now - 4000), ("cam", now - 50, now)]
