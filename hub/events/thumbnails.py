"""Event thumbnails: one JPEG per event, `<data_dir>/events/<camera>/<YYYY-MM-DD>/<event_id>.jpg`.

The file is the truth and the DB row points at it, so it is written before the row is updated:
temp file, fsync, rename, fsync the directory. Blocking; run it in a thread. With encryption at rest
the JPEG is sealed like footage (it shows faces): written and read only through `AtRest`
(hub/record/sealed.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np

from hub.record.sealed import AtRest


def thumbnail_relpath(camera_id: str, event_id: str, start_at: float) -> str:
    """Path relative to the data dir; the date is the UTC day of the event's start."""
    day = dt.datetime.fromtimestamp(start_at, dt.UTC).date().isoformat()
    return f"events/{camera_id}/{day}/{event_id}.jpg"


def write_thumbnail(
    data_dir: Path, relpath: str, image: np.ndarray, quality: int = 80, *, at_rest: AtRest | None = None
) -> Path:
    """Encode `image` (BGR) as JPEG and store it durably at `data_dir / relpath` (sealed if `at_rest`
    seals)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    path = data_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    (at_rest or AtRest()).write_file(path, buf.tobytes())
    return path
