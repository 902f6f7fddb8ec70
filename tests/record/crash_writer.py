"""Helper process for the crash test: records a looped file live until killed.

`python -m tests.record.crash_writer MEDIA_FILE RECORDINGS_DIR DB_PATH`
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hub.ingest.rtsp import FileSource
from hub.record.recorder import Recorder
from hub.store import Store


async def main(media: Path, recordings: Path, db: Path) -> None:
    store = await Store.open(db)
    recorder = Recorder("cam", recordings, store, segment_s=1.0)
    print("recording", flush=True)
    await recorder.run(FileSource("cam", media, realtime=True, loop_input=True))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
