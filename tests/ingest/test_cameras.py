"""The daemon's camera loops against the simulator: record, reconnect after a reboot, keep others going,
and the owner's local export."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from firmware_sim.fleet import SimFleet
from hub import config, daemon
from hub.ingest import camera
from hub.store import cameras as cameras_q
from hub.store import segments
from tests.events.polling import until


def _config(tmp_path: Path, fleet: SimFleet, readers: dict[str, str] | None = None) -> config.Config:
    readers = readers or {}
    return config.parse(
        {
            "hub": {"data_dir": str(tmp_path / "data"), "port": 0},
            "storage": {"segment_seconds": 2},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "cameras": [
                {"id": cam.name, "url": cam.rtsp_url("main"), "motion": {"enabled": False}}
                | ({"rtsp_reader": readers[cam.name]} if cam.name in readers else {})
                for cam in fleet.cameras
            ],
        }
    )


async def _segments(services, camera: str) -> list[segments.Segment]:  # type: ignore[no-untyped-def]
    return await services.store.run(segments.segments_between, camera, 0.0, time.time() + 3600)


async def _wait_segments(
    services, camera: str, count: int, after: float = 0.0, timeout: float = 60.0
) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while len([s for s in await _segments(services, camera) if s.start_at >= after]) < count:
            await asyncio.sleep(0.2)


async def test_reboot_of_one_camera_is_a_gap_and_the_other_is_untouched(tmp_path: Path) -> None:
    async with SimFleet(2, width=640, height=360, fps=15, gop=15, loop_s=2.0) as fleet:
        # One camera read by camhub's own RTSP reader (the default), one by FFmpeg's (issue 17).
        cfg = _config(tmp_path, fleet, readers={"sim-2": "ffmpeg"})
        async with daemon.running_hub(cfg) as services:
            assert services.cameras is not None
            await _wait_segments(services, "sim-1", 2)
            await _wait_segments(services, "sim-2", 2)
            used = {
                cid: getattr(rt._current, "reader_used", None)
                for cid, rt in services.cameras.runtimes.items()
            }
            assert used == {"sim-1": "camhub", "sim-2": "ffmpeg"}

            rebooted_at = time.time()
            await fleet["sim-1"].fault("reboot", seconds=3)
            runtime = services.cameras.runtimes["sim-1"]
            await until(lambda: runtime.reconnects >= 1, 30)
            # The outage becomes a gap row once footage resumes (the recorder never papers over it)...
            async with asyncio.timeout(60):
                while not (
                    gaps := await services.store.run(
                        segments.gaps_between, "sim-1", rebooted_at - 5, time.time()
                    )
                ):
                    await asyncio.sleep(0.2)
            assert gaps[-1].end_at - gaps[-1].start_at >= 2.0, gaps
            # ... and recording goes on after it.
            await _wait_segments(services, "sim-1", 1, after=gaps[-1].end_at, timeout=60)
            assert runtime.last_error is not None

            # The live relay gets packets only while someone watches (nobody did: it costs nothing);
            # a viewer starts at once at a keyframe and then gets the camera's packets.
            relay = services.cameras.relays.get("sim-2")
            assert relay is not None and relay.published == 0
            assert services.cameras.runtimes["sim-2"].online(time.time())  # status sees frames anyway
            viewer = relay.subscribe()
            try:
                async with asyncio.timeout(5):
                    first = await viewer.get()
                    rest = [await viewer.get() for _ in range(30)]
            finally:
                viewer.close()
            assert first.is_keyframe and relay.params is not None and relay.params.width == 640
            assert [p.dts for p in rest] == sorted({p.dts for p in rest}) and rest[0].dts > first.dts

            # The other camera never noticed.
            other = services.cameras.runtimes["sim-2"]
            assert other.reconnects == 0
            assert await services.store.run(segments.gaps_between, "sim-2", 0.0, time.time()) == []
            sim2 = await _segments(services, "sim-2")
            for a, b in itertools.pairwise(sim2):
                assert abs(b.start_at - a.end_at) < 1 / 15 + 1e-3

            # Camera status is owner-only (no session here → 401, nothing revealed).
            # (urllib runs in a thread: the hub serves on this test's own event loop.)
            resp = await asyncio.to_thread(urllib.request.urlopen, services.base_url + "/api/v1/hub", None, 5)
            assert resp.status == 200
            resp.close()
            try:
                await asyncio.to_thread(
                    urllib.request.urlopen, services.base_url + "/api/v1/owner/cameras", None, 5
                )
                raise AssertionError("camera status must need an owner session")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                assert "sim-1" not in json.dumps(json.load(exc))
        # The hub left nothing running (only the simulator's own tasks remain until the fleet stops).
        hub_tasks = [t for t in asyncio.all_tasks() if "camhub" in t.get_name() or ":" in t.get_name()]
        assert hub_tasks == [], hub_tasks
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == [], others


async def test_export_cli_cuts_a_stream_copied_clip(tmp_path: Path) -> None:
    async with SimFleet(1, width=640, height=360, fps=15, gop=15, loop_s=2.0) as fleet:
        cfg = _config(tmp_path, fleet)
        async with daemon.running_hub(cfg) as services:
            await _wait_segments(services, "sim-1", 4)
            segs = await _segments(services, "sim-1")
    cfg_file = tmp_path / "camhub.toml"
    cfg_file.write_text(
        f'[hub]\ndata_dir = "{tmp_path / "data"}"\n[[cameras]]\nid = "sim-1"\nurl = "rtsp://127.0.0.1:1/x"\n'
    )
    start, end = segs[0].start_at + 1.0, segs[0].start_at + 4.0
    out = tmp_path / "clip.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub",
            "export",
            "sim-1",
            str(start),
            str(end),
            "-o",
            str(out),
            "--config",
            str(cfg_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stream-copied" in result.stdout
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,width,height",
            "-of",
            "json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(probe.stdout)
    assert info["streams"][0]["codec_name"] == "h264"
    assert (info["streams"][0]["width"], info["streams"][0]["height"]) == (640, 360)
    duration = float(info["format"]["duration"])
    # Covers the 3 s asked for, and at most one GOP (1 s here) more at each end.
    assert 3.0 - 1 / 15 <= duration <= 3.0 + 2.0 + 1e-3

    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub",
            "export",
            "nope",
            str(start),
            str(end),
            "-o",
            str(out),
            "--config",
            str(cfg_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2 and "unknown camera 'nope'" in unknown.stderr


async def test_retention_audits_each_batch_as_it_goes(tmp_path: Path) -> None:
    """Every deletion is audited per batch (issue 4), so a pass cut short leaves none unaudited."""
    from hub.ingest.camera import Cameras
    from hub.store import Store
    from hub.supervisor import Supervisor

    cfg = config.parse(
        {"hub": {"data_dir": str(tmp_path / "data"), "port": 0}, "storage": {"max_age_days": 1},
         "discovery": {"enabled": False}}
    )  # fmt: skip
    cfg.segments_dir.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3 * 86400
    rows = []
    day = cfg.segments_dir / "front" / "2026-01-01"
    day.mkdir(parents=True)
    for i in range(1203):
        (day / f"s{i}.mp4").write_bytes(b"x")
        rel = f"front/2026-01-01/s{i}.mp4"
        rows.append(
            segments.NewSegment("front", old + i * 4, old + i * 4 + 4, 1, "0" * 64, "h264", 1, 1, rel)
        )
    store = await Store.open(tmp_path / "camhub.sqlite")
    entries: list[dict[str, object]] = []

    async def audit(type_: str, actor: str, data: dict[str, object]) -> None:
        assert type_ == "retention.deleted"
        entries.append(data)

    try:
        await store.run(lambda conn: [segments.insert_segment(conn, r) for r in rows])
        cams = Cameras(cfg, store, Supervisor(), holds=lambda: [], audit=audit)
        assert await cams.enforce_retention() == 1203
    finally:
        await store.close()
    assert [e["segments"] for e in entries] == [500, 500, 203]  # retention.enforce's batches
    assert not day.exists() and cfg.segments_dir.is_dir()  # emptied day pruned, the root kept


async def test_a_status_row_is_written_when_its_camera_comes_or_goes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not on every tick (issue 17: a transaction every 2 s on the card, for nothing anyone read):
    once when the camera streams, once when it goes, once when it is back; the cameras page reads
    whether it streams, and its last frame, live."""
    monkeypatch.setattr(camera, "STATUS_INTERVAL_S", 0.1)
    writes: list[list[tuple[str, bool]]] = []
    upsert_live = cameras_q.upsert_live

    def counting(conn, live):  # type: ignore[no-untyped-def]
        upsert_live(conn, live)
        writes.append([(cam_id, online) for cam_id, online, _ in live])

    monkeypatch.setattr(cameras_q, "upsert_live", counting)
    async with SimFleet(1, width=320, height=240, fps=15, gop=15, loop_s=2.0) as fleet:
        async with daemon.running_hub(_config(tmp_path, fleet)) as services:
            assert services.cameras is not None
            runtime = services.cameras.runtimes["sim-1"]
            await until(lambda: [("sim-1", True)] in writes, 30)
            await asyncio.sleep(2.0)  # 20 ticks of a camera that streams
            assert writes[-1] == [("sim-1", True)] and len(writes) <= 2, writes
            _, online, last_frame_at = services.cameras.status()["sim-1"]
            assert online and last_frame_at is not None and time.time() - last_frame_at < 1.0
            row = (await services.store.run(cameras_q.all_status))["sim-1"]
            assert row.online and row.last_frame_at is not None and row.last_frame_at < last_frame_at - 1.5

            before = len(writes)
            await fleet["sim-1"].fault("reboot", seconds=3)
            await until(lambda: runtime.reconnects >= 1, 30)
            await until(
                lambda: [w for w in writes[before:] if w][-2:] == [[("sim-1", False)], [("sim-1", True)]], 30
            )
            row = (await services.store.run(cameras_q.all_status))["sim-1"]
            assert row.online and row.reconnect_count >= 1
    assert len(writes) <= 5, writes  # offline at the start maybe, online, offline, online (+ a retry)
