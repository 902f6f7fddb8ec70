"""An ONVIF camera end to end: the hub daemon and `camhub-sim` as separate processes on 127.0.0.1.

WS-Discovery by unicast probes to the simulator's responder (`[discovery] onvif_targets`); the owner
adds the listed camera with its credentials, the hub reads and stores its stream URIs and records;
a press on the simulator becomes a doorbell event in the owner's events; the simulator is
restarted and the hub subscribes again by itself; the password never reaches the log."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import free_port
from tests.web.test_settings_api import Owner, _wait_online

SIM_USER, SIM_PASSWORD = "admin", "onvif-e2e-Secret"
DEADLINE_S = 60.0


class Sim:
    """`camhub-sim` with ONVIF on fixed ports, so that it can be stopped and started again."""

    def __init__(self) -> None:
        self.ports = {"rtsp": free_port(), "control": free_port(), "onvif": free_port(), "wsd": free_port()}
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> None:
        p = self.ports
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from firmware_sim.cli import main; sys.exit(main())",
             "--cameras", "1", "--rtsp-port", str(p["rtsp"]), "--control-port", str(p["control"]),
             "--onvif-port", str(p["onvif"]), "--wsd-port", str(p["wsd"]), "--no-mdns",
             "--user", SIM_USER, "--password", SIM_PASSWORD,
             "--width", "640", "--height", "360", "--gop", "15", "--loop-s", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout or []], daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("camhub-sim did not become ready") from None
            if line.strip() == "ready":
                return
            if line.startswith("{"):
                self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def press(self) -> None:
        req = urllib.request.Request(self.info["control"] + "/press", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as res:
            assert res.status == 202


@pytest.fixture
def sim() -> Iterator[Sim]:
    s = Sim()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _until(predicate: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _presses(owner: Owner, camera: str) -> list[dict[str, Any]]:
    status, body = owner.call("GET", f"/api/v1/owner/events?camera={camera}&kind=press")
    assert status == 200, body
    return list(body["events"])


def test_onvif_camera_found_added_pressed_and_resubscribed_after_a_restart(make_hub: Any, sim: Sim) -> None:
    onvif_url = sim.info["onvif"]
    hub = make_hub(
        password=True,
        extra="",
        discovery=(
            "enabled = true\nadvertise = false\nbrowse = false\nonvif = true\n"
            f'onvif_probe_interval_s = 1\nonvif_targets = ["127.0.0.1:{sim.ports["wsd"]}"]'
        ),
    )
    owner = Owner(hub.url)
    owner.login()

    def listed() -> dict[str, Any] | None:
        status, body = owner.call("GET", "/api/v1/owner/cameras")
        assert status == 200
        return next((d for d in body["discovered"] if d.get("protocol") == "onvif"), None)

    found = _until(listed, "the camera to be listed by WS-Discovery")
    assert found["onvif_url"] == onvif_url and found["instance"] == "sim-1" and found["added_as"] is None
    assert owner.call("GET", "/api/v1/owner/cameras")[1]["cameras"] == []  # listed, never added by itself

    new = {"id": "porch", "onvif": onvif_url, "username": SIM_USER, "password": SIM_PASSWORD}
    status, body = owner.call(
        "POST", "/api/v1/owner/settings/cameras", {**new, "password": "wrong-Password-1"}
    )
    assert (status, body["error"], body["field"]) == (400, "onvif_unauthorized", "password"), body
    status, body = owner.call("POST", "/api/v1/owner/settings/cameras", new)
    assert status == 201, body
    main = sim.info["rtsp_main"].replace(f"{SIM_USER}:{SIM_PASSWORD}@", "")
    sub = sim.info["rtsp_sub"].replace(f"{SIM_USER}:{SIM_PASSWORD}@", "")
    assert (body["camera"]["url"], body["camera"]["sub_url"], body["camera"]["onvif"]) == (
        main,
        sub,
        onvif_url,
    )
    _wait_online(owner, "porch")  # the stored stream URI records
    assert listed()["added_as"] == "porch"  # type: ignore[index]
    added = [e for e in hub.audit() if e.get("type") == "settings.changed"]
    assert added and added[-1]["data"]["onvif"] == onvif_url

    # A press on the camera is a doorbell event, once the subscription is up (poll: press again if
    # the first came before the hub subscribed; one is enough).
    def pressed(n: int) -> Callable[[], bool]:
        def check() -> bool:
            if len(_presses(owner, "porch")) >= n:
                return True
            sim.press()
            return len(_presses(owner, "porch")) >= n

        return check

    _until(pressed(1), "a press to become an event")
    assert _presses(owner, "porch")[0]["source"] == "camera"

    # The camera restarts (all its subscriptions gone): the hub subscribes again by itself.
    sim.stop()
    sim.start()
    before = len(_presses(owner, "porch"))
    _until(pressed(before + 1), "a press after the restart")
    assert "subscribed to events" in hub.daemon.log()
    assert hub.daemon.log().count("subscribed to events") >= 2

    log_text = hub.daemon.log()
    assert SIM_PASSWORD not in log_text and "wrong-Password-1" not in log_text
