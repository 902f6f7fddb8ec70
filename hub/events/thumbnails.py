"""Event thumbnails: one JPEG per event, `<data_dir>/events/<camera>/<YYYY-MM-DD>/<event_id>.jpg`.

The file is the truth and the DB row points at it, so it is written before the row is updated:
temp file, fsync, rename, fsync the directory. Blocking; run it in a thread.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import cv2
import numpy as np


def thumbnail_relpath(camera_id: str, event_id: str, start_at: float) -> str:
    """Path relative to the data dir; the date is the UTC day of the event's start."""
    day = dt.datetime.fromtimestamp(start_at, dt.UTC).date().isoformat()
    return f"events/{camera_id}/{day}/{event_id}.jpg"


def write_thumbnail(data_dir: Path, relpath: str, image: np.ndarray, quality: int = 80) -> Path:
    """Encode `image` (BGR) as JPEG and store it durably at `data_dir / relpath`."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    path = data_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
