"""Encryption at rest end to end: a hub with `[storage] encrypt = true` records the simulated camera
over RTSP; on disk the segments, the segment in progress and the thumbnails are ciphertext only, yet
the owner plays them (with Range), `camhub export` cuts a clip ffprobe accepts, and a delivery built
from the sealed segments decrypts with the stock `age` and plays."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws, rfc3339
from camhub_protocol.keys import HubKey, jwk_thumbprint, okp_public_jwk
from firmware_sim.fleet import SimFleet
from hub import config
from hub.agency_client import Agency
from hub.agency_client import keygen as agency_keygen
from hub.api.session import hash_password
from hub.consent import owner_client, pairing
from hub.daemon import StartupError, running_hub
from hub.events.thumbnails import write_thumbnail
from hub.record import sealed
from hub.services import Services
from hub.store import events as events_q
from hub.store import segments
from hub.store import web as web_q
from tests.record.media import ffprobe
from tests.record.test_sealed import _plain_media_signs

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


async def _recorded(
    services: Services, camera: str, count: int, timeout: float = 60.0
) -> list[segments.Segment]:
    async with asyncio.timeout(timeout):
        while True:
            segs = await services.store.run(segments.segments_between, camera, 0.0, time.time() + 3600)
            if len(segs) >= count:
                return segs
            await asyncio.sleep(0.2)


async def _deliver(services: Services, tmp_path: Path, camera: str, start: float, end: float) -> Path:
    """Owner adds an agency, the agency asks for [start, end], the owner approves; returns the .age."""
    url = services.base_url
    owner = Ed25519PrivateKey.generate()
    code = await services.store.run(pairing.issue)
    await asyncio.to_thread(owner_client.enroll_first, url, owner, code, "owner")
    info = await asyncio.to_thread(agency_keygen, tmp_path / "agency")
    add = {
        "decision": "add-agency",
        "subject": {"name": "PD", "sig_jwk": info["sig_jwk"], "recipient": info["recipient"]},
    }
    await asyncio.to_thread(owner_client.decide, url, owner, add)
    agency = Agency(tmp_path / "agency", url)
    fields = {
        "case_id": "2026-000200", "kind": "clip", "cameras": [camera],
        "start": rfc3339.format(start), "end": rfc3339.format(end), "live_max_seconds": None,
        "reason": "Package theft", "legal_basis": {"type": "warrant", "reference": "W-2"},
        "contact": "Det. J. Rivera",
    }  # fmt: skip
    asked = await asyncio.to_thread(agency.request, fields)
    payload = {
        "v": 1, "hub": services.hub_key.hub_id, "request_id": asked["id"],
        "request_sha256": asked["request_sha256"], "decision": "approve",
        "scope": {"kind": "clip", "cameras": [camera], "start": rfc3339.format(start),
                  "end": rfc3339.format(end), "live_max_seconds": None},
        "recipient": info["keyid"], "max_fetches": 3, "not_after": rfc3339.format(time.time() + 3600),
        "issued_at": rfc3339.format(int(time.time())), "jti": secrets.token_urlsafe(16),
    }  # fmt: skip
    kid = jwk_thumbprint(okp_public_jwk(owner.public_key()))
    compact = jws.sign(json.dumps(payload).encode(), owner, kid, "camhub-decision+jws")
    await asyncio.to_thread(owner_client.post_decision, url, compact)
    async with asyncio.timeout(60):
        while (await asyncio.to_thread(agency.status, asked["id"]))["status"] != "fulfilled":
            await asyncio.sleep(0.2)
    (fetched,) = await asyncio.to_thread(agency.fetch, asked["id"], tmp_path / "out")
    return Path(fetched["encrypted"])


async def _owner_checks(services: Services, seg: segments.Segment, tmp_path: Path) -> None:
    """The owner's player and thumbnails see plaintext; Range requests work on sealed segments."""
    await services.store.run(web_q.set_password_if_unset, hash_password(PASSWORD, log_n=12), time.time())
    plain = services.at_rest.read_file(services.config.segments_dir / seg.path)
    async with aiohttp.ClientSession(services.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post("/api/v1/session/login", json={"password": PASSWORD}) as r:
            assert r.status == 200, await r.text()
        path = f"/api/v1/owner/segments/{seg.id}.mp4"
        async with http.get(path) as r:
            assert r.status == 200 and r.headers["Accept-Ranges"] == "bytes"
            body = await r.read()
        assert body == plain
        async with http.get(path, headers={"Range": "bytes=100-199"}) as r:
            assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-199/{len(plain)}"
            assert await r.read() == plain[100:200]
        async with http.get(path, headers={"Range": "bytes=-50"}) as r:
            assert r.status == 206 and await r.read() == plain[-50:]
        async with http.get(path, headers={"Range": f"bytes={len(plain)}-"}) as r:
            assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(plain)}"
        played = tmp_path / "played.mp4"
        played.write_bytes(body)
        probe = await asyncio.to_thread(ffprobe, played)
        assert probe.ok and probe.frames > 0, probe.stderr

        # A thumbnail written by the events service's writer is sealed and served as a JPEG.
        image = np.zeros((120, 160, 3), np.uint8)
        rel = "events/cam-00/2026-11-23/ev-sealed.jpg"
        data_dir = services.config.hub.data_dir
        await asyncio.to_thread(write_thumbnail, data_dir, rel, image, at_rest=services.at_rest)
        assert _plain_media_signs((data_dir / rel).read_bytes()) == []
        event = events_q.Event(
            "ev-sealed", seg.camera_id, "press", seg.start_at, seg.end_at, 1.0, rel, time.time()
        )
        await services.store.run(events_q.insert_event, event)
        async with http.get("/api/v1/owner/events/ev-sealed.jpg") as r:
            assert r.status == 200 and (await r.read()).startswith(b"\xff\xd8\xff")


@pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("ffprobe") is None, reason="needs age, ffprobe"
)
async def test_sealed_recording_plays_exports_and_delivers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with SimFleet(1, width=320, height=240, fps=15, gop=15, loop_s=2.0) as fleet:
        cam = fleet.cameras[0]
        table = {
            "hub": {"data_dir": str(data), "port": 0},
            "storage": {"segment_seconds": 2, "encrypt": True},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "cameras": [{"id": cam.name, "url": cam.rtsp_url("main"), "motion": {"enabled": False}}],
        }
        cfg = config.parse(table)
        async with running_hub(cfg) as services:
            assert services.at_rest.seal and (data / "keys" / sealed.STORAGE_KEY_FILE).exists()
            segs = await _recorded(services, cam.name, 4)
            # Nothing on the card shows footage: finished segments and the one being written.
            on_disk = list((data / "segments").rglob("*.mp4*"))
            assert any(p.name.endswith(".part") for p in on_disk)
            for p in on_disk:
                with p.open("rb") as f:
                    raw = f.read()
                assert raw.startswith(sealed.MAGIC) and _plain_media_signs(raw) == [], p
            for s in segs:
                size, sha = services.at_rest.digest(data / "segments" / s.path)
                assert (s.bytes, s.sha256) == (size, sha)

            await _owner_checks(services, segs[1], tmp_path)

            start, end = segs[1].start_at + 0.5, segs[2].end_at - 0.5
            encrypted = await _deliver(services, tmp_path, cam.name, start, end)

        # The delivery is age-encrypted to the agency as before; stock age opens it, the clip plays.
        tar_path = tmp_path / "delivery.tar"
        subprocess.run(
            ["age", "-d", "-i", str(tmp_path / "agency" / "age.key"), "-o", str(tar_path), str(encrypted)],
            check=True,
            timeout=60,
        )
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp_path / "plain", filter="data")
        manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
        by_start = {rfc3339.format(s.start_at): s.sha256 for s in segs}
        assert manifest["segments"] and all(by_start[m["start"]] == m["sha256"] for m in manifest["segments"])
        probe = await asyncio.to_thread(ffprobe, tmp_path / "plain" / f"clip-{cam.name}.mp4")
        assert probe.ok and probe.duration >= end - start - 1e-3, probe.stderr
        assert not list((data / "deliveries").glob(".work-*"))  # the plaintext working clip is gone

    # `camhub export` on the box (the daemon stopped) opens the sealed segments with the hub key.
    conf = tmp_path / "camhub.toml"
    conf.write_text(
        f'[hub]\ndata_dir = "{data}"\nport = 0\n[storage]\nencrypt = true\n[discovery]\nenabled = false\n'
        f'[[cameras]]\nid = "{cam.name}"\nurl = "rtsp://127.0.0.1:9/x"\n'
    )
    out = tmp_path / "export.mp4"
    cmd = [sys.executable, "-m", "hub", "export", cam.name, str(segs[0].start_at), str(segs[3].end_at)]
    done = subprocess.run(
        [*cmd, "-o", str(out), "--config", str(conf)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    probe = await asyncio.to_thread(ffprobe, out)
    assert probe.ok and probe.duration >= segs[3].end_at - segs[0].start_at - 0.1, probe.stderr

    # Without the hub key the footage stays shut: the hub refuses to start with a new identity and
    # export fails with a typed error rather than reading ciphertext.
    (data / "keys" / "hub.key").rename(tmp_path / "hub.key.away")
    with pytest.raises(StartupError, match="restore or mount the hub key"):
        async with running_hub(config.parse({**table, "cameras": []})):
            pass
    done = subprocess.run(
        [*cmd, "-o", str(tmp_path / "x.mp4"), "--config", str(conf)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1 and "hub key" in done.stderr


async def test_hub_key_off_the_card(tmp_path: Path) -> None:
    """`[hub] key_file` elsewhere (a USB stick, a systemd credential): the card holds only the wrapped
    storage key, which a different hub key cannot unwrap."""
    elsewhere = tmp_path / "usb" / "hub.key"
    elsewhere.parent.mkdir()
    table = {
        "hub": {"data_dir": str(tmp_path / "data"), "port": 0, "key_file": str(elsewhere)},
        "storage": {"encrypt": True},
        "consent": {"trust_system_clock": True},
        "discovery": {"enabled": False},
    }
    async with running_hub(config.parse(table)) as services:
        hub_id = services.hub_key.hub_id
    assert elsewhere.exists() and not (tmp_path / "data" / "keys" / "hub.key").exists()
    assert (tmp_path / "data" / "keys" / sealed.STORAGE_KEY_FILE).exists()
    # Someone with the card and a hub key of their own cannot unwrap the storage key.
    other = tmp_path / "other.key"
    HubKey.load_or_create_at(other)
    table["hub"]["key_file"] = str(other)  # type: ignore[index]
    with pytest.raises(StartupError, match=hub_id):
        async with running_hub(config.parse(table)):
            pass
