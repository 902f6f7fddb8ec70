"""The owner's settings overlay (hub/settings.py) in a running hub: retention and cameras changed over
the API reach the camera runtimes and the retention policy at once; rows are re-validated on start."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from hub import config as config_mod
from hub import store
from hub.api.session import hash_password
from hub.daemon import running_hub
from hub.settings import OwnerSettings, SettingsError, public_camera, validate_camera
from hub.store import settings as settings_q
from hub.store import web as web_q

PASSWORD = "correct horse battery"
DAY = 86400.0


def _config(data_dir: Path) -> config_mod.Config:
    return config_mod.parse(
        {
            "hub": {"data_dir": str(data_dir), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "storage": {"max_age_days": 30},
            "cameras": [{"id": "front", "url": "rtsp://127.0.0.1:9/front", "retention_days": 7}],
        }
    )


def _seed(data_dir: Path, rows: list[dict[str, object]]) -> None:
    data_dir.mkdir(mode=0o700, parents=True)
    conn = store.connect(data_dir / "camhub.sqlite")
    try:
        store.migrate(conn)
        web_q.set_password_if_unset(conn, hash_password(PASSWORD, log_n=12), time.time())
        for row in rows:
            settings_q.put_camera(conn, str(row["id"]), row, time.time())
    finally:
        conn.close()


async def test_changes_reach_the_running_cameras_and_retention(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Rows written by an older hub: one fine, one now invalid, one whose id is now in camhub.toml.
    _seed(
        data_dir,
        [
            {"id": "porch", "url": "rtsp://127.0.0.1:9/porch", "record": False},
            {"id": "broken", "url": "ftp://nope"},
            {"id": "front", "url": "rtsp://127.0.0.1:9/other"},
        ],
    )
    async with (
        running_hub(_config(data_dir)) as services,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        assert services.cameras is not None
        # The valid row runs next to the file's camera; the others are skipped, and the file wins.
        assert sorted(services.cameras.runtimes) == ["front", "porch"]
        assert services.config.camera("front").url == "rtsp://127.0.0.1:9/front"  # type: ignore[union-attr]
        base = services.base_url
        async with http.post(f"{base}/api/v1/session/login", json={"password": PASSWORD}) as r:
            csrf = (await r.json())["csrf"]
        h = {"X-CSRF-Token": csrf}
        async with http.patch(
            f"{base}/api/v1/owner/settings/cameras/porch", json={"retention_days": 2}, headers=h
        ) as r:
            assert r.status == 200, await r.text()
        async with http.patch(f"{base}/api/v1/owner/settings/storage", json={"quota_gb": 1}, headers=h) as r:
            assert r.status == 200, await r.text()
        policy = services.cameras.retention_policy()
        assert policy.max_age_s == {"front": 7 * DAY, "porch": 2 * DAY}
        assert (policy.default_max_age_s, policy.quota_bytes) == (30 * DAY, 1024**3)

        # Recording switched on restarts the camera with a recorder; the camera keeps its place.
        before = services.cameras.runtimes["porch"]
        assert before.recorder is None
        async with http.patch(
            f"{base}/api/v1/owner/settings/cameras/porch", json={"record": True}, headers=h
        ) as r:
            assert r.status == 200, await r.text()
        after = services.cameras.runtimes["porch"]
        assert after is not before and after.recorder is not None
        assert before.relay.closed

        async with http.delete(f"{base}/api/v1/owner/settings/cameras/porch", headers=h) as r:
            assert r.status == 200
        assert sorted(services.cameras.runtimes) == ["front"]
        assert "camera:porch" not in services.supervisor.running()
        assert services.cameras.retention_policy().max_age_s == {"front": 7 * DAY}
        # Null goes back to camhub.toml's value.
        async with http.patch(
            f"{base}/api/v1/owner/settings/storage", json={"quota_gb": None}, headers=h
        ) as r:
            assert r.status == 200
        assert services.cameras.retention_policy().quota_bytes is None


def test_validation_reuses_the_config_rules_and_credentials_stay_hidden() -> None:
    with pytest.raises(SettingsError) as exc:
        validate_camera({"id": "x", "url": "rtsp://h/x", "motion": {"zones": [[[0, 0], [2, 0], [0, 1]]]}})
    assert exc.value.field == "motion"
    with pytest.raises(SettingsError) as exc:
        validate_camera({"id": "x", "url": "rtsp://h/x", "events_url": "ftp://h"})
    assert exc.value.field == "events_url"
    shown = public_camera({"id": "x", "url": "rtsp://u:secret@h/x", "username": "u", "password": "pw"})
    assert "secret" not in str(shown) and "pw" not in str(shown.values())
    assert shown["url"] == "rtsp://h/x" and shown["has_credentials"] is True
    file_config = config_mod.parse({"cameras": [{"id": "a", "url": "rtsp://h/a"}]})
    settings = OwnerSettings(
        file_config, cameras={"b": {"id": "b", "url": "rtsp://h/b"}}, storage={"max_age_days": 3}
    )
    effective = settings.effective()
    assert [c.id for c in effective.cameras] == ["a", "b"] and effective.storage.max_age_days == 3
    assert settings.is_file_camera("a") and not settings.is_file_camera("b")
