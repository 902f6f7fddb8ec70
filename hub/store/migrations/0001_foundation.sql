-- Foundation: hub metadata and cameras known to the hub.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE camera_status (
    camera_id       TEXT PRIMARY KEY,
    online          INTEGER NOT NULL DEFAULT 0,
    last_frame_at   REAL,
    last_error      TEXT,
    reconnect_count INTEGER NOT NULL DEFAULT 0,
    updated_at      REAL NOT NULL
);
