-- A household member's passkey (PROTOCOL §1.2, issue 19): a login only, never a signing key. Kept
-- apart from owner_keys/owner_passkeys on purpose: no owner key lookup reads this table, so a
-- decision signed with a member's passkey finds no owner key (403 unknown_owner_key).
CREATE TABLE member_passkeys (
    member_id      TEXT PRIMARY KEY REFERENCES members (id),  -- one passkey per member
    kid            TEXT NOT NULL,         -- RFC 7638 thumbprint of the credential public key
    credential_id  TEXT NOT NULL UNIQUE,  -- base64url
    public_key     BLOB NOT NULL,         -- COSE_Key
    rp_id          TEXT NOT NULL,
    sign_count     INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL
);
