-- Events: motion detected by the hub and doorbell presses reported by the camera.
-- Times are Unix seconds (UTC). end_at is NULL while a motion event lasts; a press has end_at = start_at.
-- thumbnail is a path relative to the data dir (events/<camera>/<YYYY-MM-DD>/<id>.jpg), NULL if none.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    camera_id  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('motion', 'press')),
    start_at   REAL NOT NULL,
    end_at     REAL,
    score      REAL NOT NULL DEFAULT 0 CHECK (score >= 0),
    thumbnail  TEXT,
    created_at REAL NOT NULL,
    CHECK (end_at IS NULL OR end_at >= start_at)
);

CREATE INDEX events_camera_start ON events (camera_id, start_at);
CREATE INDEX events_start ON events (start_at);
