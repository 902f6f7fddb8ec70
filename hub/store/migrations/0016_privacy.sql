-- Privacy masks the owner drew in the web UI (PROTOCOL §4.1, hub/settings.py): per camera, a row
-- replaces that camera's `[cameras.privacy]` from camhub.toml (for the file's cameras too: the owner
-- may always change what is blacked out of what leaves). `privacy` is the TOML-shaped table as JSON
-- ({"masks": [[[x, y], …]], "owner_views": bool}), validated by hub.config.parse_privacy on every read.
CREATE TABLE owner_privacy (
    camera_id   TEXT PRIMARY KEY,
    privacy     TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
