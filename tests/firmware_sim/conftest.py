"""Fixtures: simulated cameras on ephemeral loopback ports, always stopped."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from firmware_sim.camera import SimCamera

SMALL = {
    "width": 640,
    "height": 360,
    "sub_width": 320,
    "sub_height": 180,
    "fps": 15,
    "gop": 15,
    "loop_s": 2.0,
    "visitor_s": 2.0,
}


@pytest.fixture
async def camera() -> AsyncIterator[SimCamera]:
    async with SimCamera("sim-1", **SMALL) as cam:
        yield cam


@pytest.fixture
def ffprobe_bin() -> str:
    path = shutil.which("ffprobe")
    if path is None:
        pytest.fail("ffprobe (Debian ffmpeg) is required: apt-get install ffmpeg")
    return path
