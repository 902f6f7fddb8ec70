"""RFC 9162 §2.1 Merkle tree: tree heads, inclusion and consistency proofs, and their verification.

The audit log (PROTOCOL §5) is a list of canonical JSON entries; leaf i hashes to
SHA-256(0x00 ‖ entry_i) and an interior node to SHA-256(0x01 ‖ left ‖ right) (§2.1.1). The tree
head of the first n leaves, MTH(D[0:n]), splits at the largest power of two k < n (§2.1.1).

A "perfect" node is a complete, aligned subtree: level h, index i holds the hash of leaves
[i·2^h, (i+1)·2^h). Any MTH(D[a:b]) that RFC 9162's recursion needs is at most O(log n) perfect-node
lookups and hashes, because the left half of every split is such a node; `subtree_hash`,
`inclusion_path` and `consistency_path` take the lookup as a function, so the nodes can live anywhere.

`MerkleTree` keeps every perfect node in memory (~6.4 MB per 100k leaves): for verifiers and tests.
`Frontier` keeps only the right edge — the perfect nodes D[0:n] decomposes into, one per set bit of
n — so its memory is proportional to the tree's height; appending returns the nodes it completes,
for the caller to store where its lookup finds them (the hub: SQLite, hub/consent/audit.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from camhub_protocol.errors import AuditError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: HASH(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


PerfectLookup = Callable[[int, int], bytes]  # (level, index) -> hash of that perfect node
Node = tuple[int, int, bytes]  # (level, index, hash)


def subtree_hash(perfect: PerfectLookup, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for start < end (RFC 9162 §2.1.1), perfect aligned subtrees from `perfect`."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return perfect(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree_hash(perfect, start, start + k), subtree_hash(perfect, start + k, end))


def inclusion_path(perfect: PerfectLookup, m: int, start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end]) of RFC 9162 §2.1.3.1, leaf first (no range checks)."""
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*inclusion_path(perfect, m, start, start + k), subtree_hash(perfect, start + k, end)]
    return [*inclusion_path(perfect, m - k, start + k, end), subtree_hash(perfect, start, start + k)]


def consistency_path(perfect: PerfectLookup, m: int, start: int, end: int, whole: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[start:end], whole) of RFC 9162 §2.1.4.1 (no range checks; 0 < m <= n)."""
    n = end - start
    if m == n:
        return [] if whole else [subtree_hash(perfect, start, end)]
    k = _split(n)
    if m <= k:
        return [*consistency_path(perfect, m, start, start + k, whole), subtree_hash(perfect, start + k, end)]
    return [*consistency_path(perfect, m - k, start + k, end, False), subtree_hash(perfect, start, start + k)]


class Frontier:
    """The right edge of an append-only RFC 9162 tree: O(log n) hashes, whatever n is.

    Holds the perfect nodes D[0:size] decomposes into, largest first (one per set bit of size). The
    root of the current size folds them; anything about an older size needs the other perfect nodes,
    which `extend` hands to the caller as it completes them."""

    def __init__(self) -> None:
        self.size = 0
        self._edge: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing

    def copy(self) -> Frontier:
        other = Frontier()
        other.size, other._edge = self.size, list(self._edge)
        return other

    def extend(self, leaves: Iterable[bytes]) -> list[Node]:
        """Append leaf hashes; returns every perfect node of level >= 1 they complete."""
        done: list[Node] = []
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError("leaf hash must be 32 bytes")
            index = self.size
            level, h = 0, leaf
            while self._edge and self._edge[-1][0] == level:
                _, left = self._edge.pop()
                level, h = level + 1, node_hash(left, h)
                done.append((level, index >> level, h))
            self._edge.append((level, h))
            self.size += 1
        return done

    def nodes(self) -> list[Node]:
        """The edge as (level, index, hash), largest first."""
        out, start = [], 0
        for level, h in self._edge:
            out.append((level, start >> level, h))
            start += 1 << level
        return out

    def root(self) -> bytes:
        """MTH(D[0:size]): the right edge folded from the smallest node up (RFC 9162 §2.1.1 splits at
        the largest power of two, which is the edge's first node)."""
        if not self._edge:
            return EMPTY_ROOT
        root = self._edge[-1][1]
        for _, h in reversed(self._edge[:-1]):
            root = node_hash(h, root)
        return root


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes with cached perfect subtrees."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index. Completes every perfect subtree it closes."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        level, index = 0, len(self._levels[0])
        self._levels[0].append(leaf)
        while index & 1:
            if len(self._levels) == level + 1:
                self._levels.append([])
            row = self._levels[level]
            self._levels[level + 1].append(node_hash(row[index - 1], row[index]))
            level, index = level + 1, index >> 1
        return self.size - 1

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _perfect(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for start < end; perfect aligned subtrees come from the cache."""
        return subtree_hash(self._perfect, start, end)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise AuditError("bad_tree_size", f"tree size {size} outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """The tree head MTH(D[0:size]) (RFC 9162 §2.1.1); the current size by default."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(m, D[0:n]) of RFC 9162 §2.1.3.1, leaf first."""
        self._check_size(size)
        if not 0 <= index < size:
            raise AuditError("bad_leaf_index", f"leaf {index} is not in a tree of size {size}")
        return inclusion_path(self._perfect, index, 0, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(m, D[0:n]) of RFC 9162 §2.1.4.1; empty when m == n or m == 0."""
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise AuditError("bad_tree_size", f"cannot prove {old_size} -> {new_size}")
        if old_size in (0, new_size):
            return []
        return consistency_path(self._perfect, old_size, 0, new_size)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2 steps 1-5: the root a proof leads to, or None if the proof is malformed."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf `index` is in the tree of `size` with head `root`?"""
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (new_size, new_root) an append-only extension of the old one?"""
    if not 0 <= old_size <= new_size or any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # every tree extends the empty one
    path = list(proof)
    if not path:
        return False  # step 1
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # step 2
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0  # step 7
