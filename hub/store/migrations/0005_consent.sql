-- Consent records (PROTOCOL.md §1-§3, §6): owner keys, agencies, signed requests, owner decisions,
-- grants, replay memory and deliveries. Times are wall-clock Unix seconds (REAL).

-- Owner signing keys. `kid` is the RFC 7638 thumbprint of `public_jwk`. The daemon shows the pairing
-- code while no row has `revoked_at IS NULL` (hub/daemon.py `_owner_enrolled`).
CREATE TABLE owner_keys (
    kid          TEXT PRIMARY KEY,
    public_jwk   TEXT NOT NULL,
    name         TEXT NOT NULL,
    enrolled_at  REAL NOT NULL,
    enrolled_by  TEXT,              -- kid of the owner key that signed enroll-key; NULL = pairing code
    revoked_at   REAL,
    revoked_by   TEXT
);

-- Agencies the owner trusts. `keyid` is the RFC 7638 thumbprint of `sig_jwk`; removal keeps the row.
CREATE TABLE agencies (
    keyid       TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    sig_jwk     TEXT NOT NULL,
    recipient   TEXT NOT NULL,      -- age X25519 recipient (age1...) deliveries are encrypted to
    added_at    REAL NOT NULL,
    added_by    TEXT NOT NULL,
    removed_at  REAL,
    removed_by  TEXT
);

-- Agency requests as received: the exact body bytes (its SHA-256 is what owners sign over).
-- `state` is the hub's internal view (pending, approved, declined, closed); the agency-facing status
-- is derived from it, the grant and respond_by so that declines are not visible (§2.2).
CREATE TABLE consent_requests (
    id                TEXT PRIMARY KEY,
    agency_keyid      TEXT NOT NULL REFERENCES agencies (keyid),
    body              BLOB NOT NULL,
    body_sha256       TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('clip', 'live')),
    cameras           TEXT NOT NULL,  -- JSON list of camera ids as asked
    start_at          REAL,
    end_at            REAL,
    live_max_seconds  INTEGER,
    received_at       REAL NOT NULL,
    respond_by        REAL NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'approved', 'declined', 'closed'))
);

CREATE INDEX consent_requests_agency ON consent_requests (agency_keyid, id);

-- Every accepted owner decision, its verified JWS stored verbatim (the evidence), whatever its kind.
CREATE TABLE decisions (
    id           TEXT PRIMARY KEY,   -- base64url SHA-256 of the JWS compact string
    kind         TEXT NOT NULL,
    kid          TEXT NOT NULL,      -- the owner key that signed it
    request_id   TEXT,
    jws          TEXT NOT NULL,
    issued_at    REAL NOT NULL,
    accepted_at  REAL NOT NULL
);

-- Approvals: what the egress gate re-reads at every send (§4).
CREATE TABLE grants (
    id                TEXT PRIMARY KEY REFERENCES decisions (id),
    request_id        TEXT NOT NULL REFERENCES consent_requests (id),
    recipient         TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('clip', 'live')),
    cameras           TEXT NOT NULL,  -- JSON list
    start_at          REAL,
    end_at            REAL,
    live_max_seconds  INTEGER,
    max_fetches       INTEGER NOT NULL,
    not_after         REAL NOT NULL,
    revoked_at        REAL,
    revoked_by        TEXT            -- decision id (revoke, remove-agency, revoke-key)
);

CREATE INDEX grants_request ON grants (request_id);
CREATE INDEX grants_recipient ON grants (recipient);

-- jti of every authentic owner JWS (decisions and time confirmations): single use forever (§3).
CREATE TABLE used_jti (
    jti      TEXT PRIMARY KEY,
    used_at  REAL NOT NULL
);

-- RFC 9421 nonces seen per agency key within the last 600 s (§2); persisted so a restart forgets none.
CREATE TABLE seen_nonces (
    keyid    TEXT NOT NULL,
    nonce    TEXT NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (keyid, nonce)
);

CREATE INDEX seen_nonces_seen_at ON seen_nonces (seen_at);

-- Encrypted deliveries (§2.3), one per approved camera with footage. The file is the truth; the row
-- is written after it is complete.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,   -- random, the last segment of the delivery URL
    grant_id     TEXT NOT NULL REFERENCES grants (id),
    request_id   TEXT NOT NULL REFERENCES consent_requests (id),
    camera_id    TEXT NOT NULL,
    start_at     REAL NOT NULL,
    end_at       REAL NOT NULL,
    path         TEXT NOT NULL,      -- relative to the data dir
    sha256       TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    fetch_count  INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL
);

CREATE INDEX deliveries_request ON deliveries (request_id);

-- Owner confirmations of the hub's clock (§6), kept as evidence; one per signed confirmation.
CREATE TABLE clock_confirmations (
    id            INTEGER PRIMARY KEY,
    kid           TEXT NOT NULL,
    owner_time    REAL NOT NULL,
    hub_time      REAL NOT NULL,
    boot_id       TEXT NOT NULL,
    jws           TEXT NOT NULL
);
