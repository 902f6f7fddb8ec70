"""Events against the camera simulator: its sub-stream over RTSP, its SSE events, its picture.

The sim draws a frame stamp at the top and a clock overlay at the bottom that change every frame:
as an owner would, the test masks them, so the only motion left is the visitor's.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
import time
from pathlib import Path

import cv2

from firmware_sim.camera import SimCamera
from hub.events import EventRecorder, MotionConfig
from hub.events.motion import BATCH_S, MotionRunner
from hub.store import Store
from hub.store import events as q
from tests.events.polling import until

OVERLAY_MASKS = (
    ((0.0, 0.0), (1.0, 0.0), (1.0, 0.08), (0.0, 0.08)),  # frame stamp
    ((0.0, 0.88), (1.0, 0.88), (1.0, 1.0), (0.0, 1.0)),  # clock overlay
)


async def test_visitor_is_one_motion_event_and_press_is_one_press_event(tmp_path: Path, store: Store) -> None:
    data = tmp_path / "data"
    async with SimCamera(
        "sim-ev", width=640, height=360, sub_width=640, sub_height=360, fps=15, gop=15, loop_s=2.0
    ) as cam:
        seen: asyncio.Queue[q.Event] = asyncio.Queue()
        # 3 s of quiet ends an event: longer than the 2 s the sim's visitor stands at the door.
        config = MotionConfig(masks=OVERLAY_MASKS, end_quiet_s=3.0)
        recorder = EventRecorder(
            cam.name,
            store,
            data,
            motion_url=cam.rtsp_url("sub"),
            events_url=cam.events_url,
            motion=config,
            on_event=seen.put_nowait,
            runner_options={"backoff_initial_s": 0.2},
        )
        await recorder.start()
        try:
            runner, doorbell = recorder.runner, recorder.doorbell
            assert runner is not None and doorbell is not None
            await asyncio.wait_for(doorbell.connected.wait(), 20)
            # Two idle loops analysed (2 s each): the idle picture alone makes no event.
            await until(lambda: runner.frames_analysed >= 20, 60)
            assert seen.empty(), "motion on the idle doorstep"

            await cam.visitor()
            started = await asyncio.wait_for(seen.get(), 30)
            ended = await asyncio.wait_for(seen.get(), 30)
            assert started.kind == ended.kind == "motion"
            assert started.id == ended.id and started.end_at is None and ended.end_at is not None
            # Nothing else for another end_quiet_s + 2 s of analysed frames.
            mark = runner.frames_analysed
            await until(lambda: runner.frames_analysed >= mark + (config.end_quiet_s + 2) * 5, 30)
            assert seen.empty(), f"more than one event for one visitor: {seen.get_nowait()}"

            await cam.press()
            press = await asyncio.wait_for(seen.get(), 10)
            assert press.kind == "press"
        finally:
            await recorder.stop()

    events = await store.run(functools.partial(q.list_events, camera_id="sim-ev"))
    assert [e.kind for e in events] == ["press", "motion"]
    motion = events[1]
    # The visitor clip lasts 6 s: in, standing at the door, out.
    assert motion.end_at is not None and 3.0 <= motion.end_at - motion.start_at <= 8.0
    for event in events:
        assert event.thumbnail is not None
        image = cv2.imread(str(data / event.thumbnail))
        assert image is not None and image.shape == (360, 640, 3)


async def test_camera_reboot_reconnects_video_and_event_stream(tmp_path: Path, store: Store) -> None:
    fast = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0}
    async with SimCamera("sim-rb", width=640, height=360, fps=15, gop=15, loop_s=2.0) as cam:
        seen: asyncio.Queue[q.Event] = asyncio.Queue()
        recorder = EventRecorder(
            cam.name,
            store,
            tmp_path / "data",
            motion_url=cam.rtsp_url("sub"),
            events_url=cam.events_url,
            motion=MotionConfig(masks=OVERLAY_MASKS),
            on_event=seen.put_nowait,
            runner_options=fast,
            doorbell_options=fast,
        )
        await recorder.start()
        try:
            runner, doorbell = recorder.runner, recorder.doorbell
            assert runner is not None and doorbell is not None
            await asyncio.wait_for(doorbell.connected.wait(), 20)
            await until(lambda: runner.frames_analysed >= 3, 30)

            await cam.fault("reboot", seconds=2)
            await until(lambda: runner.reconnects >= 1 and doorbell.reconnects >= 1, 30)
            mark = runner.frames_analysed
            await until(lambda: runner.frames_analysed >= mark + 5, 30)  # video is back
            await asyncio.wait_for(doorbell.connected.wait(), 20)  # and so are the events

            await cam.press()
            press = await asyncio.wait_for(seen.get(), 10)
            assert press.kind == "press"
        finally:
            await recorder.stop()
    assert [e.kind for e in await store.run(q.list_events)] == ["press"]


async def test_a_live_stream_is_analysed_in_batches_at_the_time_each_frame_arrived() -> None:
    """Issue 17: a live stream is decoded and analysed about every BATCH_S, not packet by packet, and
    each analysed frame keeps the time its packet arrived, so analysis stays at analysis_fps (times
    taken when a batch is processed would bunch a batch's frames together and skip most of them)."""
    async with SimCamera(
        "sim-batch", width=640, height=360, sub_width=640, sub_height=360, fps=15, gop=15
    ) as cam:
        runner = MotionRunner(
            cam.name, cam.rtsp_url("sub"), MotionConfig(masks=OVERLAY_MASKS), lambda t: None
        )
        await runner.start()
        try:
            await until(lambda: runner.frames_analysed >= 5, 30)
            window_s = 4.0
            decoded0, analysed0 = runner.frames_decoded, runner.frames_analysed
            steps = 0  # how often frames_decoded moved, seen every 10 ms
            last = decoded0
            times: list[float] = []
            deadline = time.monotonic() + window_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                if runner.frames_decoded != last:
                    steps, last = steps + 1, runner.frames_decoded
                latest = runner.latest
                if latest is not None and (not times or latest.time != times[-1]):
                    # Stamped when it arrived: never ahead of now, and behind by at most a batch
                    # (plus what a loaded machine adds).
                    assert time.time() - 2 - BATCH_S <= latest.time <= time.time()
                    times.append(latest.time)
            decoded = runner.frames_decoded - decoded0
            analysed = runner.frames_analysed - analysed0
        finally:
            await runner.stop()
    assert decoded >= 40, f"only {decoded} frames decoded in {window_s} s of a 15 fps stream"
    # Packet by packet, frames_decoded would move ~60 times in 4 s; in batches ~8 (some batches are
    # seen half done when the decoder releases the GIL).
    assert steps <= 2.5 * window_s / BATCH_S, f"frames_decoded moved {steps} times for {decoded} frames"
    assert 4.0 <= analysed / window_s <= 6.0, f"{analysed} frames analysed in {window_s} s, want 5 fps"
    # The test sees the last analysed frame of each batch: in order, a batch apart.
    assert times == sorted(times) and len(times) >= 3
    assert statistics.median(b - a for a, b in itertools.pairwise(times)) <= 2 * BATCH_S
