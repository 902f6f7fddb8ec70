"""Web Push (PROTOCOL §8.3) to a push service on 127.0.0.1: VAPID verified with py-vapid, bodies
decrypted with http-ece using the keys a browser would hold; no details by default; a push service
that hangs or is gone never blocks the hub, and what is lost is counted and shown."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.notify.env import start, status, wait_for
from tests.notify.servers import Browser, PushService


def test_a_request_is_pushed_encrypted_and_vapid_signed_without_details(tmp_path: Path) -> None:
    with PushService() as push:
        env, owner = start(tmp_path, "[notify]\noffline_after_s = 2\n")
        try:
            st = status(owner)
            assert st["vapid_public_key"] and st["status"]["push"]["configured"]
            assert (env.data_dir / "keys" / "vapid.pem").stat().st_mode & 0o077 == 0
            phone = Browser()
            push.browsers["phone"] = phone
            code, body = owner.call(
                "POST", "/api/v1/owner/push/subscriptions",
                {"endpoint": push.endpoint("ok", "phone"), "keys": phone.keys(), "name": "phone"},
            )  # fmt: skip
            assert code == 201, body
            sub_id = body["id"]
            # Without the CSRF token or a session: refused.
            assert owner.call("DELETE", f"/api/v1/owner/push/subscriptions/{sub_id}", csrf=False)[0] == 403

            request_id, _ = env.submit(env.t0, env.t0 + 30)
            got = wait_for(
                "a pushed request", lambda: [r for r in push.received if r.message["event"] == "request"]
            )
            msg = got[0].message
            assert msg == {
                "v": 1,
                "event": "request",
                "title": "A request is waiting",
                "body": "",
                "url": "/#/inbox",
            }
            assert got[0].headers["urgency"] == "high" and int(got[0].headers["ttl"]) > 0
            assert not push.errors, push.errors
            # A camera added now that never answers is reported offline after offline_after_s (one
            # configured before the subscription existed may have been reported to nobody already).
            code, body = owner.call(
                "POST", "/api/v1/owner/settings/cameras",
                {"id": "back-yard", "url": f"rtsp://127.0.0.1:{free_port()}/none", "record": False},
            )  # fmt: skip
            assert code == 201, body
            wait_for(
                "camera offline push",
                lambda: [r for r in push.received if r.message["event"] == "camera_offline"],
            )

            # Details on: the text names what was asked (never footage, never the request body).
            code, body = owner.call("PATCH", "/api/v1/owner/notifications", {"details": True})
            assert code == 200 and body["details"] is True, body
            env.submit(env.t0, env.t0 + 20)
            detailed = wait_for(
                "a detailed push",
                lambda: [r for r in push.received if r.message["event"] == "request" and r.message["body"]],
            )
            assert detailed[0].message["body"] == "clip of front-door", detailed[0].message
            entries = [e for e in env.audit_entries() if e["type"] == "settings.changed"]
            assert {e["data"]["change"] for e in entries} >= {"push.subscribed", "notifications"}
            assert all("endpoint" not in e["data"] for e in entries)
            assert not any(push.endpoint("ok", "phone") in str(e) for e in entries)
            assert request_id
        finally:
            env.stop()


def test_a_hanging_or_gone_push_service_never_blocks_the_hub(tmp_path: Path) -> None:
    with PushService() as push:
        env, owner = start(tmp_path, "[push]\ntimeout_s = 0.5\n[notify]\nmax_attempts = 2\nqueue_size = 3\n")
        try:
            for kind, name in (("hang", "a"), ("gone", "b")):
                b = Browser()
                code, body = owner.call(
                    "POST", "/api/v1/owner/push/subscriptions",
                    {"endpoint": push.endpoint(kind, name), "keys": b.keys(), "name": name},
                )  # fmt: skip
                assert code == 201, body
            # Requests keep being taken at once while the push service hangs (the queue drops the rest).
            for i in range(6):
                env.submit(env.t0, env.t0 + 10 + i)

            def dropped_and_expired() -> dict[str, Any] | None:
                st = status(owner)
                counts = st["status"]["push"]
                return st if counts["dropped"] > 0 and counts["expired"] >= 1 else None

            st = wait_for("drops counted and the gone subscription removed", dropped_and_expired)
            assert [s["name"] for s in st["subscriptions"]] == ["a"], st["subscriptions"]
            assert st["status"]["push"]["failed"] >= 1
            # The owner UI's routes still answer, and consent still works.
            assert owner.call("GET", "/api/v1/owner/requests")[0] == 200
            started = time.monotonic()
            env.submit(env.t0, env.t0 + 40)
            assert time.monotonic() - started < 30  # not a speed goal: a submit must not wait on push
            assert push.hits.get("/gone/b") == 1  # 410 ends it: never retried
        finally:
            env.stop()


def test_subscription_input_is_checked(tmp_path: Path) -> None:
    env, owner = start(tmp_path, "")
    try:
        good = Browser().keys()
        cases = [
            ({"endpoint": "http://push.example/x", "keys": good}, "bad_subscription"),
            ({"endpoint": "https://u:p@push.example/x", "keys": good}, "bad_subscription"),
            ({"endpoint": "https://push.example/x", "keys": {**good, "auth": "AAAA"}}, "bad_subscription"),
            (
                {"endpoint": "https://push.example/x", "keys": {**good, "p256dh": good["auth"]}},
                "bad_subscription",
            ),
            ({"endpoint": "https://push.example/" + "x" * 3000, "keys": good}, "bad_subscription"),
            ({"endpoint": "https://push.example/x"}, "bad_subscription"),
        ]
        for body, error in cases:
            code, answer = owner.call("POST", "/api/v1/owner/push/subscriptions", body)
            assert (code, answer["error"]) == (400, error), (body, answer)
        # The same endpoint again replaces its keys (200, same id); at most 20; removal is by id. The
        # endpoints are loopback and the channel is off: nothing is sent anywhere from this test.
        assert owner.call("PATCH", "/api/v1/owner/notifications", {"channels": {"push": False}})[0] == 200
        first = {"endpoint": "https://127.0.0.1:9/sub/0", "keys": good, "name": "phone"}
        code, created = owner.call("POST", "/api/v1/owner/push/subscriptions", first)
        assert code == 201, created
        code, again = owner.call(
            "POST", "/api/v1/owner/push/subscriptions", {**first, "keys": Browser().keys()}
        )
        assert (code, again["id"]) == (200, created["id"]), again
        for i in range(1, 20):
            sub = {"endpoint": f"https://127.0.0.1:9/sub/{i}", "keys": good}
            assert owner.call("POST", "/api/v1/owner/push/subscriptions", sub)[0] == 201
        code, answer = owner.call(
            "POST",
            "/api/v1/owner/push/subscriptions",
            {"endpoint": "https://127.0.0.1:9/sub/20", "keys": good},
        )
        assert (code, answer["error"]) == (409, "too_many_subscriptions"), answer
        listed = status(owner)["subscriptions"]
        assert len(listed) == 20 and {s["origin"] for s in listed} == {"https://127.0.0.1:9"}
        assert all("endpoint" not in s and "keys" not in s for s in listed)
        assert owner.call("DELETE", f"/api/v1/owner/push/subscriptions/{created['id']}")[0] == 200
        assert owner.call("DELETE", f"/api/v1/owner/push/subscriptions/{created['id']}")[0] == 404
        code, answer = owner.call("PATCH", "/api/v1/owner/notifications", {"events": {"nope": True}})
        assert (code, answer["error"], answer["field"]) == (400, "bad_setting", "events"), answer
        code, answer = owner.call("PATCH", "/api/v1/owner/notifications", {"colour": 1})
        assert code == 400 and answer["error"] == "bad_setting", answer
        code, answer = owner.call(
            "PATCH",
            "/api/v1/owner/notifications",
            {"motion_cameras": ["front-door"], "channels": {"push": False}},
        )
        assert (
            code == 200 and answer["motion_cameras"] == ["front-door"] and answer["channels"]["push"] is False
        )
        # Kept across a restart.
        env.restart()
        owner.login()
        st = status(owner)
        assert st["motion_cameras"] == ["front-door"] and st["channels"] == {"mqtt": True, "push": False}
    finally:
        env.stop()
