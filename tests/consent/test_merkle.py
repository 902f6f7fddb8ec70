"""RFC 9162 tree heads and proofs: known vectors and a second, plainly recursive computation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camhub_protocol import audit_verify, merkle
from camhub_protocol.errors import AuditError

# certificate-transparency / transparency-dev test vectors (RFC 6962 hashing = RFC 9162 §2.1).
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


# A second computation, straight from the RFC 9162 §2.1 definitions, sharing no code with merkle.py.
def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def tree_of(entries: list[bytes]) -> merkle.MerkleTree:
    return merkle.MerkleTree([merkle.leaf_hash(e) for e in entries])


def test_known_roots() -> None:
    tree = merkle.MerkleTree()
    assert tree.root().hex() == ROOTS[0]
    for i, leaf in enumerate(LEAVES):
        tree.append(merkle.leaf_hash(leaf))
        assert tree.root().hex() == ROOTS[i + 1]
    for size in range(9):
        assert tree.root(size).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size"), list(INCLUSION))
def test_known_inclusion_proofs(index: int, size: int) -> None:
    tree = tree_of(LEAVES)
    proof = tree.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    assert merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), proof, tree.root(size))


@pytest.mark.parametrize(("old", "new"), list(CONSISTENCY))
def test_known_consistency_proofs(old: int, new: int) -> None:
    tree = tree_of(LEAVES)
    proof = tree.consistency_proof(old, new)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    assert merkle.verify_consistency(old, new, tree.root(old), tree.root(new), proof)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=0, max_size=70))
def test_roots_match_reference(entries: list[bytes]) -> None:
    tree = tree_of(entries)
    for size in range(len(entries) + 1):
        assert tree.root(size) == ref_mth(entries[:size])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(max_size=4), min_size=1, max_size=50), st.data())
def test_proofs_match_reference_and_verify(entries: list[bytes], data: st.DataObject) -> None:
    tree = tree_of(entries)
    size = data.draw(st.integers(1, len(entries)))
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    assert proof == ref_path(index, entries[:size])
    root = ref_mth(entries[:size])
    leaf = merkle.leaf_hash(entries[index])
    assert merkle.verify_inclusion(index, size, leaf, proof, root)
    # Any other index, a wrong leaf, or a dropped/extra node must fail.
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(entries[index] + b"x"), proof, root)
    if size > 1:
        assert not merkle.verify_inclusion((index + 1) % size, size, leaf, proof, root) or (
            entries[(index + 1) % size] == entries[index]
            and ref_path((index + 1) % size, entries[:size]) == proof
        )
        assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, leaf, [*proof, b"\x00" * 32], root)

    old = data.draw(st.integers(0, size))
    cproof = tree.consistency_proof(old, size)
    if 0 < old < size:
        assert cproof == ref_subproof(old, entries[:size], True)
    assert merkle.verify_consistency(old, size, ref_mth(entries[:old]), root, cproof)
    if 0 < old < size:
        assert not merkle.verify_consistency(old, size, ref_mth([*entries[:old], b"?"])[:32], root, cproof)
        assert not merkle.verify_consistency(old, size, ref_mth(entries[:old]), root, cproof[:-1])


def test_fork_fails_consistency() -> None:
    a = [bytes([i]) for i in range(10)]
    fork = a[:5] + [b"forged" + bytes([i]) for i in range(7)]
    old, new = tree_of(a), tree_of(fork)
    proof = new.consistency_proof(10, 12)
    assert not merkle.verify_consistency(10, 12, old.root(10), new.root(12), proof)


def test_out_of_range() -> None:
    tree = tree_of(LEAVES)
    for call, code in (
        (lambda: tree.root(9), "bad_tree_size"),
        (lambda: tree.inclusion_proof(8, 8), "bad_leaf_index"),
        (lambda: tree.consistency_proof(5, 4), "bad_tree_size"),
        (lambda: tree.consistency_proof(0, 9), "bad_tree_size"),
        (lambda: tree.consistency_proof(-1, 3), "bad_tree_size"),
    ):
        with pytest.raises(AuditError) as exc:
            call()
        assert exc.value.code == code and exc.value.detail


def test_append_is_logarithmic_for_100k() -> None:
    import time

    tree = merkle.MerkleTree()
    start = time.perf_counter()
    for i in range(100_000):
        tree.append(hashlib.sha256(i.to_bytes(4, "big")).digest())
    elapsed = time.perf_counter() - start
    root = tree.root()
    proof = tree.inclusion_proof(54_321, 100_000)
    assert len(proof) == 17
    assert merkle.verify_inclusion(54_321, 100_000, tree.leaf(54_321), proof, root)
    assert elapsed < 5.0


# Both RFC 9162 verifiers — the hub's (merkle.py) and the stand-alone copy the owner runs
# (audit_verify.py) — on every proof of every tree up to 17 leaves, against the reference above, and
# against every way to spoil a proof: a changed node, a node dropped or added, a wrong index, size,
# leaf or root. Deterministic, so it decides each mutant the same way every time (docs/MUTATION.md).
VERIFIERS = {"merkle": merkle, "audit_verify": audit_verify}
SMALL = [bytes([i]) * (i % 3 + 1) for i in range(17)]
ZERO = b"\x00" * 32


def _spoiled(proof: list[bytes]) -> list[list[bytes]]:
    out = [proof[:-1], [*proof, ZERO], [ZERO, *proof]] if proof else [[ZERO]]
    for i in range(len(proof)):
        flipped = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        out += [[*proof[:i], flipped, *proof[i + 1 :]], [*proof[:i], *proof[i + 1 :]]]
    out.append([*proof[:1], b"\x01" * 31] if proof else [b"\x01" * 31])  # a node of the wrong length
    return out


@pytest.mark.parametrize("impl", list(VERIFIERS))
def test_every_inclusion_proof_of_small_trees(impl: str) -> None:
    verify = VERIFIERS[impl].verify_inclusion
    for size in range(1, len(SMALL) + 1):
        root = ref_mth(SMALL[:size])
        for index in range(size):
            leaf = merkle.leaf_hash(SMALL[index])
            proof = ref_path(index, SMALL[:size])
            assert verify(index, size, leaf, proof, root), (size, index)
            for bad in _spoiled(proof):
                assert not verify(index, size, leaf, bad, root), (size, index, bad)
            assert not verify(index, size, merkle.leaf_hash(SMALL[index] + b"x"), proof, root)
            assert not verify(index, size, leaf, proof, ref_mth(SMALL[: size - 1]) if size > 1 else ZERO)
            for other in {index - 1, index + 1, size, -1} - {index}:
                same = (
                    0 <= other < size
                    and ref_path(other, SMALL[:size]) == proof
                    and SMALL[other] == SMALL[index]
                )
                assert same or not verify(other, size, leaf, proof, root), (size, index, other)
            for other_size in (0, index, -1):  # an index outside the claimed tree
                assert not verify(index, other_size, leaf, proof, root), (size, index, other_size)


@pytest.mark.parametrize("impl", list(VERIFIERS))
def test_every_consistency_proof_of_small_trees(impl: str) -> None:
    verify = VERIFIERS[impl].verify_consistency
    for new in range(0, len(SMALL) + 1):
        new_root = ref_mth(SMALL[:new])
        for old in range(0, new + 1):
            old_root = ref_mth(SMALL[:old])
            proof = ref_subproof(old, SMALL[:new], True) if 0 < old < new else []
            assert verify(old, new, old_root, new_root, proof), (old, new)
            # RFC 9162 §2.1.4.2: equal sizes need an empty proof and equal roots; size 0 an empty proof.
            if old == new or old == 0:
                assert not verify(old, new, old_root, new_root, [ZERO]), (old, new)
            if old == new:
                assert not verify(old, new, old_root, ZERO, []), (old, new)
            else:
                for bad in _spoiled(proof):
                    assert not verify(old, new, old_root, new_root, bad), (old, new, bad)
                if old > 0:
                    assert not verify(old, new, ZERO, new_root, proof), (old, new)
                    assert not verify(old, new, old_root, ZERO, proof), (old, new)
                    assert not verify(new, old, new_root, old_root, proof), (old, new)
            assert not verify(old, new, old_root, new_root, [b"\x01" * 31]), (old, new)
            if new + 1 <= len(SMALL) and 0 < old < new:
                assert not verify(old, new + 1, old_root, ref_mth(SMALL[: new + 1]), proof) or proof == (
                    ref_subproof(old, SMALL[: new + 1], True)
                ), (old, new)


def test_stand_alone_tree_roots_match_the_reference() -> None:
    leaves = [merkle.leaf_hash(e) for e in SMALL]
    tree = audit_verify.Tree(leaves)
    for size in range(len(SMALL) + 1):
        assert tree.root(size) == ref_mth(SMALL[:size]) == merkle.MerkleTree(leaves).root(size)
    assert audit_verify.leaf_hash(b"x") == merkle.leaf_hash(b"x")
    assert audit_verify.node_hash(b"a", b"b") == merkle.node_hash(b"a", b"b")


def test_the_frontier_is_the_perfect_nodes_the_size_decomposes_into() -> None:
    """RFC 9162 §2.1.1: D[0:n] splits into perfect subtrees, one per set bit of n, largest first.
    The audit log keeps only these in memory (`Frontier`); each must be the right subtree's hash at
    the right (level, index), and the nodes `extend` completes are the perfect nodes of the tree."""
    for size in range(len(SMALL) + 1):
        frontier = merkle.Frontier()
        completed = frontier.extend(merkle.leaf_hash(e) for e in SMALL[:size])
        expected, start = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                expected.append((level, start >> level, ref_mth(SMALL[start : start + (1 << level)])))
                start += 1 << level
        assert frontier.nodes() == expected, size
        assert frontier.size == size and frontier.root() == ref_mth(SMALL[:size]), size
        perfect = {
            (level, index, ref_mth(SMALL[index << level : (index + 1) << level]))
            for level in range(1, size.bit_length())
            for index in range(size >> level)
        }
        assert sorted(completed) == sorted(perfect), size


def test_append_returns_the_index_and_leaves_must_be_hashes() -> None:
    tree = merkle.MerkleTree()
    assert [tree.append(merkle.leaf_hash(bytes([i]))) for i in range(5)] == [0, 1, 2, 3, 4]
    frontier = merkle.Frontier()
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match=r"^leaf hash must be 32 bytes$"):
            tree.append(bad)
        with pytest.raises(ValueError, match=r"^leaf hash must be 32 bytes$"):
            frontier.extend([bad])
    assert tree.size == 5 and frontier.size == 0
