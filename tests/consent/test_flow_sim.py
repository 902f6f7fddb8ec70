"""End to end against the simulator: the hub records a simulated doorbell over RTSP, an agency asks for
20 s, the owner approves a narrower 10 s, the agency fetches with the reference client, the stock `age`
decrypts it and the clip plays for the approved time in ffprobe; the manifest names the recorded
segments it was cut from."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws, rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from firmware_sim.fleet import SimFleet
from hub import config
from hub.agency_client import Agency
from hub.agency_client import keygen as agency_keygen
from hub.consent import owner_client, pairing
from hub.daemon import running_hub
from hub.services import Services
from hub.store import segments
from tests.record.media import ffprobe

GOP_S = 1.0


async def _recorded_until(services: Services, camera: str, until: float, timeout: float = 60.0) -> float:
    """Wait until the index covers up to `until`; returns where the footage starts."""
    async with asyncio.timeout(timeout):
        while True:
            segs = await services.store.run(segments.segments_between, camera, 0.0, time.time() + 3600)
            if segs and segs[-1].end_at >= until:
                return segs[0].start_at
            await asyncio.sleep(0.2)


@pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("ffprobe") is None, reason="needs age, ffprobe"
)
async def test_simulated_camera_to_decrypted_clip(tmp_path: Path) -> None:
    async with SimFleet(1, width=640, height=360, fps=15, gop=15, loop_s=2.0) as fleet:
        cam = fleet.cameras[0]
        cfg = config.parse(
            {
                "hub": {"data_dir": str(tmp_path / "data"), "port": 0},
                "storage": {"segment_seconds": 2},
                "consent": {"trust_system_clock": True},
                "discovery": {"enabled": False},
                "cameras": [{"id": cam.name, "url": cam.rtsp_url("main"), "motion": {"enabled": False}}],
            }
        )
        async with running_hub(cfg) as services:
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

            first = await _recorded_until(services, cam.name, time.time() + 1)
            start = float(int(first) + 2)
            await _recorded_until(services, cam.name, start + 21)

            agency = Agency(tmp_path / "agency", url)
            fields = {
                "case_id": "2026-000123", "kind": "clip", "cameras": [cam.name],
                "start": rfc3339.format(start), "end": rfc3339.format(start + 20), "live_max_seconds": None,
                "reason": "Package theft", "legal_basis": {"type": "warrant", "reference": "W-1"},
                "contact": "Det. J. Rivera",
            }  # fmt: skip
            asked = await asyncio.to_thread(agency.request, fields)
            scope_start, scope_end = start + 5, start + 15
            payload = {
                "v": 1, "hub": services.hub_key.hub_id, "request_id": asked["id"],
                "request_sha256": asked["request_sha256"], "decision": "approve",
                "scope": {"kind": "clip", "cameras": [cam.name], "start": rfc3339.format(scope_start),
                          "end": rfc3339.format(scope_end), "live_max_seconds": None},
                "recipient": info["keyid"], "max_fetches": 3, "not_after": rfc3339.format(time.time() + 3600),
                "issued_at": rfc3339.format(int(time.time())), "jti": secrets.token_urlsafe(16),
            }  # fmt: skip
            kid = jwk_thumbprint(okp_public_jwk(owner.public_key()))
            compact = jws.sign(json.dumps(payload).encode(), owner, kid, "camhub-decision+jws")
            await asyncio.to_thread(owner_client.post_decision, url, compact)

            async with asyncio.timeout(60):
                while (await asyncio.to_thread(agency.status, asked["id"]))["status"] != "fulfilled":
                    await asyncio.sleep(0.2)
            fetched = await asyncio.to_thread(agency.fetch, asked["id"], tmp_path / "out")

        assert len(fetched) == 1
        tar_path = tmp_path / "delivery.tar"
        proc = await asyncio.create_subprocess_exec(
            "age",
            "-d",
            "-i",
            str(tmp_path / "agency" / "age.key"),
            "-o",
            str(tar_path),
            fetched[0]["encrypted"],
        )
        assert await proc.wait() == 0
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp_path / "plain", filter="data")
        manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
        assert manifest["camera"] == cam.name and manifest["segments"]
        assert (manifest["start"], manifest["end"]) == (
            rfc3339.format(scope_start),
            rfc3339.format(scope_end),
        )
        probe = await asyncio.to_thread(ffprobe, tmp_path / "plain" / f"clip-{cam.name}.mp4")
        assert probe.ok, probe.stderr
        assert 10.0 - 1e-3 <= probe.duration <= 10.0 + 2 * GOP_S + 0.1
        assert (probe.width, probe.height) == (640, 360)
        # The stock age output and the reference client's decryption are the same files.
        plain = (tmp_path / "plain" / f"clip-{cam.name}.mp4").read_bytes()
        assert plain == (Path(fetched[0]["directory"]) / f"clip-{cam.name}.mp4").read_bytes()


async def test_live_grant_saved_by_the_reference_client(tmp_path: Path) -> None:
    async with SimFleet(1, width=320, height=240, fps=15, gop=15, loop_s=2.0) as fleet:
        cam = fleet.cameras[0]
        cfg = config.parse(
            {
                "hub": {"data_dir": str(tmp_path / "data"), "port": 0, "ice_addresses": ["127.0.0.1"]},
                "storage": {"segment_seconds": 2},
                "consent": {"trust_system_clock": True},
                "discovery": {"enabled": False},
                "cameras": [{"id": cam.name, "url": cam.rtsp_url("main"), "motion": {"enabled": False}}],
            }
        )
        async with running_hub(cfg) as services:
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
            await _recorded_until(services, cam.name, time.time())  # the camera is up

            agency = Agency(tmp_path / "agency", url)
            fields = {
                "case_id": "2026-000124", "kind": "live", "cameras": [cam.name], "start": None, "end": None,
                "live_max_seconds": 30, "reason": "Ongoing incident", "legal_basis": {"type": "exigent",
                "reference": None}, "contact": "Dispatch",
            }  # fmt: skip
            asked = await asyncio.to_thread(agency.request, fields)
            approve = {
                "decision": "approve", "request_id": asked["id"], "request_sha256": asked["request_sha256"],
                "recipient": info["keyid"], "max_fetches": 1, "not_after": rfc3339.format(time.time() + 600),
                "scope": {"kind": "live", "cameras": [cam.name], "start": None, "end": None,
                          "live_max_seconds": 10},
            }  # fmt: skip
            await asyncio.to_thread(owner_client.decide, url, owner, approve)
            assert (await asyncio.to_thread(agency.status, asked["id"]))["status"] == "live"
            out = tmp_path / "live.mp4"
            saved = await asyncio.to_thread(agency.live, asked["id"], out, 2.0)
        assert saved["frames"] > 0
        probe = await asyncio.to_thread(ffprobe, out)
        assert probe.ok, probe.stderr
        assert probe.frames > 0 and (probe.width, probe.height) == (320, 240)
