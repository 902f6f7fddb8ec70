"""EventRecorder end to end on a real H.264 file: decode thread -> detector -> row + JPEG on disk."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import cv2

from hub.events import EventRecorder, MotionConfig
from hub.store import Store
from hub.store import events as q
from tests.events.polling import until
from tests.events.scenes import H, W, encode_walk

CORNER = ((0.0, 0.0), (0.2, 0.0), (0.2, 0.2), (0.0, 0.2))  # a privacy mask away from the walk
T0 = 1_763_900_000.0  # 2025-11-23T12:13:20Z: the file's time 0 on the event clock


async def test_walk_in_file_is_one_motion_event_with_thumbnail(tmp_path: Path, store: Store) -> None:
    video = tmp_path / "walk.mp4"
    await asyncio.to_thread(encode_walk, video, quiet_before_s=2.0, walk_s=3.0)
    seen: list[q.Event] = []
    recorder = EventRecorder(
        "door",
        store,
        tmp_path / "data",
        motion_url=str(video),
        motion=MotionConfig(masks=(CORNER,)),
        on_event=seen.append,
        runner_options={"reconnect": False, "clock": "stream", "clock_base": T0},
    )
    await recorder.start()
    try:
        assert recorder.runner is not None
        await asyncio.wait_for(recorder.runner.wait_finished(), 60)
    finally:
        await recorder.stop()

    assert recorder.runner.frames_decoded == 90
    # 15 fps in, 5 fps analysed.
    assert 28 <= recorder.runner.frames_analysed <= 31
    events = await store.run(q.list_events)
    assert len(events) == 1
    event = events[0]
    assert event.kind == "motion" and event.camera_id == "door"
    # The walk starts at t=2 s and lasts 3 s.
    assert T0 + 1.8 <= event.start_at <= T0 + 3.0
    assert event.end_at is not None and T0 + 4.0 <= event.end_at <= T0 + 5.5
    assert event.score >= MotionConfig().min_area
    assert event.thumbnail == f"events/door/2025-11-23/{event.id}.jpg"
    image = cv2.imread(str(tmp_path / "data" / event.thumbnail))
    assert image is not None and image.shape == (H, W, 3)
    # The privacy mask is blacked out of the thumbnail; the rest of the picture is not.
    assert image[5 : int(0.2 * H) - 5, 5 : int(0.2 * W) - 5].max() < 16
    assert image[int(0.3 * H) :, int(0.3 * W) :].mean() > 40
    assert not list((tmp_path / "data").rglob("*.part"))
    # on_event saw the start and then the end of the same event.
    assert [e.id for e in seen] == [event.id, event.id]
    assert seen[0].end_at is None and seen[1].end_at == event.end_at


async def test_unreachable_stream_reconnects_with_backoff_and_stops_cleanly(
    tmp_path: Path, store: Store
) -> None:
    recorder = EventRecorder(
        "gone",
        store,
        tmp_path / "data",
        motion_url=str(tmp_path / "missing.mp4"),
        runner_options={"backoff_initial_s": 0.01, "backoff_max_s": 0.05},
    )
    await recorder.start()
    try:
        runner = recorder.runner
        assert runner is not None
        await until(lambda: runner.reconnects >= 3, 30)
        assert runner.last_error is not None and "No such file" in runner.last_error
    finally:
        await recorder.stop()
    assert await store.run(q.list_events) == []


async def test_events_left_open_by_a_crash_are_closed_at_start(tmp_path: Path, store: Store) -> None:
    open_event = q.Event("e1", "door", "motion", T0, None, 0.2, None, T0)
    other = q.Event("e2", "porch", "motion", T0, None, 0.2, None, T0)
    await store.run(q.insert_event, open_event)
    await store.run(q.insert_event, other)
    recorder = EventRecorder("door", store, tmp_path / "data")
    await recorder.start()
    await recorder.stop()
    assert (await store.run(q.get_event, "e1")).end_at == T0  # type: ignore[union-attr]
    assert (await store.run(q.get_event, "e2")).end_at is None  # type: ignore[union-attr]


def test_day_of_thumbnail_is_utc_day_of_start() -> None:
    from hub.events.thumbnails import thumbnail_relpath

    late = dt.datetime(2025, 11, 23, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert thumbnail_relpath("door", "abc", late) == "events/door/2025-11-23/abc.jpg"
    assert thumbnail_relpath("door", "abc", late + 2) == "events/door/2025-11-24/abc.jpg"
