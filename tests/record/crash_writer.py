"""Helper process for the crash test: records a looped file live until killed.

`python -m tests.record.crash_writer MEDIA_FILE RECORDINGS_DIR DB_PATH [STORAGE_KEY_HEX]` (with a
storage key the segments are sealed at rest).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hub.ingest.rtsp import FileSource
from hub.record.recorder import Recorder
from hub.record.sealed import AtRest, StorageKey
from hub.store import Store


async def main(media: Path, recordings: Path, db: Path, key: StorageKey | None) -> None:
    store = await Store.open(db)
    at_rest = AtRest(key, seal=True) if key is not None else None
    recorder = Recorder("cam", recordings, store, segment_s=1.0, at_rest=at_rest)
    print("recording", flush=True)
    await recorder.run(FileSource("cam", media, realtime=True, loop_input=True))


if __name__ == "__main__":
    key = StorageKey(bytes.fromhex(sys.argv[4])) if len(sys.argv) > 4 else None
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), key))
