"""The audit log (PROTOCOL §5): append-only, RFC 9162 Merkle tree, C2SP signed checkpoints.

Each entry is one RFC 8785 canonical JSON object `{"seq","time","type","actor","data"}`; its bytes
are stored exactly as hashed and are leaf `seq` (0-based, so seq is the RFC 9162 leaf index) of
the tree. Checkpoints are C2SP tlog-checkpoints signed by the hub key (see `checkpoint.py`).

`data` may hold objects, arrays, strings, integers, booleans and null but no floats: RFC 8785 number
formatting (ECMAScript) is the one part of canonical JSON the stdlib does not reproduce, and the
stand-alone verifier (`audit_verify.py`) checks canonical form with the stdlib only.

Memory proportional to the tree's height, not its size (issue 17: the whole tree in memory grew
~6.4 MB per 100k entries). In memory only the tree's right edge (`merkle.Frontier`, one hash per set
bit of the size); the interior nodes are rows of `audit_nodes`, written as appends complete them and
read back for proofs and old roots (O(log n) indexed lookups on the store's read connection, on the
calling thread). At open one streaming pass over the stored leaf hashes rebuilds the edge, fills in any
node rows that are missing (the first start after the migration, or entries `camhub owner reset`
appended from another process) and checks the last checkpoint. The nodes of an append are stored
before the tree's size moves past them, so any proof of a size the log has reached finds its nodes.
One asyncio lock orders appends so the tree's leaf order is the database's seq order.

Export layout (read by `camhub audit verify DIR`):
    entries.jsonl      one entry per line: the exact stored bytes, then "\\n"
    leaf-hashes.txt    hex RFC 9162 leaf hash per line (lets the verifier name the exact bad seq)
    checkpoints/<size>.note   every stored signed checkpoint
    hub.jwk            the hub's public key (informational; verify with a key you hold)
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785

from camhub_protocol import merkle
from camhub_protocol.checkpoint import origin_for, parse_checkpoint, sign_checkpoint
from camhub_protocol.errors import AuditError
from camhub_protocol.keys import HubKey
from camhub_protocol.merkle import Frontier, leaf_hash
from hub.store import Store
from hub.store import audit as q

#: PROTOCOL §5 "Entry types at least"; other dotted lowercase types are allowed too.
ENTRY_TYPES = frozenset(
    {
        "request.received",
        "request.rejected",
        "decision.accepted",
        "decision.rejected",
        "egress.delivery",
        "egress.live.start",
        "egress.live.end",
        "key.enrolled",
        "key.revoked",
        "agency.added",
        "agency.removed",
        "retention.deleted",
        "owner.login",
        "owner.login_failed",
        "hub.started",
        "clock.unsynced",
    }
)
_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
MAX_ENTRY_BYTES = 64 * 1024
MAX_SAFE_INT = 2**53 - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles


def rfc3339_now() -> str:
    """UTC with millisecond precision and a `Z` suffix (PROTOCOL: RFC 3339 UTC times)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_data(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise AuditError("audit_bad_entry", "data nested too deeply")
    if isinstance(value, float):
        raise AuditError("audit_bad_entry", "floats are not allowed in audit data (see module doc)")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError("audit_bad_entry", "object keys must be strings")
            _check_data(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_data(v, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT:
        raise AuditError("audit_bad_entry", "integers beyond 2**53 - 1 have no exact RFC 8785 form")
    elif not (value is None or isinstance(value, str | bool | int)):
        raise AuditError("audit_bad_entry", f"{type(value).__name__} is not JSON")


def canonical_entry(seq: int, time: str, type_: str, actor: str, data: dict[str, Any]) -> bytes:
    """The RFC 8785 bytes of one entry (PROTOCOL §5)."""
    if not _TYPE.fullmatch(type_):
        raise AuditError("audit_bad_entry", f"entry type {type_!r} is not dotted lowercase")
    if not isinstance(actor, str) or not actor:
        raise AuditError("audit_bad_entry", "actor must be a non-empty string")
    if not isinstance(data, dict):
        raise AuditError("audit_bad_entry", "data must be an object")
    _check_data(data)
    try:
        entry = rfc8785.dumps({"seq": seq, "time": time, "type": type_, "actor": actor, "data": data})
    except rfc8785.CanonicalizationError as exc:  # e.g. lone surrogates in a string
        raise AuditError("audit_bad_entry", f"entry cannot be canonicalised: {exc}") from exc
    if len(entry) > MAX_ENTRY_BYTES:
        raise AuditError("audit_bad_entry", "entry too large")
    return entry


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class AuditLog:
    """The hub's audit log over the store; create with `await AuditLog.open(store, hub_key)`."""

    def __init__(
        self, store: Store, hub_key: HubKey, tree: Frontier, clock: Callable[[], str] = rfc3339_now
    ) -> None:
        self._store = store
        self._key = hub_key
        self._tree = tree
        self._clock = clock
        self._lock = asyncio.Lock()
        self.origin = origin_for(hub_key.hub_id)

    @classmethod
    async def open(cls, store: Store, hub_key: HubKey, clock: Callable[[], str] = rfc3339_now) -> AuditLog:
        """Rebuild the right edge from the stored leaf hashes (one streaming pass), store missing
        nodes, and check the tree against the last checkpoint."""
        latest = await store.run(q.latest_checkpoint)
        check = (
            None
            if latest is None
            else parse_checkpoint(latest[1], hub_key.public_key, origin_for(hub_key.hub_id))
        )
        tree, root_at_check = await store.run(_rebuild, None if check is None else check.size)
        log = cls(store, hub_key, tree, clock)
        if check is not None and (check.size > tree.size or root_at_check != check.root):
            raise AuditError(
                "audit_inconsistent",
                f"stored log does not match its checkpoint at size {check.size}",
                status=500,
            )
        return log

    @property
    def size(self) -> int:
        return self._tree.size

    async def append(self, type_: str, actor: str, data: dict[str, Any]) -> tuple[int, bytes]:
        """Append one entry; returns (seq, entry_hash) where entry_hash is its RFC 9162 leaf hash."""
        time = self._clock()

        def make(seq: int) -> tuple[bytes, bytes]:
            entry = canonical_entry(seq, time, type_, actor, data)
            return entry, leaf_hash(entry)

        async with self._lock:
            seq, _, leaf, missed = await self._store.run(q.append_entry, make, self._tree.size)
            # Entries another process appended meanwhile (`camhub owner reset` on the box) join the
            # tree first, in seq order, so the tree stays the database's log.
            if seq != self._tree.size + len(missed):
                raise AuditError(
                    "audit_inconsistent",
                    f"store gave seq {seq}, tree has {self._tree.size + len(missed)}",
                    500,
                )
            grown = self._tree.copy()
            nodes = grown.extend([*missed, leaf])
            # Nodes first: a reader that sees the new size must find every node of it.
            await self._store.run(q.store_nodes, nodes)
            self._tree = grown
        return seq, leaf

    def _perfect(self, level: int, index: int) -> bytes:
        found = self._store.read_here(q.perfect_node, level, index)
        if found is None:
            raise AuditError("audit_inconsistent", f"audit node ({level}, {index}) is not stored", 500)
        return found

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._tree.size:
            raise AuditError("bad_tree_size", f"tree size {size} outside 0..{self._tree.size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (RFC 9162 §2.1.1); the current size (from memory) by default."""
        tree = self._tree
        size = tree.size if size is None else size
        self._check_size(size)
        if size == tree.size:
            return tree.root()
        return merkle.EMPTY_ROOT if size == 0 else merkle.subtree_hash(self._perfect, 0, size)

    async def checkpoint(self) -> str:
        """Sign a checkpoint of the current tree, store it and return the signed note."""
        async with self._lock:
            size = self._tree.size
            note = sign_checkpoint(self.origin, size, self._tree.root(), self._key.private_key)
            await self._store.run(q.store_checkpoint, size, note)
        stored = await self._store.run(q.checkpoint_at_least, size)
        if stored is None or stored[0] != size:
            raise AuditError("audit_inconsistent", f"checkpoint for size {size} was not stored", 500)
        return stored[1]

    async def latest_checkpoint(self) -> str | None:
        latest = await self._store.run(q.latest_checkpoint)
        return None if latest is None else latest[1]

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 audit path for entry `seq` in the tree of `size` entries."""
        self._check_size(size)
        if not 0 <= seq < size:
            raise AuditError("bad_leaf_index", f"leaf {seq} is not in a tree of size {size}")
        return merkle.inclusion_path(self._perfect, seq, 0, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that the tree of `new_size` extends the one of `old_size`."""
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise AuditError("bad_tree_size", f"cannot prove {old_size} -> {new_size}")
        if old_size in (0, new_size):
            return []
        return merkle.consistency_path(self._perfect, old_size, 0, new_size)

    async def entry(self, seq: int) -> bytes:
        data = await self._store.run(q.read_entry, seq)
        if data is None:
            raise AuditError("audit_no_entry", f"no entry {seq}", status=404)
        return data

    async def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return await self._store.run(q.read_entries, start, end)

    async def proof_bundle(self, seq: int) -> dict[str, Any]:
        """`audit-proof.json` (PROTOCOL §2.3): the entry, its inclusion proof and the signed checkpoint.

        Uses the first stored checkpoint that covers `seq`, signing a fresh one if none does.
        """
        entry = await self.entry(seq)
        stored = await self._store.run(q.checkpoint_at_least, seq + 1)
        note = stored[1] if stored is not None else await self.checkpoint()
        cp = parse_checkpoint(note, self._key.public_key, self.origin)
        return {
            "v": 1,
            "hub_id": self._key.hub_id,
            "seq": seq,
            "entry": entry.decode("utf-8"),
            "entry_hash": leaf_hash(entry).hex(),
            "tree_size": cp.size,
            "inclusion_proof": [_b64(h) for h in self.inclusion_proof(seq, cp.size)],
            "checkpoint": note,
        }

    async def export(self, directory: Path, batch: int = 5000) -> int:
        """Write the export layout (module doc) into `directory`; returns the number of entries."""
        size = self._tree.size
        checkpoints = await self._store.run(q.all_checkpoints)
        entries_path = directory / "entries.jsonl"
        leaves_path = directory / "leaf-hashes.txt"

        def start_files() -> None:
            (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
            entries_path.write_bytes(b"")
            leaves_path.write_bytes(b"")

        await asyncio.to_thread(start_files)
        for start in range(0, size, batch):
            rows = await self._store.run(q.read_leaves, start, min(size, start + batch))

            def write(rows: list[tuple[int, bytes, bytes]] = rows) -> None:
                with entries_path.open("ab") as f:
                    for _, entry, _ in rows:
                        f.write(entry + b"\n")
                with leaves_path.open("a") as f:
                    f.write("".join(bytes(h).hex() + "\n" for _, _, h in rows))

            await asyncio.to_thread(write)

        def write_rest() -> None:
            for tree_size, note in checkpoints:
                if tree_size <= size:
                    (directory / "checkpoints" / f"{tree_size}.note").write_text(note, encoding="utf-8")
            (directory / "hub.jwk").write_text(json.dumps(self._key.public_jwk) + "\n")

        await asyncio.to_thread(write_rest)
        return size


def _rebuild(conn: Any, check_size: int | None) -> tuple[Frontier, bytes | None]:
    """(the tree's right edge, its root at `check_size`) from one pass over the stored leaf hashes; any
    interior node the pass completes that is not stored yet is stored. Runs in the database thread."""
    tree = Frontier()
    root_at_check = merkle.EMPTY_ROOT if check_size == 0 else None
    size = q.entry_count(conn)
    complete = q.node_count(conn) == size - size.bit_count()  # n leaves have n - popcount(n) nodes
    pending: list[merkle.Node] = []
    for leaf in q.iter_leaf_hashes(conn):
        nodes = tree.extend([leaf])
        if not complete:
            pending.extend(nodes)
            if len(pending) >= 10_000:
                q.store_nodes(conn, pending)
                pending = []
        if tree.size == check_size:
            root_at_check = tree.root()
    q.store_nodes(conn, pending)
    return tree, root_at_check
