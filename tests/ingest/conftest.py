"""Fixtures for recording tests: a migrated store, test media, and a thread-leak check."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.store import Store
from tests.record.media import make_h264


def _camhub_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("camhub-")}


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Fail a test that leaves a camhub worker thread (demux, recorder, DB) running."""
    before = _camhub_threads()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leaked = _camhub_threads() - before
        if not leaked:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads leaked: {sorted(t.name for t in leaked)}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "camhub.sqlite")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def clip_320(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 320x240, 15 fps, keyframe every second."""
    return make_h264(tmp_path_factory.mktemp("media") / "clip320.mp4")


@pytest.fixture(scope="session")
def clip_160(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 160x120, 15 fps, keyframe every second (for resolution changes)."""
    return make_h264(tmp_path_factory.mktemp("media") / "clip160.mp4", seconds=2.0, width=160, height=120)


@pytest.fixture(scope="session")
def clip_short_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s, 320x240, 15 fps, keyframe every 5 frames (short fragments for the crash test)."""
    return make_h264(tmp_path_factory.mktemp("media") / "gop5.mp4", seconds=3.0, gop=5)
