"""The password and session rules over raw HTTP, each with its refusal and audit entry."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.api.session import check_password, hash_password
from hub.consent import owner_client
from tests.web.conftest import PASSWORD

NEW_PASSWORD = "a whole new passphrase"


def _call(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST" if data is not None else "GET",
        headers={"Content-Type": "application/json", **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"{}"), res.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers


def _proof(
    key: Ed25519PrivateKey,
    hub_id: str,
    *,
    issued: dt.datetime | None = None,
    jti: str | None = None,
    purpose: str = "set-password",
) -> str:
    issued_at = None if issued is None else issued.timestamp()
    return owner_client.password_proof(key, hub_id, issued_at=issued_at, jti=jti, purpose=purpose)


def test_password_needs_a_fresh_single_use_proof_from_an_enrolled_key(make_hub: Any) -> None:
    hub = make_hub()
    url = hub.url + "/api/v1/session/password"
    assert hub.owner_key is not None
    hub_id = hub.daemon.hub_id
    # No proof, a stranger's key, another hub, a stale proof, another purpose: all refused.
    cases = [
        ({"password": NEW_PASSWORD}, 400, "bad_proof"),
        ({"password": NEW_PASSWORD, "proof": _proof(Ed25519PrivateKey.generate(), hub_id)}, 403, "unknown_owner_key"),
        ({"password": NEW_PASSWORD, "proof": _proof(hub.owner_key, "another-hub")}, 403, "bad_proof"),
        ({"password": NEW_PASSWORD, "proof": _proof(hub.owner_key, hub_id, issued=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))}, 403, "bad_proof"),
        ({"password": NEW_PASSWORD, "proof": _proof(hub.owner_key, hub_id, purpose="login")}, 400, "bad_proof"),
        ({"password": "short", "proof": _proof(hub.owner_key, hub_id)}, 400, "bad_password_format"),
    ]  # fmt: skip
    for body, status, code in cases:
        got, answer, _ = _call(url, body)
        assert (got, answer["error"]) == (status, code), answer
    assert _call(hub.url + "/api/v1/session/login", {"password": NEW_PASSWORD})[0] == 401  # unchanged

    # A session that exists before the reset ends with it.
    _, _, headers = _call(hub.url + "/api/v1/session/login", {"password": PASSWORD})
    old_cookie = headers["Set-Cookie"].split(";")[0]
    assert _call(hub.url + "/api/v1/owner/cameras", headers={"Cookie": old_cookie})[0] == 200

    proof = _proof(hub.owner_key, hub_id)
    status, answer, headers = _call(url, {"password": NEW_PASSWORD, "proof": proof})
    assert status == 200 and answer["authenticated"] and headers["Set-Cookie"].startswith("camhub_session=")
    assert _call(hub.url + "/api/v1/owner/cameras", headers={"Cookie": old_cookie})[0] == 401
    # The same proof again is a replay.
    assert _call(url, {"password": "yet another passphrase", "proof": proof})[1]["error"] == "bad_proof"
    assert _call(hub.url + "/api/v1/session/login", {"password": NEW_PASSWORD})[0] == 200
    assert any(e["type"] == "owner.password_set" for e in hub.audit())


def test_logins_are_audited_and_rate_limited(make_hub: Any) -> None:
    """Wrong passwords cost the client an exponential wait, never a lock-out, and the log counts
    them instead of growing an entry per try (issue 12)."""
    hub = make_hub()
    url = hub.url + "/api/v1/session/login"
    assert _call(url, {"password": PASSWORD})[0] == 200
    for i in range(5):  # 4 free tries, the 5th imposes the first wait (2 s)
        assert _call(url, {"password": f"wrong password {i}"})[1]["error"] == "bad_password"
    for _ in range(3):
        status, answer, headers = _call(url, {"password": PASSWORD})
        assert (status, answer["error"]) == (429, "rate_limited")
        assert 1 <= int(headers["Retry-After"]) <= 2
    types = [
        (e["type"], e["data"].get("reason"), e["data"].get("count"))
        for e in hub.audit()
        if e["type"].startswith("owner.login")
    ]
    # The first of each reason in a minute is an entry at once; the rest are counted.
    assert types == [
        ("owner.login", None, None),
        ("owner.login_failed", "bad_password", 1),
        ("owner.login_failed", "rate_limited", 1),
    ]
    # Not a lock: after Retry-After the right password logs in.
    refused = 3
    deadline = time.monotonic() + 10
    while (status := _call(url, {"password": PASSWORD})[0]) == 429 and time.monotonic() < deadline:
        refused += 1
        time.sleep(0.5)
    assert status == 200
    # The counts are written when the window ends, at the latest when the daemon stops.
    hub.daemon.stop()
    counted = [e["data"] for e in hub.audit() if e["type"] == "owner.login_failed" and e["data"]["count"] > 1]
    expected = {("bad_password", 4), ("rate_limited", refused - 1)}
    assert {(d["code"], d["count"]) for d in counted} == expected, counted
    assert all(d["route"] == "POST /api/v1/session/login" and d["first"] <= d["last"] for d in counted)


def _login_from(url: str, source: str, password: str) -> int:
    """POST a login from another loopback source address: another client to the hub."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10, source_address=(source, 0))
    try:
        body = json.dumps({"password": password})
        conn.request("POST", "/api/v1/session/login", body, {"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_stranger_cannot_lock_the_owner_out_of_login(make_hub: Any) -> None:
    """Another client's wrong passwords never slow the owner's client: limits are per client, and
    there is no global cap a stranger could trip for everyone (issue 12)."""
    hub = make_hub()
    for i in range(25):
        assert _login_from(hub.url, "127.0.0.2", f"wrong {i}") in (401, 429)
    assert _login_from(hub.url, "127.0.0.2", PASSWORD) == 429  # the stranger waits
    assert _login_from(hub.url, "127.0.0.1", PASSWORD) == 200  # the owner does not


def test_cross_origin_login_is_refused(make_hub: Any) -> None:
    hub = make_hub()
    status, answer, _ = _call(
        hub.url + "/api/v1/session/login", {"password": PASSWORD}, headers={"Origin": "http://evil.example"}
    )
    assert (status, answer["error"]) == (403, "csrf")


def test_scrypt_hash_round_trip() -> None:
    encoded = hash_password("correct horse battery", log_n=10)
    assert encoded.startswith("scrypt$10$8$1$")
    assert check_password("correct horse battery", encoded)
    assert not check_password("correct horse batterY", encoded)
    assert not check_password("x", "garbage")
    assert hash_password("same", log_n=10) != hash_password("same", log_n=10)  # salted
