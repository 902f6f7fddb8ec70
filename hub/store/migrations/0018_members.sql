-- Household members (PROTOCOL §1.2, issue 19): people the owner lets watch chosen cameras. A member
-- is never an owner: no key of theirs is stored anywhere, so nothing they hold can sign a decision.
CREATE TABLE members (
    id                 TEXT PRIMARY KEY,     -- m-<16 base64url>
    name               TEXT NOT NULL,
    rights             TEXT NOT NULL,        -- JSON {"<camera_id>": {"live": bool, "recordings": bool}}
    password_hash      TEXT,                 -- scrypt (RFC 7914); NULL until the invite is accepted
    invite_sha256      TEXT UNIQUE,          -- SHA-256 of the one-time code; NULL once spent
    invite_expires_at  REAL,
    created_at         REAL NOT NULL,
    joined_at          REAL,
    removed_at         REAL
);
-- Names are unique among members still in the household, ignoring case (they log in by name).
CREATE UNIQUE INDEX members_name ON members (lower(name)) WHERE removed_at IS NULL;

-- Who a browser session is: NULL the owner, else the member's id (PROTOCOL §1.2).
ALTER TABLE web_sessions ADD COLUMN member_id TEXT;
CREATE INDEX web_sessions_member ON web_sessions (member_id) WHERE member_id IS NOT NULL;
