"""Ingest tests share the recording tests' fixtures: a migrated store, test media, and the
thread-leak check (one definition, in tests/record/conftest.py)."""

from tests.record.conftest import clip_160, clip_320, clip_short_gop, no_thread_leak, store

__all__ = ["clip_160", "clip_320", "clip_short_gop", "no_thread_leak", "store"]
