-- Recording: the index over fMP4 segment files (the files are the truth) and gaps in the footage.
-- Times are wall-clock Unix seconds (REAL); `path` is relative to the recordings directory.
CREATE TABLE segments (
    id          INTEGER PRIMARY KEY,
    camera_id   TEXT    NOT NULL,
    start_at    REAL    NOT NULL,
    end_at      REAL    NOT NULL,
    duration_s  REAL    NOT NULL,
    bytes       INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    codec       TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    path        TEXT    NOT NULL UNIQUE,
    recovered   INTEGER NOT NULL DEFAULT 0,
    created_at  REAL    NOT NULL,
    CHECK (end_at >= start_at)
);

-- A day's timeline for one camera, clip export and per-camera max-age: (camera_id, start_at) range scans.
CREATE INDEX segments_camera_start ON segments (camera_id, start_at);
-- Global quota: oldest first across cameras, paged by (start_at, id).
CREATE INDEX segments_start ON segments (start_at, id);

-- A discontinuity in a camera's footage: reconnect, timestamp jump, codec change, restart, lost file.
CREATE TABLE recording_gaps (
    id          INTEGER PRIMARY KEY,
    camera_id   TEXT    NOT NULL,
    start_at    REAL    NOT NULL,
    end_at      REAL    NOT NULL,
    reason      TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    CHECK (end_at >= start_at)
);

CREATE INDEX recording_gaps_camera_start ON recording_gaps (camera_id, start_at);
