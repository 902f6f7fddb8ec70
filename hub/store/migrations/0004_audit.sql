-- Audit log (PROTOCOL §5): append-only entries (RFC 9162 leaves) and signed checkpoints.
-- seq is the 0-based leaf index; entry holds the exact RFC 8785 bytes that were hashed.
CREATE TABLE audit_entries (
    seq       INTEGER PRIMARY KEY CHECK (seq >= 0),
    entry     BLOB NOT NULL,
    leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32)
);

-- Append-only is enforced by the database too, not just by the code that writes it.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

-- One signed note (C2SP tlog-checkpoint) per tree size at most.
CREATE TABLE audit_checkpoints (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    note       TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
