-- Retention the owner controls (PROTOCOL §3.2, issue 19).
-- Owner holds: footage kept past the max age because the owner signed a `hold` decision. `id` is the
-- decision id; `kid` the owner key that signed it; released by a signed `release-hold` (or never).
CREATE TABLE owner_holds (
    id           TEXT PRIMARY KEY,
    kid          TEXT NOT NULL,
    cameras      TEXT NOT NULL,      -- JSON list of camera ids
    start_at     REAL NOT NULL,
    end_at       REAL NOT NULL,
    until        REAL NOT NULL,
    reason       TEXT NOT NULL,
    asked_by     TEXT NOT NULL,
    created_at   REAL NOT NULL,
    released_at  REAL,
    released_by  TEXT               -- decision id of the release-hold
);

-- `camhub export` outputs: copies of footage outside the recordings directory, which age out with
-- the footage (deleted once their newest footage is older than the camera's max age, unless held).
CREATE TABLE exports (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL,       -- absolute
    camera_id   TEXT NOT NULL,
    start_at    REAL NOT NULL,
    end_at      REAL NOT NULL,
    created_at  REAL NOT NULL,
    deleted_at  REAL
);
CREATE INDEX exports_live ON exports (deleted_at, end_at);

-- A delivery whose footage passed max age is deleted from disk (§3.2); the row stays, as the record
-- of what was sent, and a fetch of it answers 404.
ALTER TABLE deliveries ADD COLUMN expired_at REAL;
