"""Household members over raw HTTP against the real daemon (PROTOCOL §1.2): invites are single use,
expire and are limited per client; a member logs in by name; a member can never sign or enrol a
key; removing a member ends their session and their live view, narrowing their rights ends the view."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub.consent import owner_client
from tests.security.test_floods import Client
from tests.web.conftest import CAMERAS
from tests.web.test_settings_api import Owner

MEMBER_PASSWORD = "kitchen table 42"
LIVE_FRONT = {"front-door": {"live": True, "recordings": False}}


class Member(Owner):
    def join(self, code: str, password: str = MEMBER_PASSWORD) -> tuple[int, Any]:
        status, body = self.call("POST", "/api/v1/members/join", {"code": code, "password": password})
        if status == 200:
            self.csrf = body["csrf"]
        return status, body

    def login_as(self, name: str, password: str = MEMBER_PASSWORD) -> tuple[int, Any]:
        status, body = self.call("POST", "/api/v1/session/login", {"member": name, "password": password})
        if status == 200:
            self.csrf = body["csrf"]
        return status, body


def _invite(owner: Owner, name: str, rights: dict[str, Any]) -> dict[str, Any]:
    status, body = owner.call("POST", "/api/v1/owner/members", {"name": name, "rights": rights})
    assert status == 201, body
    return body


def _status(client: Owner, path: str) -> int:
    try:
        with client.opener.open(client.url + path, timeout=20) as res:
            res.read()
            return int(res.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _owner_keys(hub: Any) -> int:
    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM owner_keys").fetchone()[0])
    finally:
        conn.close()


def test_invites_are_single_use_expire_and_are_limited_per_client(make_hub: Any) -> None:
    hub = make_hub()
    owner = Owner(hub.url)
    owner.login()
    keys_before = _owner_keys(hub)

    # What the owner may not invite: a bad name, rights on an unknown camera, a taken name.
    assert owner.call("POST", "/api/v1/owner/members", {"name": "", "rights": {}})[1]["error"] == "bad_name"
    bad = {"name": "Ann", "rights": {"attic": {"live": True}}}
    assert owner.call("POST", "/api/v1/owner/members", bad) == (
        400,
        {"error": "bad_rights", "detail": "no such camera: attic"},
    )
    invite = _invite(owner, "Ann", LIVE_FRONT)
    assert invite["link"] == f"/#/join/{invite['code']}" and invite["expires_at"] > time.time() + 23 * 3600
    assert owner.call("POST", "/api/v1/owner/members", {"name": "ANN", "rights": {}})[0] == 409

    # The code is single use: the first join logs in, the second is refused.
    ann = Member(hub.url)
    status, body = ann.join(invite["code"])
    assert status == 200 and body["authenticated"], body
    assert ann.call("GET", "/api/v1/session")[1]["role"] == "member"
    again = Member(hub.url)
    assert again.join(invite["code"], "another password!")[1]["error"] == "bad_invite_code"  # wrong try 1
    # ... and the member logs in by name (ignoring case) with the password they chose.
    assert Member(hub.url).login_as("ann")[0] == 200
    assert Member(hub.url).login_as("Ann", "wrong password!")[1]["error"] == "bad_password"
    assert Member(hub.url).login_as("Nobody")[1]["error"] == "bad_password"
    owner.login()  # the owner's login works alongside (and forgets this client's wrong passwords)

    # An expired code is refused like a wrong one.
    late = _invite(owner, "Bo", LIVE_FRONT)
    conn = sqlite3.connect(hub.data_dir / "camhub.sqlite", timeout=10)
    try:
        conn.execute("UPDATE members SET invite_expires_at = ? WHERE id = ?", (time.time() - 1, late["id"]))
        conn.commit()
    finally:
        conn.close()
    bo = Member(hub.url)
    assert bo.join(late["code"])[1]["error"] == "bad_invite_code"  # wrong try 2

    # Wrong codes are limited per client: past two, each costs a wait (2, 4, … s) during which even
    # the right code is not looked at (429 + Retry-After). Bounded: the waits grow, so a 429 comes.
    fresh = _invite(owner, "Cy", LIVE_FRONT)
    seen = []
    for _ in range(6):
        status, body = bo.join("x" * 22)
        seen.append(status)
        if status == 429:
            break
        assert body["error"] == "bad_invite_code", body
    assert seen[-1] == 429, seen
    assert Member(hub.url).join(fresh["code"])[0] == 429  # the right code waits too
    # ... for this client only: another address is looked at (and told its code is wrong).
    neighbour = Client(hub.url, source="127.0.0.2")
    try:
        status, _, raw = neighbour.call(
            "POST", "/api/v1/members/join", json.dumps({"code": "y" * 22, "password": MEMBER_PASSWORD}).encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
    finally:
        neighbour.close()
    assert (status, json.loads(raw)["error"]) == (403, "bad_invite_code")
    deadline = time.monotonic() + 70
    while (result := Member(hub.url).join(fresh["code"]))[0] == 429 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result[0] == 200, result

    # A member can do nothing an owner does, and can sign nothing: owner routes say owner_only, a
    # decision signed by a key the member made is refused, and no member path added an owner key.
    for method, path, body in (
        ("POST", "/api/v1/owner/device-requests", {"public_jwk": {}, "name": "x"}),
        ("GET", "/api/v1/owner/requests", None),
        ("GET", "/api/v1/owner/members", None),
        ("POST", "/api/v1/owner/members", {"name": "Eve", "rights": {}}),
        ("GET", "/api/v1/owner/audit/entries", None),
        ("GET", "/api/v1/owner/settings", None),
    ):
        assert ann.call(method, path, body) == (
            403,
            {"error": "owner_only", "detail": "only the owner may do this"},
        ), path
    mine = Ed25519PrivateKey.generate()
    jwk = okp_public_jwk(Ed25519PrivateKey.generate().public_key())
    decision = {"decision": "enroll-key", "subject": {"public_jwk": jwk, "name": "ann's phone"}}
    try:
        owner_client.decide(hub.url, mine, decision)
        raise AssertionError("a decision signed by a non-owner key was accepted")
    except owner_client.HubHTTPError as exc:
        assert exc.status == 403, exc
    assert _owner_keys(hub) == keys_before
    assert jwk_thumbprint(jwk) not in {
        e["data"].get("kid") for e in hub.audit() if e["type"] == "key.enrolled"
    }
    types = [e["type"] for e in hub.audit()]
    assert (
        types.count("member.invited") == 3 and types.count("member.joined") == 2 and "member.login" in types
    )


def _watch(url: str, member: Member, out: dict[str, Any]) -> None:
    """Read an MJPEG stream until it ends; records how many bytes and when it ended."""
    req = urllib.request.Request(url)
    try:
        with member.opener.open(req, timeout=15) as res:
            out["status"] = res.status
            while chunk := res.read(4096):
                out["bytes"] = out.get("bytes", 0) + len(chunk)
    except Exception as exc:  # a timeout means the stream did not end
        out["error"] = repr(exc)
    out["ended_at"] = time.monotonic()


def _start_watch(hub: Any, member: Member, camera: str) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(
        target=_watch, args=(f"{hub.url}/api/v1/owner/cameras/{camera}/mjpeg", member, out)
    )
    thread.start()
    deadline = time.monotonic() + 30
    while out.get("bytes", 0) < 2000 and "ended_at" not in out and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.get("bytes", 0) >= 2000, out  # it streams
    return thread, out


def test_removing_or_narrowing_a_member_ends_their_live_view(
    make_hub: Any, sim_camera: dict[str, Any]
) -> None:
    sim = sim_camera["camera"]
    extra = (
        CAMERAS
        + f'\n[[cameras]]\nid = "{sim}"\nname = "Sim"\nurl = "{sim_camera["rtsp_main"]}"\nrecord = false\n'
    )
    hub = make_hub(extra=extra)
    owner = Owner(hub.url)
    owner.login()
    rights = {sim: {"live": True, "recordings": False}}
    dee, eli = Member(hub.url), Member(hub.url)
    dee_invite, eli_invite = _invite(owner, "Dee", rights), _invite(owner, "Eli", rights)
    assert dee.join(dee_invite["code"])[0] == 200 and eli.join(eli_invite["code"])[0] == 200
    deadline = time.monotonic() + 30  # the camera's first picture
    while _status(dee, f"/api/v1/owner/cameras/{sim}/snapshot.jpg") == 503 and time.monotonic() < deadline:
        time.sleep(0.3)

    # Narrowing: Eli loses `live` on the camera; the open view ends and a new one is refused.
    thread, out = _start_watch(hub, eli, sim)
    status, body = owner.call(
        "PATCH",
        f"/api/v1/owner/members/{eli_invite['id']}",
        {"rights": {sim: {"live": False, "recordings": True}}},
    )
    assert status == 200 and body["rights"][sim] == {"live": False, "recordings": True}, body
    thread.join(20)
    assert not thread.is_alive() and "error" not in out, out
    assert _status(eli, f"/api/v1/owner/cameras/{sim}/snapshot.jpg") == 403

    # Removal: Dee's view ends, and so does her session (every route answers no_session).
    thread, out = _start_watch(hub, dee, sim)
    status, _ = owner.call("DELETE", f"/api/v1/owner/members/{dee_invite['id']}")
    assert status == 204
    thread.join(20)
    assert not thread.is_alive() and "error" not in out, out
    assert dee.call("GET", "/api/v1/owner/cameras") == (
        401,
        {"error": "no_session", "detail": "log in first"},
    )
    assert Member(hub.url).login_as("Dee")[1]["error"] == "bad_password"
    assert Member(hub.url).join(dee_invite["code"])[1]["error"] == "bad_invite_code"
    assert owner.call("DELETE", f"/api/v1/owner/members/{dee_invite['id']}")[0] == 404
    removed = [e for e in hub.audit() if e["type"] == "member.removed"]
    assert removed and removed[0]["data"] == {"member": dee_invite["id"], "name": "Dee", "sessions_ended": 1}
    ends = [
        e for e in hub.audit() if e["type"] == "view.live.end" and e["actor"] == f"member:{dee_invite['id']}"
    ]
    assert ends and ends[0]["data"]["name"] == "Dee"
