-- Owner web UI: the owner's password, browser sessions, and devices waiting to be enrolled.
-- The password is an scrypt hash (RFC 7914) with its parameters, so they can be raised later.
CREATE TABLE web_password (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    hash     TEXT NOT NULL,
    set_at   REAL NOT NULL
);

-- A session row is keyed by SHA-256 of the cookie value: reading the database never yields a
-- cookie that would log someone in. csrf is the synchronizer token the page sends back.
CREATE TABLE web_sessions (
    id_sha256   TEXT PRIMARY KEY,
    csrf        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    remote      TEXT NOT NULL,
    user_agent  TEXT NOT NULL
);

CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

-- A browser (e.g. the owner's phone) logged in with the password that made its own signing key and
-- asks to be enrolled; an already-enrolled device approves it by signing an enroll-key decision.
CREATE TABLE web_device_requests (
    kid         TEXT PRIMARY KEY,
    public_jwk  TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
