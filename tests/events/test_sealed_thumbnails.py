"""Event thumbnails show faces: with encryption at rest the events service seals them like footage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np

from hub.events import EventRecorder, MotionConfig
from hub.record.sealed import MAGIC, AtRest, StorageKey
from hub.store import Store
from hub.store import events as q
from tests.events.scenes import H, W, encode_walk

T0 = 1_763_900_000.0


async def test_motion_thumbnail_is_sealed_on_disk(tmp_path: Path, store: Store) -> None:
    video = tmp_path / "walk.mp4"
    await asyncio.to_thread(encode_walk, video, quiet_before_s=1.0, walk_s=2.0)
    at_rest = AtRest(StorageKey.generate(), seal=True)
    recorder = EventRecorder(
        "door",
        store,
        tmp_path / "data",
        motion_url=str(video),
        motion=MotionConfig(),
        runner_options={"reconnect": False, "clock": "stream", "clock_base": T0},
        at_rest=at_rest,
    )
    await recorder.start()
    try:
        assert recorder.runner is not None
        await asyncio.wait_for(recorder.runner.wait_finished(), 60)
    finally:
        await recorder.stop()
    (event,) = await store.run(q.list_events)
    assert event.thumbnail is not None
    raw = (tmp_path / "data" / event.thumbnail).read_bytes()
    assert raw.startswith(MAGIC) and b"\xff\xd8\xff" not in raw and b"JFIF" not in raw
    assert cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) is None
    image = cv2.imdecode(np.frombuffer(at_rest.read_file(tmp_path / "data" / event.thumbnail), np.uint8), 1)
    assert image is not None and image.shape == (H, W, 3)
    assert not list((tmp_path / "data").rglob("*.tmp"))
