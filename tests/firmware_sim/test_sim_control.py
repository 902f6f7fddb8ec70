"""HTTP control API, Server-Sent Events, the per-viewer queue and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp

from firmware_sim import cli, h264
from firmware_sim.camera import SimCamera
from firmware_sim.feed import MAX_OVERRUNS, AccessUnit, Feed
from firmware_sim.fleet import SimFleet

from .conftest import SMALL
from .sim_client import RawRtsp, ffprobe


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    event, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


async def test_control_api_drives_events_over_sse(camera: SimCamera) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(camera.control_url.rsplit("/cameras/", 1)[0] + "/cameras") as resp:
            [info] = await resp.json()
        assert info["rtsp_main"] == camera.rtsp_url("main") and info["events"] == camera.events_url
        async with http.get(camera.events_url) as events:
            assert events.headers["Content-Type"].startswith("text/event-stream")
            stream = sse_events(events)
            async with http.post(f"{camera.control_url}/press") as resp:
                assert resp.status == 202
            event, data = await anext(stream)
            assert event == "doorbell" and data["type"] == "doorbell" and data["camera"] == "sim-1"
            assert data["time"].endswith("Z")
            async with http.post(f"{camera.control_url}/visitor", json={"ring": True}) as resp:
                assert resp.status == 202
            got = []
            async with asyncio.timeout(30):
                while len(got) < 3:
                    event, data = await anext(stream)
                    got.append((event, data.get("state")))
            assert got == [("motion", "start"), ("doorbell", None), ("motion", "end")]


async def test_control_api_errors(camera: SimCamera) -> None:
    async with aiohttp.ClientSession() as http:
        base = camera.control_url
        async with http.post(base.replace("sim-1", "sim-7") + "/press") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "unknown_camera"
        async with http.post(f"{base}/fault", json={"kind": "melt"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "bad_fault"
        async with http.post(
            f"{base}/fault", data=b"{not json", headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/fault", json={"kind": "stall", "params": {"seconds": "soon"}}) as resp:
            assert resp.status == 400


async def test_fault_over_http_reaches_rtsp_clients(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        await client.play(camera.rtsp_url(with_credentials=False))
        await client.read_access_units(2)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{camera.control_url}/fault", json={"kind": "drop", "params": {}}) as resp,
        ):
            assert resp.status == 202
        async with asyncio.timeout(10):
            try:
                while True:
                    await client.read_interleaved()
            except asyncio.IncompleteReadError:
                pass
    finally:
        await client.close()


async def test_python_event_listener_and_fleet_urls() -> None:
    async with SimFleet(3, **SMALL) as fleet:
        assert [c.name for c in fleet.cameras] == ["sim-1", "sim-2", "sim-3"]
        ports = {c.rtsp.port for c in fleet.cameras}
        controls = {c.control_url.split("/cameras/")[0] for c in fleet.cameras}
        assert len(ports) == 1 and len(controls) == 1  # one RTSP and one control server
        with fleet["sim-3"].listen() as events:
            await fleet["sim-3"].press()
            event = await events.get()
        assert event is not None and (event.type, event.camera) == ("doorbell", "sim-3")
        for cam in fleet.cameras[1:]:
            client = await RawRtsp.connect(cam.rtsp_url("sub"))
            try:
                await client.play(cam.rtsp_url("sub", with_credentials=False))
                units = await client.read_access_units(3)
            finally:
                await client.close()
            stamps = [h264.find_stamp(h264.join_annexb(n)) for _, n in units]
            assert {s.camera for s in stamps} == {cam.name}  # the SEI names the camera


def test_slow_viewer_skips_to_next_idr_then_is_dropped() -> None:
    feed = Feed("sim-1", "main")

    def au(seq: int) -> AccessUnit:
        return AccessUnit(seq, seq * 6000, 0.0, seq % 5 == 0, 64, 64, (b"\x65",), payloads=(b"\x65",))

    sub = feed.subscribe(maxsize=8)
    seq = 0
    for seq in range(8):
        feed.publish(au(seq))
    assert sub.queue.qsize() == 8
    feed.publish(au(8))  # overflow: emptied, waits for an IDR
    assert sub.queue.empty() and sub.need_idr
    feed.publish(au(9))
    assert sub.queue.empty()
    feed.publish(au(10))  # IDR
    assert sub.queue.get_nowait().seq == 10
    seq = 11
    while not sub.dropped:
        feed.publish(au(seq))
        seq += 1
    assert sub.overruns == MAX_OVERRUNS and sub.queue.get_nowait() is None


def test_cli_defaults() -> None:
    args = cli.parse_args([])
    assert (args.cameras, args.rtsp_port, args.width, args.height, args.fps, args.gop) == (
        1,
        8554,
        1920,
        1080,
        15,
        30,
    )
    assert (args.user, args.password, args.no_mdns) == ("admin", "camhub", False)


async def test_cli_runs_cameras_until_interrupted(tmp_path: object, ffprobe_bin: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim.cli",
        "--cameras",
        "2",
        "--rtsp-port",
        "0",
        "--control-port",
        "0",
        "--no-mdns",
        "--width",
        "320",
        "--height",
        "180",
        "--sub-width",
        "320",
        "--sub-height",
        "180",
        "--gop",
        "15",
        "--loop-s",
        "1",
        "--no-cache",
        "--user",
        "u",
        "--password",
        "p",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        cameras = []
        async with asyncio.timeout(60):
            while (line := (await proc.stdout.readline()).decode().strip()) != "ready":
                assert line, (await proc.stderr.read()).decode()
                cameras.append(json.loads(line))
        assert [c["camera"] for c in cameras] == ["sim-1", "sim-2"]
        assert cameras[1]["rtsp_sub"].startswith("rtsp://u:p@127.0.0.1:")
        rc, data, err = await ffprobe(cameras[1]["rtsp_sub"])
        assert rc == 0 and data["streams"][0]["width"] == 320, err
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            rc = await proc.wait()
    assert rc == 0
