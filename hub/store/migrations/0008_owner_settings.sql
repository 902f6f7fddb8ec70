-- Settings the owner changes in the web UI, kept as an overlay on the config file (hub/settings.py):
-- cameras added in the browser, and storage limits that replace the file's. Cameras in camhub.toml
-- are never written here; they stay read-only in the UI.
-- `camera` is the camera's table exactly as it would appear in camhub.toml (JSON), validated by
-- hub.config.parse_camera on every read, so a row can never hold something the file could not.
-- It may hold the camera's RTSP password, like camhub.toml does; the database file is 0600.
CREATE TABLE owner_cameras (
    id          TEXT PRIMARY KEY,
    camera      TEXT NOT NULL,
    added_at    REAL NOT NULL,
    updated_at  REAL NOT NULL
);

-- The file's [storage] keys the owner overrode (a JSON object of max_age_days / quota_gb).
CREATE TABLE owner_storage (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    storage     TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
