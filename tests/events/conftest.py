"""Fixtures for event tests: a migrated store, and a check that no decode thread outlives a test."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.store import Store


@pytest.fixture(autouse=True)
def no_leaked_motion_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("camhub-motion")]
    assert not leaked, f"decode threads still running after the test: {leaked}"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "camhub.sqlite")
    try:
        yield s
    finally:
        await s.close()
