"""A simulated camera's doorbell press and visitor, end to end: the hub's own motion detection and
SSE listener, then Home Assistant (mosquitto) and Web Push (a push service on 127.0.0.1) are told;
motion only once the owner opts the camera in."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.notify.env import start, status, wait_for
from tests.notify.servers import Browser, PushService, mosquitto
from tests.notify.test_mqtt import Listener, mqtt_config

# The sim's frame stamp and clock overlay change every frame: masked, as in tests/events/test_against_sim.py.
MASKS = (
    "[[[0.0, 0.0], [1.0, 0.0], [1.0, 0.08], [0.0, 0.08]], [[0.0, 0.88], [1.0, 0.88], [1.0, 1.0], [0.0, 1.0]]]"
)


def _post(url: str) -> None:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


def _until_seen(what: str, trigger_url: str, seen: Any, every_s: float = 3, times: int = 4) -> None:
    """Trigger the simulator, and again every `every_s` until `seen()` (at most `times` triggers)."""
    for _ in range(times):
        _post(trigger_url)
        try:
            wait_for(what, seen, every_s)
            return
        except AssertionError:
            continue
    wait_for(what, seen, every_s)


def test_press_and_motion_reach_home_assistant_and_the_phone(
    tmp_path: Path, sim_camera: dict[str, Any]
) -> None:
    sim = sim_camera
    cam = sim["camera"]
    camera = (
        f'\n[[cameras]]\nid = "{cam}"\nname = "Porch"\nurl = "{sim["rtsp_main"]}"\nsub_url = "{sim["rtsp_sub"]}"\n'
        f'events_url = "{sim["events"]}"\nrecord = false\n[cameras.motion]\nenabled = true\nmasks = {MASKS}\n'
    )
    with mosquitto(tmp_path / "mqtt") as broker, PushService() as push, Listener(broker.port) as ha:
        env, owner = start(tmp_path, camera + mqtt_config(broker.port))
        base = f"camhub/{env.hub_id}"
        try:
            phone = Browser()
            push.browsers["phone"] = phone
            code, body = owner.call(
                "POST", "/api/v1/owner/push/subscriptions",
                {"endpoint": push.endpoint("ok", "phone"), "keys": phone.keys()},
            )  # fmt: skip
            assert code == 201, body
            wait_for(
                "camera online", lambda: ha.on(f"{base}/camera/{cam}/availability")[-1:] == [b"online"], 60
            )
            assert f"homeassistant/event/{env.hub_id}_{cam}_doorbell/config" in {t for t, _, _ in ha.messages}

            # The doorbell's SSE stream connects on its own schedule after the video: press until the
            # hub hears one (bounded), as a visitor would ring again.
            _until_seen(
                "doorbell event", f"{sim['control']}/press", lambda: ha.on(f"{base}/camera/{cam}/doorbell")
            )
            assert json.loads(ha.on(f"{base}/camera/{cam}/doorbell")[0]) == {"event_type": "press"}
            pressed = wait_for(
                "doorbell push", lambda: [r for r in push.received if r.message["event"] == "doorbell"]
            )
            assert pressed[0].message["title"] == "Doorbell" and pressed[0].message["body"] == ""
            assert pressed[0].headers["urgency"] == "high"

            # Motion is opt-in per camera: the owner opts this one in.
            code, body = owner.call("PATCH", "/api/v1/owner/notifications", {"motion_cameras": [cam]})
            assert code == 200, body
            _until_seen(
                "motion ON then OFF",
                f"{sim['control']}/visitor",
                lambda: ha.on(f"{base}/camera/{cam}/motion")[-2:] == [b"ON", b"OFF"],
                every_s=20,
            )
            # The push worker runs on its own: wait for it rather than assume it kept up with MQTT.
            moved = wait_for(
                "motion push", lambda: [r for r in push.received if r.message["event"] == "motion"]
            )
            assert moved[0].headers["urgency"] == "normal" and moved[0].message["body"] == ""
            assert not push.errors, push.errors
            assert status(owner)["status"]["push"]["dropped"] == 0
        finally:
            env.stop()
