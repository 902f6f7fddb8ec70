-- Issue 15 (PROTOCOL §7.2): a request that came through a relay's queue was answered 202 by the relay
-- before the hub saw it. When the hub then refuses it after the agency's signature verified (a bad
-- body, the agency's hourly quota, a past respond_by), the refusal is kept here so that the agency's
-- polls say so (`"status": "refused"`) instead of a bare 404. Only verified agencies get a row, at
-- most one per request id (the id is derived from the signature's keyid and nonce), and rows go
-- once their respond_by has passed.
CREATE TABLE relay_refusals (
    id           TEXT PRIMARY KEY,
    agency_keyid TEXT NOT NULL,
    code         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    respond_by   REAL NOT NULL,
    refused_at   REAL NOT NULL
);
