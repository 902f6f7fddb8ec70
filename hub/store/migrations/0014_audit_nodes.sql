-- Issue 17. The audit log's Merkle tree (PROTOCOL §5) was held whole in memory, growing with every
-- entry. Its interior nodes now live here: level h >= 1, index i is the RFC 9162 hash of leaves
-- [i * 2^h, (i + 1) * 2^h) (level 0 is audit_entries.leaf_hash). The daemon keeps only the tree's
-- right edge in memory and reads proofs' nodes from this table. The rows are derived from the leaf
-- hashes: at open the daemon recomputes them in one streaming pass and fills in any that are missing
-- (this migration leaves the table empty; the first start fills it).
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL CHECK (level >= 1),
    idx INTEGER NOT NULL CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
