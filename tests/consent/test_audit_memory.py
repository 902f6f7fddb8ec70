"""The audit log's Merkle tree costs memory proportional to its height (issue 17): only the right edge
is in memory, interior nodes are rows of `audit_nodes`, and every root and proof is byte-identical to
the whole in-memory tree's (`merkle.MerkleTree`, what the stand-alone verifier builds)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from camhub_protocol import merkle
from camhub_protocol.keys import HubKey
from hub.consent.audit import AuditLog
from hub.store import Store

ENTRIES = 1100  # not a power of two: the edge has several nodes, proofs cross every split shape


@pytest.fixture
def hub_key(tmp_path: Path) -> HubKey:
    (tmp_path / "keys").mkdir()
    return HubKey.load_or_create(tmp_path / "keys")[0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "hub.db")
    try:
        yield s
    finally:
        await s.close()


def _leaves(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM audit_entries ORDER BY seq")]


def _same_as_whole_tree(log: AuditLog, whole: merkle.MerkleTree) -> None:
    n = whole.size
    assert log.size == n and log.root() == whole.root()
    for size in (1, 2, 3, 7, 64, 65, 511, 512, 513, 1000, n - 1, n):
        assert log.root(size) == whole.root(size), size
        for seq in {0, size // 3, size // 2, size - 1}:
            assert log.inclusion_proof(seq, size) == whole.inclusion_proof(seq, size), (seq, size)
        for old in {1, size // 2, size - 1, size}:
            assert log.consistency_proof(old, size) == whole.consistency_proof(old, size), (old, size)


async def test_edge_in_memory_nodes_on_disk_proofs_identical(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    log = await AuditLog.open(store, hub_key)
    for i in range(ENTRIES):
        await log.append("request.received", "agency:a", {"i": i})
    await log.checkpoint()
    # Memory: one hash per set bit of the size, whatever the size.
    edge = log._tree.nodes()
    assert len(edge) == ENTRIES.bit_count() <= ENTRIES.bit_length()
    whole = merkle.MerkleTree(_leaves(tmp_path / "hub.db"))
    _same_as_whole_tree(log, whole)

    # Nodes missing on disk (a database from before the table, or entries another process appended)
    # are recomputed at open; the checkpoint check passes and the proofs are the same bytes.
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        conn.execute("DELETE FROM audit_nodes WHERE level <= 3 OR idx % 2 = 1")
    reopened = await AuditLog.open(store, hub_key)
    _same_as_whole_tree(reopened, whole)

    # An entry appended by another process joins the tree (and its nodes the table) at the next append.
    from hub.store import audit as q

    with sqlite3.connect(tmp_path / "hub.db", isolation_level=None) as conn:
        q.insert_next_entry(conn, lambda seq: (b'{"seq":%d}' % seq, merkle.leaf_hash(b'{"seq":%d}' % seq)))
    await reopened.append("request.received", "agency:a", {"i": "last"})
    whole = merkle.MerkleTree(_leaves(tmp_path / "hub.db"))
    assert whole.size == ENTRIES + 2
    _same_as_whole_tree(reopened, whole)
