-- Passkeys (PROTOCOL.md §3.1, issue 18): an owner key whose signatures are WebAuthn assertions.
-- The key itself is a row of owner_keys like any other (kid = RFC 7638 thumbprint of public_jwk, an
-- EC P-256 or Ed25519 JWK), so lineage, revocation and the "last key" rule hold unchanged; this
-- table holds only what WebAuthn adds.
CREATE TABLE owner_passkeys (
    kid            TEXT PRIMARY KEY REFERENCES owner_keys (kid),
    credential_id  TEXT NOT NULL UNIQUE,  -- base64url, what the browser is asked to sign with
    public_key     BLOB NOT NULL,         -- the COSE_Key (RFC 9052 §7) from the attestation
    rp_id          TEXT NOT NULL,         -- the relying party it was made for
    sign_count     INTEGER NOT NULL       -- the authenticator's counter as last seen (§3.1)
);

-- Which format the stored decision text is: a JWS compact string, or a passkey decision's
-- canonical JSON (§3.1). Existing rows are JWS.
ALTER TABLE decisions ADD COLUMN format TEXT NOT NULL DEFAULT 'jws' CHECK (format IN ('jws', 'webauthn'));
