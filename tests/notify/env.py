"""A hub with an owner session (for the notification routes), an agency, and one camera that never
answers (so it goes offline), plus helpers to wait on the notification status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.consent import owner_client
from tests.conftest import free_port
from tests.consent.flow_env import CAMERA, HubEnv, start_hub_env
from tests.web.conftest import PASSWORD
from tests.web.test_settings_api import Owner


def camera_table() -> str:
    return f'\n[[cameras]]\nid = "{CAMERA}"\nname = "Front door"\nurl = "rtsp://127.0.0.1:{free_port()}/none"\nrecord = false\n'


def start(tmp: Path, extra: str) -> tuple[HubEnv, Owner]:
    env = start_hub_env(tmp, footage=False, extra_config=camera_table() + extra)
    proof = owner_client.password_proof(env.owner, env.hub_id)
    owner = Owner(env.url)
    status, body = owner.call("POST", "/api/v1/session/password", {"password": PASSWORD, "proof": proof})
    assert status == 200, body
    owner.login()
    return env, owner


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


def status(owner: Owner) -> dict[str, Any]:
    code, body = owner.call("GET", "/api/v1/owner/notifications")
    assert code == 200, body
    return body
