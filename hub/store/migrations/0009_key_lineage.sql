-- Issue 12: key lineage, a grant's end that a wall clock set back cannot undo, and the box reset.
--
-- owner_keys.enrolled_by (0005) already names the key that enrolled each key (NULL: the pairing code
-- or `camhub owner reset`, a root). Revoking a key walks it downwards, a revoke-key walks it upwards
-- to refuse revoking an ancestor; the index keeps the downward walk a lookup per level.
CREATE INDEX owner_keys_enrolled_by ON owner_keys (enrolled_by);

-- Agencies are added by a decision (agencies.added_by = decisions.id); revoking a key removes the
-- agencies its decisions added.
CREATE INDEX decisions_kid ON decisions (kid);

-- Set once the gate has seen a grant's time run out (by the wall clock or by the monotonic deadline
-- armed in this boot): from then on the grant is over for good, whatever the wall clock says later
-- (PROTOCOL §6).
ALTER TABLE grants ADD COLUMN ended_at REAL;
