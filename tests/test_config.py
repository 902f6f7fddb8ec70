"""Config validation: every problem reported, one line each, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub import config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid() -> None:
    cfg = config.load(ROOT / "configs" / "camhub.example.toml")
    assert [c.id for c in cfg.cameras] == ["front-door", "garage"]
    front = cfg.camera("front-door")
    assert front is not None and front.retention_days == 14 and front.motion.zones
    garage = cfg.camera("garage")
    assert garage is not None and garage.whip and garage.url is None


def test_defaults() -> None:
    cfg = config.parse({})
    assert cfg.hub.bind == "127.0.0.1"
    assert cfg.storage.segment_seconds == 4.0
    assert cfg.consent.respond_by_days == 7.0
    assert cfg.cameras == ()
    # Issue 12's limits: owner pages stay home, per-client buckets, one live slot for the owner.
    assert cfg.hub.owner_remote is False and cfg.hub.allowed_hosts == ()
    assert (cfg.hub.rate_limit_per_s, cfg.hub.rate_limit_burst, cfg.hub.max_live_sessions) == (20.0, 200, 16)
    assert (cfg.consent.agency_requests_per_hour, cfg.consent.rejection_audit_window_s) == (30, 60.0)
    # A camera is read by camhub's own RTSP reader unless the owner says "ffmpeg" (issue 17).
    cam = config.parse({"cameras": [{"id": "c", "url": "rtsp://h/"}]}).cameras[0]
    assert (cam.rtsp_transport, cam.rtsp_reader) == ("auto", "camhub")
    cam = config.parse({"cameras": [{"id": "c", "url": "rtsp://h/", "rtsp_reader": "ffmpeg"}]}).cameras[0]
    assert cam.rtsp_reader == "ffmpeg"


def test_limit_keys_are_validated() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(
            {
                "hub": {"allowed_hosts": ["proxy.lan", "evil.example:8080", "a b"], "max_live_sessions": 1,
                        "rate_limit_per_s": 0, "owner_remote": "yes"},
                "consent": {"agency_requests_per_hour": 0, "rejection_audit_window_s": -1},
            }
        )  # fmt: skip
    text = "\n".join(err.value.problems)
    for key in ("allowed_hosts[1]", "allowed_hosts[2]", "max_live_sessions", "rate_limit_per_s", "owner_remote",
                "agency_requests_per_hour", "rejection_audit_window_s"):  # fmt: skip
        assert f"hub.{key}" in text or f"consent.{key}" in text, (key, text)
    assert "allowed_hosts[0]" not in text
    ok = config.parse({"hub": {"allowed_hosts": ["Proxy.LAN.", "192.168.1.5", "fd00::5"]}})
    assert ok.hub.allowed_hosts == ("proxy.lan", "192.168.1.5", "fd00::5")


def test_passkey_rp_id_is_a_domain_and_defaults_to_the_mdns_name() -> None:
    """PROTOCOL §3.1: a WebAuthn rpId is a domain, never an IP address (browsers refuse those)."""
    assert config.parse({}).hub.rp_id == "camhub.local"
    assert config.parse({"hub": {"name": "Front Door"}}).hub.rp_id == "front-door.local"  # as mDNS advertises
    assert config.parse({"hub": {"passkey_rp_id": "localhost"}}).hub.rp_id == "localhost"
    for bad in ("192.168.1.5", "fd00::5", "hub.lan:8443", "Hub.LAN", "a b", ""):
        with pytest.raises(config.ConfigError) as err:
            config.parse({"hub": {"passkey_rp_id": bad}})
        assert "hub.passkey_rp_id" in str(err.value), bad


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"cameras": [{"id": "front", "url": "http://x/"}]}, "cameras.front.url: must be rtsp:// or whip"),
        ({"cameras": [{"id": "front"}]}, "cameras.front.url: is required"),
        ({"cameras": [{"id": "g", "url": "whip"}]}, "cameras.g.whip_token: is required"),
        ({"cameras": [{"id": "Bad Id", "url": "whip"}]}, "cameras[0].id: must be"),
        (
            {"cameras": [{"id": "a", "url": "rtsp://h/"}, {"id": "a", "url": "rtsp://h/"}]},
            "cameras.a.id: duplicate camera id",
        ),
        ({"hub": {"port": "80"}}, "hub.port: must be an integer, got a string"),
        ({"hub": {"port": 70000}}, "hub.port: must be between 0 and 65535"),
        ({"hub": {"bind": "localhost"}}, "hub.bind: must be an IP address"),
        ({"hub": {"colour": "red"}}, "hub.colour: unknown key"),
        ({"storage": {"segment_seconds": True}}, "storage.segment_seconds: must be an integer or a number"),
        ({"storage": {"quota_gb": -1}}, "storage.quota_gb: must be 0 (no quota) or more"),
        ({"consent": {"trust_system_clock": "yes"}}, "consent.trust_system_clock: must be true or false"),
        ({"discovery": {"interfaces": ["eth0"]}}, "discovery.interfaces[0]: must be an IP address"),
        (
            {"cameras": [{"id": "c", "url": "rtsp://h/", "motion": {"zones": [[[0, 0], [2, 0], [1, 1]]]}}]},
            "cameras.c.motion.zones[0][1]: must be [x, y] with 0 <= x, y <= 1",
        ),
        ({"cameras": {"id": "c"}}, "cameras: must be an array of tables"),
        (
            {"cameras": [{"id": "c", "url": "rtsp://h/", "rtsp_reader": "live555"}]},
            "cameras.c.rtsp_reader: must be one of camhub, ffmpeg",
        ),
        ({"surprise": {}}, "surprise: unknown key"),
    ],
)
def test_each_problem_names_its_key(doc: dict, expected: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.parse(doc)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.parse({"hub": {"port": "x", "bogus": 1}, "cameras": [{"id": "front", "url": "ftp://x"}]})
    assert len(info.value.problems) == 3


def test_quota_and_credentials() -> None:
    cfg = config.parse(
        {
            "storage": {"quota_gb": 1.5},
            "cameras": [
                {"id": "c", "url": "rtsp://10.0.0.2:554/main", "username": "ad min", "password": "p@ss"}
            ],
        }
    )
    assert cfg.storage.quota_bytes == int(1.5 * 1024**3)
    assert cfg.cameras[0].authenticated_url() == "rtsp://ad%20min:p%40ss@10.0.0.2:554/main"


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[hub]\ndata_dir = "data"\n')
    assert config.load(path).hub.data_dir == tmp_path / "data"


def test_invalid_toml_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[hub\n")
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert len(info.value.problems) == 1 and "invalid TOML" in info.value.problems[0]


def test_cli_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[hub]\nport = "x"\n[[cameras]]\nid = "front"\nurl = "http://x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "hub", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hub.port: must be an integer, got a string",
        "cameras.front.url: must be rtsp:// or whip",
    ]


def test_relay_section() -> None:
    """`[relay]` (PROTOCOL §7): absent means no link; every key is checked and bounded."""
    assert not config.parse({}).relay.enabled
    relay = config.parse(
        {"relay": {"url": ["nats://127.0.0.1:4222", "tls://n2.example:4222"], "public_url": "https://relay.example/",
                   "area": "u33db", "turn_url": "turn:relay.example:3478?transport=udp"}}
    ).relay  # fmt: skip
    assert relay.enabled and relay.urls == ("nats://127.0.0.1:4222", "tls://n2.example:4222")
    assert relay.public_url == "https://relay.example" and relay.area == "u33db"
    with pytest.raises(config.ConfigError) as err:
        config.parse(
            {"relay": {"url": "http://x", "public_url": "relay.example", "area": "u33dA", "calls_per_s": 0,
                       "turn_url": "stun:x:1", "colour": "red"}}
        )  # fmt: skip
    problems = "\n".join(err.value.problems)
    for key in (
        "relay.url",
        "relay.public_url",
        "relay.area",
        "relay.calls_per_s",
        "relay.turn_url",
        "relay.colour",
    ):
        assert key in problems, (key, problems)
    with pytest.raises(config.ConfigError, match=r"relay\.public_url: is required"):
        config.parse({"relay": {"url": "nats://127.0.0.1:4222"}})


def test_privacy_masks_are_typed_bounded_and_named_in_errors() -> None:
    base = {"id": "cam", "url": "rtsp://127.0.0.1/x"}
    window = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]]
    cam = config.parse_camera({**base, "privacy": {"masks": [window], "owner_views": True}})
    assert cam.privacy == config.PrivacyConfig(
        masks=(((0.1, 0.1), (0.5, 0.1), (0.5, 0.6)),), owner_views=True
    )
    assert config.parse_camera(base).privacy == config.PrivacyConfig()
    bad = [
        ({"masks": [[[0, 0], [1, 1]]]}, "cameras.cam.privacy.masks[0]: must be a list of at least 3"),
        ({"masks": [[[0, 0], [1.5, 0], [0, 1]]]}, "cameras.cam.privacy.masks[0][1]: must be [x, y]"),
        ({"masks": [window] * 17}, "cameras.cam.privacy.masks: at most 16 polygons"),
        ({"masks": [[[0, 0]] * 65]}, "cameras.cam.privacy.masks[0]: at most 64 points"),
        ({"owner_views": 1}, "cameras.cam.privacy.owner_views: must be true or false"),
        ({"mask": []}, "cameras.cam.privacy.mask: unknown key"),
    ]
    for table, message in bad:
        try:
            config.parse_camera({**base, "privacy": table})
        except config.ConfigError as exc:
            assert any(p.startswith(message) for p in exc.problems), exc.problems
        else:
            raise AssertionError(f"accepted {table}")


def test_notification_tables_are_validated() -> None:
    base = {"hub": {"data_dir": "/tmp/x"}}
    cfg = config.parse(
        {
            **base,
            "mqtt": {"url": "mqtts://broker.lan", "username": "u", "password": "p"},
            "notify": {"offline_after_s": 5},
        }
    )
    assert cfg.mqtt.enabled and cfg.mqtt.tls and cfg.mqtt.port == 8883 and cfg.mqtt.host == "broker.lan"
    assert cfg.mqtt.discovery_prefix == "homeassistant" and cfg.notify.offline_after_s == 5
    assert cfg.push.enabled and not config.parse(base).mqtt.enabled
    with pytest.raises(config.ConfigError) as exc:
        config.parse(
            {
                **base,
                "mqtt": {"url": "mqtt://u:p@broker.lan", "discovery_prefix": "home/assistant", "tls": True},
                "push": {"contact": "owner@example.org"},
                "notify": {"queue_size": 0},
            }
        )
    text = "\n".join(exc.value.problems)
    for key in ("mqtt.url", "mqtt.discovery_prefix", "mqtt.tls", "push.contact", "notify.queue_size"):
        assert key in text, text
    with pytest.raises(config.ConfigError, match=r"mqtt\.url: is required"):
        config.parse({**base, "mqtt": {"username": "u"}})
