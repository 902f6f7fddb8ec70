"""The audit log over the real store, its export, and the stand-alone verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import audit_verify, merkle
from camhub_protocol import checkpoint as checkpoint_mod
from camhub_protocol.checkpoint import parse_checkpoint
from camhub_protocol.errors import AuditError
from camhub_protocol.keys import HubKey, jwk_thumbprint, jwk_thumbprint_any, okp_public_jwk
from hub.consent.audit import AuditLog, canonical_entry
from hub.store import Store
from tests.consent.softauthn import SoftPasskey

VERIFY_PY = Path(__file__).resolve().parents[2] / "camhub_protocol" / "audit_verify.py"


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


async def filled(store: Store, key: HubKey, n: int, checkpoint_every: int = 4) -> AuditLog:
    log = await AuditLog.open(store, key)
    for i in range(n):
        await log.append("request.received", f"agency:{i % 3}", {"i": i, "note": "päckage ✓", "ok": True})
        if (i + 1) % checkpoint_every == 0:
            await log.checkpoint()
    return log


def run_verify(*args: str) -> tuple[int, str]:
    """Run the verifier as its own file in a fresh interpreter that never imports `hub`."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('audit_verify', {str(VERIFY_PY)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "rc = mod.main(sys.argv[1:])\n"
        "assert not any(m == 'hub' or m.startswith('hub.') for m in sys.modules), 'hub was imported'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, *args], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert "hub was imported" not in proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def test_entry_is_rfc8785_canonical() -> None:
    entry = canonical_entry(7, "2026-11-20T18:00:00Z", "decision.accepted", "owner:k1", {"b": 1, "a": "x"})
    assert entry == (
        b'{"actor":"owner:k1","data":{"a":"x","b":1},"seq":7,"time":"2026-11-20T18:00:00Z",'
        b'"type":"decision.accepted"}'
    )
    assert entry == rfc8785.dumps(json.loads(entry))


@pytest.mark.parametrize(
    ("type_", "actor", "data"),
    [
        ("Bad Type", "a", {}),
        ("x.y", "", {}),
        ("x.y", "a", {"f": 1.5}),
        ("x.y", "a", []),
        ("x.y", "a", {"s": {1}}),
        ("x.y", "a", {"n": 2**53}),
        ("x.y", "a", {"s": "\ud800"}),
    ],
)
def test_bad_entries_refused(type_: str, actor: str, data: object) -> None:
    with pytest.raises(AuditError) as exc:
        canonical_entry(0, "t", type_, actor, data)  # type: ignore[arg-type]
    assert exc.value.code == "audit_bad_entry"


async def test_append_proofs_and_checkpoint(store: Store, hub_key: HubKey) -> None:
    log = await filled(store, hub_key, 13)
    assert log.size == 13
    entries = [e for _, e in await log.entries(0, 13)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    for seq, entry in enumerate(entries):
        assert json.loads(entry)["seq"] == seq
    note = await log.checkpoint()
    cp = parse_checkpoint(note, hub_key.public_key, f"camhub/{hub_key.hub_id}")
    assert cp.size == 13 and cp.root == merkle.MerkleTree(leaves).root()
    for seq in range(13):
        proof = log.inclusion_proof(seq, 13)
        assert merkle.verify_inclusion(seq, 13, leaves[seq], proof, cp.root)
    for old in range(14):
        assert merkle.verify_consistency(old, 13, log.root(old), cp.root, log.consistency_proof(old, 13))


async def test_reopen_rebuilds_tree_and_detects_tampering(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    log = await filled(store, hub_key, 9)
    root = log.root()
    await log.checkpoint()
    reopened = await AuditLog.open(store, hub_key)
    assert reopened.root() == root
    seq, _ = await reopened.append("hub.started", "hub", {})
    assert seq == 9

    def tamper(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TRIGGER audit_entries_no_update")
        conn.execute("UPDATE audit_entries SET leaf_hash = zeroblob(32) WHERE seq = 3")

    await store.run(tamper)
    with pytest.raises(AuditError) as exc:
        await AuditLog.open(store, hub_key)
    assert exc.value.code == "audit_inconsistent"


async def test_entries_are_append_only_in_the_database(store: Store, hub_key: HubKey) -> None:
    await filled(store, hub_key, 2)
    for sql in ("UPDATE audit_entries SET entry = x'00' WHERE seq = 0", "DELETE FROM audit_entries"):
        with pytest.raises(sqlite3.IntegrityError):
            await store.run(lambda conn, sql=sql: conn.execute(sql))


async def test_concurrent_appends_keep_tree_in_db_order(store: Store, hub_key: HubKey) -> None:
    import asyncio

    log = await AuditLog.open(store, hub_key)
    await asyncio.gather(*(log.append("owner.login", f"o{i}", {"i": i}) for i in range(40)))
    stored = [merkle.leaf_hash(e) for _, e in await log.entries(0, 40)]
    assert merkle.MerkleTree(stored).root() == log.root()


async def export_dir(tmp_path: Path, store: Store, hub_key: HubKey, n: int = 12) -> tuple[Path, AuditLog]:
    log = await filled(store, hub_key, n)
    await log.checkpoint()
    out = tmp_path / "export"
    assert await log.export(out) == n
    return out, log


async def test_export_verifies(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 0, text
    assert "ok" in text


async def test_flipped_byte_names_the_seq(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    lines = (out / "entries.jsonl").read_bytes().split(b"\n")
    # A flip that keeps the line valid canonical JSON (only the signed roots can catch it) ...
    lines[6] = lines[6].replace(b"agency:0", b"agency:1")
    (out / "entries.jsonl").write_bytes(b"\n".join(lines))
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and "first bad seq: 6" in text, text


@pytest.mark.parametrize("offset", [0, 5, 17, 40, -2, -1])
async def test_any_flipped_byte_names_the_seq(
    tmp_path: Path, store: Store, hub_key: HubKey, offset: int
) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    data = bytearray((out / "entries.jsonl").read_bytes())
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == 10][:-1]]
    pos = starts[9] + (offset % (starts[10] - starts[9]))
    data[pos] ^= 0x01
    (out / "entries.jsonl").write_bytes(bytes(data))
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and "first bad seq: 9" in text, text


async def test_rewritten_hash_list_still_fails_with_range(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    lines = (out / "entries.jsonl").read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b"agency:0", b"agency:2")
    (out / "entries.jsonl").write_bytes(b"\n".join(lines))
    (out / "leaf-hashes.txt").write_text("".join(merkle.leaf_hash(x).hex() + "\n" for x in lines[:-1]))
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    # The hash list no longer matches what was signed, so only the checkpoint interval can be named.
    assert rc == 1 and "first bad seq: in 4..7" in text, text


async def test_truncation_detected(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    lines = (out / "entries.jsonl").read_bytes().split(b"\n")
    (out / "entries.jsonl").write_bytes(b"\n".join(lines[:7]) + b"\n")
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and "first bad seq: 7" in text and "truncated" in text, text


async def test_checkpoint_from_before_truncation_fails_consistency(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    """A forked log (truncated at 5, then rewritten and re-signed) fails against an old checkpoint."""
    old = await filled(store, hub_key, 10)
    old_note = await old.checkpoint()
    saved = tmp_path / "seen.note"
    saved.write_text(old_note)

    forked_store = await Store.open(tmp_path / "fork.db")
    try:
        fork = await AuditLog.open(forked_store, hub_key)
        for _, entry in await old.entries(0, 5):
            obj = json.loads(entry)
            await fork.append(obj["type"], obj["actor"], obj["data"])
        for i in range(7):
            await fork.append("retention.deleted", "hub", {"i": i})
        await fork.checkpoint()
        proof = fork.consistency_proof(10, 12)
        cp = parse_checkpoint(old_note, hub_key.public_key, old.origin)
        assert not merkle.verify_consistency(10, 12, cp.root, fork.root(12), proof)
        assert not audit_verify.verify_consistency(10, 12, cp.root, fork.root(12), proof)
        # The honest log still proves consistency with the old checkpoint.
        await old.append("hub.started", "hub", {})
        assert audit_verify.verify_consistency(10, 11, cp.root, old.root(11), old.consistency_proof(10, 11))
        out = tmp_path / "fork-export"
        await fork.export(out)
    finally:
        await forked_store.close()
    jwk = json.dumps(hub_key.public_jwk)
    assert run_verify(str(out), "--hub-key", jwk)[0] == 0  # self-consistent on its own ...
    rc, text = run_verify(str(out), "--hub-key", jwk, "--checkpoint", str(saved))
    assert rc == 1 and "does not match" in text, text  # ... but not with what the owner saw


async def test_wrong_hub_key_fails(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    (tmp_path / "k2").mkdir()
    other = HubKey.load_or_create(tmp_path / "k2")[0]
    rc, text = run_verify(str(out), "--hub-key", json.dumps(other.public_jwk))
    assert rc == 1 and "checkpoint" in text, text


async def test_forged_checkpoint_signature_fails(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    path = out / "checkpoints" / "12.note"
    path.write_text(path.read_text().replace("\n12\n", "\n11\n"))
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and "does not verify" in text, text


async def test_audit_proof_bundle_verifies_without_hub(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    log = await filled(store, hub_key, 6)
    seq, entry_hash = await log.append("egress.delivery", "agency:x", {"request_id": "r1"})
    await log.checkpoint()
    bundle = await log.proof_bundle(seq)
    assert bundle["entry_hash"] == entry_hash.hex()
    path = tmp_path / "audit-proof.json"
    path.write_text(json.dumps(bundle))
    jwk_file = tmp_path / "hub.jwk"
    jwk_file.write_text(json.dumps(hub_key.public_jwk))
    rc, text = run_verify(str(path), "--hub-key", str(jwk_file))
    assert rc == 0 and "egress.delivery" in text, text

    bad = dict(
        bundle, inclusion_proof=[base64.b64encode(b"\x00" * 32).decode(), *bundle["inclusion_proof"][1:]]
    )
    path.write_text(json.dumps(bad))
    rc, text = run_verify(str(path), "--hub-key", str(jwk_file))
    assert rc == 1 and f"first bad seq: {seq}" in text, text
    bad = dict(bundle, entry=bundle["entry"].replace("r1", "r2"))
    path.write_text(json.dumps(bad))
    assert run_verify(str(path), "--hub-key", str(jwk_file))[0] == 1


async def test_proof_bundle_signs_a_checkpoint_when_none_covers(store: Store, hub_key: HubKey) -> None:
    log = await AuditLog.open(store, hub_key)
    seq, _ = await log.append("egress.delivery", "agency:x", {})
    bundle = await log.proof_bundle(seq)
    assert bundle["tree_size"] == 1
    assert audit_verify.verify_proof_bundle(bundle, hub_key.public_jwk)["seq"] == 0


def test_verifier_canonical_check_matches_rfc8785() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=12,
    )

    @settings(max_examples=300, deadline=None)
    @given(json_values)
    def check(value: object) -> None:
        assert audit_verify._canon(value).encode("utf-8") == rfc8785.dumps(value)

    check()


async def test_fuzzed_proof_bundles_only_fail_cleanly(store: Store, hub_key: HubKey) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    log = await filled(store, hub_key, 5)
    bundle = await log.proof_bundle(3)
    jwk = hub_key.public_jwk
    values = st.one_of(
        st.none(), st.integers(-3, 20), st.text(max_size=20), st.lists(st.text(max_size=8), max_size=3)
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(sorted(bundle)), values)
    def check(field: str, value: object) -> None:
        mutated = dict(bundle, **{field: value})
        try:
            audit_verify.verify_proof_bundle(mutated, jwk)
        except audit_verify.VerifyError:
            return
        assert mutated[field] == bundle[field]  # only an unchanged bundle may verify

    check()
    with pytest.raises(audit_verify.VerifyError):
        audit_verify.verify_proof_bundle([], jwk)  # type: ignore[arg-type]


# --- forgeries by someone who can rewrite the export but not sign (THREAT_MODEL "Tampering") ---------
#
# Each forgery below is made *consistent* the way an attacker without the hub key would make it: the
# entries rewritten with correct seq fields, leaf-hashes.txt recomputed, and every checkpoint's size and
# root line replaced by the forged tree's, keeping the old signature lines. Only the signatures (or a
# checkpoint kept elsewhere) can then tell. `_forgery_is_self_consistent` checks the attacker's work, so
# a refusal must come from a signature; the honest export verifying is the control.


def _lines(out: Path) -> list[bytes]:
    return (out / "entries.jsonl").read_bytes().split(b"\n")[:-1]


def _renumbered(lines: list[bytes]) -> list[bytes]:
    """Entries with their seq fields rewritten to their line numbers, still RFC 8785 canonical."""
    return [
        audit_verify._canon({**json.loads(line), "seq": seq}).encode("utf-8")
        for seq, line in enumerate(lines)
    ]


def _reroot(out: Path, lines: list[bytes]) -> None:
    """Write `lines` as the log, recompute the hash list, and point each checkpoint the log still
    reaches at the forged tree (same origin, same signature lines); drop the ones past its end."""
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    leaves = [audit_verify.leaf_hash(line) for line in lines]
    (out / "leaf-hashes.txt").write_text("".join(h.hex() + "\n" for h in leaves))
    tree = audit_verify.Tree(leaves)
    for note_path in (out / "checkpoints").glob("*.note"):
        body, sep, signatures = note_path.read_text(encoding="utf-8").partition("\n\n")
        origin, size, *rest = body.split("\n")
        if int(size) > len(lines):
            note_path.unlink()
            continue
        root = base64.b64encode(tree.root(int(size))).decode()
        note_path.write_text("\n".join([origin, size, root, *rest[1:]]) + sep + signatures, encoding="utf-8")


def _forgery_is_self_consistent(out: Path) -> None:
    """What the attacker controls adds up: every line canonical with its seq, hash list and every
    checkpoint root match the entries. Only a signature can still refuse it."""
    lines = _lines(out)
    for seq, line in enumerate(lines):
        audit_verify.check_entry(line, seq)
    leaves = [audit_verify.leaf_hash(line) for line in lines]
    assert (out / "leaf-hashes.txt").read_text().split() == [h.hex() for h in leaves]
    tree = audit_verify.Tree(leaves)
    notes = list((out / "checkpoints").glob("*.note"))
    assert notes
    for note_path in notes:
        _, size, root = note_path.read_text(encoding="utf-8").split("\n")[:3]
        assert base64.b64decode(root) == tree.root(int(size)), note_path.name


def _verify(out: Path, hub_key: HubKey, *checkpoints: str) -> audit_verify.VerifyError | None:
    try:
        audit_verify.verify_export(out, hub_key.public_jwk, checkpoints)
    except audit_verify.VerifyError as exc:
        return exc
    return None


async def test_rewritten_entry_rerooted_under_the_old_signatures_fails(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    assert _verify(out, hub_key) is None  # the honest export verifies
    lines = _lines(out)
    lines[6] = lines[6].replace(b"agency:0", b"agency:2")
    _reroot(out, lines)
    _forgery_is_self_consistent(out)
    failure = _verify(out, hub_key)
    assert failure is not None and failure.seq is None  # no entry is wrong by itself: a checkpoint is
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1, text


async def test_dropped_entry_fails(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    out2 = tmp_path / "copy"
    shutil.copytree(out, out2)
    original = _lines(out)
    dropped = original[:5] + original[6:]
    # Dropped as is: line 5 carries seq 6.
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in dropped))
    failure = _verify(out, hub_key)
    assert failure is not None and failure.seq == 5, failure
    # Renumbered, hashes recomputed, checkpoints re-rooted: the signatures refuse it.
    _reroot(out, _renumbered(dropped))
    _forgery_is_self_consistent(out)
    assert _verify(out, hub_key) is not None
    # Renumbered but the signed checkpoints left alone: named within the first checkpoint it breaks.
    (out2 / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in _renumbered(dropped)))
    failure = _verify(out2, hub_key)
    assert failure is not None and failure.seq == 5, failure


async def test_reordered_pair_fails(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    original = _lines(out)
    swapped = [*original[:5], original[6], original[5], *original[7:]]
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in swapped))
    failure = _verify(out, hub_key)
    assert failure is not None and failure.seq == 5, failure
    # Renumbered so every seq fits its line: the signed roots (and the signed hash list) name seq 5.
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in _renumbered(swapped)))
    failure = _verify(out, hub_key)
    assert failure is not None and failure.seq == 5, failure
    # And re-rooted under the old signatures: refused by the signatures.
    _reroot(out, _renumbered(swapped))
    _forgery_is_self_consistent(out)
    assert _verify(out, hub_key) is not None


async def test_truncated_log_with_its_later_checkpoints_removed(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    """Cut to 7 entries and the checkpoints past them deleted: the remaining ones still verify, so the
    export alone looks fine (THREAT_MODEL: caught only against a checkpoint kept elsewhere); with the
    owner's last-seen checkpoint it fails and names the first missing seq."""
    out, _ = await export_dir(tmp_path, store, hub_key)
    seen = tmp_path / "seen.note"
    seen.write_text((out / "checkpoints" / "12.note").read_text())
    _reroot(out, _lines(out)[:7])
    assert sorted(p.name for p in (out / "checkpoints").glob("*.note")) == ["4.note"]
    assert _verify(out, hub_key) is None
    failure = _verify(out, hub_key, seen.read_text())
    assert failure is not None and failure.seq == 7, failure
    rc, text = run_verify(str(out), "--hub-key", json.dumps(hub_key.public_jwk), "--checkpoint", str(seen))
    assert rc == 1 and "first bad seq: 7" in text, text


async def test_a_checkpoint_signed_by_another_key_is_refused(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    """A forged log re-signed with a key that is not the hub's: consistent, signed, refused."""
    (tmp_path / "k2").mkdir()
    other = HubKey.load_or_create(tmp_path / "k2")[0]
    out, _ = await export_dir(tmp_path, store, hub_key)
    forged_store = await Store.open(tmp_path / "forged.db")
    try:
        forged = await filled(forged_store, other, 12)
        await forged.checkpoint()
        await forged.export(tmp_path / "forged")
    finally:
        await forged_store.close()
    # The other key's notes carry the other hub's origin: renamed to this hub's, they do not verify.
    for note_path in (tmp_path / "forged" / "checkpoints").glob("*.note"):
        note = note_path.read_text().replace(f"camhub/{other.hub_id}", f"camhub/{hub_key.hub_id}")
        (out / "checkpoints" / note_path.name).write_text(note)
    (out / "entries.jsonl").write_bytes((tmp_path / "forged" / "entries.jsonl").read_bytes())
    (out / "leaf-hashes.txt").write_bytes((tmp_path / "forged" / "leaf-hashes.txt").read_bytes())
    assert _verify(out, hub_key) is not None
    assert _verify(tmp_path / "forged", other) is None  # the same log does verify with its own key


# --- the stand-alone verifier in this process: its CLI, each proof-bundle rule, export edge cases ----
# (run_verify above runs it as its own file in a fresh interpreter; these call it directly, so each
# answer is checked exactly and mutation testing sees which test reaches which line.)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    rc = audit_verify.main(list(args))
    return rc, capsys.readouterr().out.splitlines()


async def test_cli_in_process_reports_ok_warnings_and_the_first_bad_seq(
    tmp_path: Path, store: Store, hub_key: HubKey, capsys: pytest.CaptureFixture[str]
) -> None:
    out, log = await export_dir(tmp_path, store, hub_key)
    jwk_file = tmp_path / "hub.jwk"
    jwk_file.write_text(json.dumps(hub_key.public_jwk))
    assert _main(capsys, str(out), "--hub-key", str(jwk_file)) == (0, [f"ok: {out}"])
    assert _main(capsys, str(out), "--hub-key", json.dumps(hub_key.public_jwk)) == (0, [f"ok: {out}"])
    # Entries past the last checkpoint are reported, not failed.
    await log.append("hub.started", "hub", {})
    await log.append("hub.started", "hub", {})
    await log.export(out)
    rc, lines = _main(capsys, str(out), "--hub-key", str(jwk_file))
    assert (rc, lines) == (0, ["warning: entries 12..13 are not yet covered by a checkpoint", f"ok: {out}"])
    # A range when only a checkpoint interval can be named; one seq when the entry is known.
    lines_ = _lines(out)
    lines_[6] = lines_[6].replace(b"agency:0", b"agency:2")
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines_))
    leaves = [audit_verify.leaf_hash(line) for line in lines_]
    (out / "leaf-hashes.txt").write_text("".join(h.hex() + "\n" for h in leaves))
    rc, lines = _main(capsys, str(out), "--hub-key", str(jwk_file))
    assert rc == 1 and lines[0] == "first bad seq: in 4..7", lines
    assert lines[1].startswith("FAILED: checkpoint 8.note (size 8) does not match entries 4..7"), lines
    (out / "leaf-hashes.txt").unlink()
    rc, lines = _main(capsys, str(out), "--hub-key", str(jwk_file))
    assert rc == 1 and lines[0] == "first bad seq: in 4..7", lines
    # Unreadable input and a key that is not a public Ed25519 JWK are failures, not crashes.
    rc, lines = _main(capsys, str(tmp_path / "missing"), "--hub-key", str(jwk_file))
    assert rc == 1 and lines[0].startswith("FAILED: cannot read input"), lines
    for bad in (
        "[1]",
        json.dumps({**hub_key.public_jwk, "crv": "X25519"}),
        json.dumps({**hub_key.public_jwk, "d": "AA"}),
    ):
        rc, lines = _main(capsys, str(out), "--hub-key", bad)
        assert rc == 1 and lines[0].startswith("FAILED:") and "seq" not in lines[0], (bad, lines)


async def test_cli_in_process_checks_a_proof_bundle(
    tmp_path: Path, store: Store, hub_key: HubKey, capsys: pytest.CaptureFixture[str]
) -> None:
    log = await filled(store, hub_key, 6)
    seq, _ = await log.append("egress.delivery", "agency:x", {"request_id": "r1"})
    path = tmp_path / "audit-proof.json"
    path.write_text(json.dumps(await log.proof_bundle(seq)))
    rc, lines = _main(capsys, str(path), "--hub-key", json.dumps(hub_key.public_jwk))
    assert (rc, lines) == (0, [f"ok: entry {seq} (egress.delivery) is in the hub's signed log"])
    bundle = json.loads(path.read_text())
    path.write_text(json.dumps({**bundle, "entry_hash": "00" * 32}))
    rc, lines = _main(capsys, str(path), "--hub-key", json.dumps(hub_key.public_jwk))
    assert rc == 1 and lines[0] == f"first bad seq: {seq}", lines


async def test_every_proof_bundle_rule(store: Store, hub_key: HubKey, tmp_path: Path) -> None:
    log = await filled(store, hub_key, 9)
    seq = 5
    bundle = await log.proof_bundle(seq)
    jwk = hub_key.public_jwk
    obj = audit_verify.verify_proof_bundle(bundle, jwk)
    assert obj == json.loads(bundle["entry"]) and obj["seq"] == seq
    (tmp_path / "k2").mkdir()
    other = HubKey.load_or_create(tmp_path / "k2")[0]
    proof = bundle["inclusion_proof"]
    cases: list[tuple[str, dict[str, object], int | None]] = [
        ("version", {"v": 2}, None),
        ("no version", {"v": None}, None),
        ("another hub", {"hub_id": other.hub_id}, None),
        ("unsigned checkpoint", {"checkpoint": bundle["checkpoint"].split("\n\n")[0] + "\n"}, None),
        ("seq as text", {"seq": str(seq)}, None),
        ("seq as bool", {"seq": True}, None),
        ("no entry", {"entry": None}, seq),
        ("entry of another seq", {"seq": seq + 1}, seq + 1),
        ("entry hash", {"entry_hash": "00" * 32}, seq),
        ("tree size", {"tree_size": bundle["tree_size"] + 1}, seq),
        ("proof not base64", {"inclusion_proof": ["!!", *proof[1:]]}, seq),
        (
            "proof node with a stray character",
            {"inclusion_proof": [proof[0][:10] + "*" + proof[0][10:], *proof[1:]]},
            seq,
        ),
        (
            "proof node changed",
            {"inclusion_proof": [base64.b64encode(b"\x00" * 32).decode(), *proof[1:]]},
            seq,
        ),
        ("proof node dropped", {"inclusion_proof": proof[1:]}, seq),
        ("no proof", {"inclusion_proof": []}, seq),
    ]
    for case, change, bad_seq in cases:
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.verify_proof_bundle({**bundle, **change}, jwk)
        assert info.value.seq == bad_seq, (case, info.value, info.value.seq)
        assert str(info.value) not in ("", "None"), case
    with pytest.raises(audit_verify.VerifyError):
        audit_verify.verify_proof_bundle(bundle, other.public_jwk)
    # A bundle without a proof list at all is the empty proof: refused for a tree of more than one.
    without = {k: v for k, v in bundle.items() if k != "inclusion_proof"}
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_proof_bundle(without, jwk)
    assert info.value.seq == seq


async def test_export_edge_cases(tmp_path: Path, store: Store, hub_key: HubKey) -> None:
    out, log = await export_dir(tmp_path, store, hub_key)
    jwk = hub_key.public_jwk
    note = await log.checkpoint()
    # A lost final newline changes no entry: still good.
    data = (out / "entries.jsonl").read_bytes()
    (out / "entries.jsonl").write_bytes(data.rstrip(b"\n"))
    assert audit_verify.verify_export(out, jwk) == []
    (out / "entries.jsonl").write_bytes(data)
    # An unreadable hash list is ignored (it only helps to name the bad entry).
    (out / "leaf-hashes.txt").write_text("not hex\n")
    assert audit_verify.verify_export(out, jwk) == []
    # A checkpoint that is not a signed note names the file.
    (out / "checkpoints" / "3.note").write_text("camhub/x\n3\n")
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_export(out, jwk)
    assert str(info.value).startswith("checkpoint 3.note: ") and info.value.seq is None
    (out / "checkpoints" / "3.note").unlink()
    # No checkpoint at all: nothing authenticates the log.
    for path in (out / "checkpoints").glob("*.note"):
        path.unlink()
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_export(out, jwk)
    assert "no checkpoints" in str(info.value)
    # ... unless one kept elsewhere is given.
    assert audit_verify.verify_export(out, jwk, [note]) == []
    # An empty log against a checkpoint that covers entries: truncated at 0.
    (out / "entries.jsonl").write_bytes(b"")
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_export(out, jwk, [note])
    assert info.value.seq == 0 and "truncated" in str(info.value)


def test_load_hub_key_rules() -> None:
    key = Ed25519PrivateKey.generate()
    jwk = okp_public_jwk(key.public_key())
    public, hub_id = audit_verify.load_hub_key(jwk)
    assert hub_id == jwk_thumbprint(jwk)
    assert public.public_bytes_raw() == key.public_key().public_bytes_raw()
    for bad in (
        {**jwk, "kty": "EC"},
        {**jwk, "crv": "Ed448"},
        {**jwk, "x": 5},
        {**jwk, "d": jwk["x"]},
        {**jwk, "x": jwk["x"][:-2]},
        {**jwk, "x": jwk["x"] + "AAAA"},
        {k: v for k, v in jwk.items() if k != "x"},
    ):
        with pytest.raises((audit_verify.VerifyError, ValueError)):
            audit_verify.load_hub_key(bad)
    with pytest.raises(ValueError):
        audit_verify.load_hub_key({**jwk, "x": jwk["x"][:-1] + "+"})


async def test_cli_in_process_with_saved_checkpoints_and_its_arguments(
    tmp_path: Path, store: Store, hub_key: HubKey, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    jwk = json.dumps(hub_key.public_jwk)
    seen = [tmp_path / "seen-12.note", tmp_path / "seen-8.note"]
    seen[0].write_text((out / "checkpoints" / "12.note").read_text(encoding="utf-8"), encoding="utf-8")
    seen[1].write_text((out / "checkpoints" / "8.note").read_text(encoding="utf-8"), encoding="utf-8")
    # Saved checkpoints, given as files (repeatable), all consistent with the export: fine.
    assert (
        _main(capsys, str(out), "--hub-key", jwk, "--checkpoint", str(seen[0]), "--checkpoint", str(seen[1]))[
            0
        ]
        == 0
    )
    # The export truncated to 9 entries, its own later checkpoints gone: only the saved ones tell.
    _reroot(out, _lines(out)[:9])
    warning = "warning: entries 8..8 are not yet covered by a checkpoint"
    assert _main(capsys, str(out), "--hub-key", jwk) == (0, [warning, f"ok: {out}"])
    rc, lines = _main(
        capsys, str(out), "--hub-key", jwk, "--checkpoint", str(seen[1]), "--checkpoint", str(seen[0])
    )
    assert rc == 1 and lines[0] == "first bad seq: 9", lines
    # A JWK inline with whitespace before it is still inline, not a file name.
    assert _main(capsys, str(tmp_path / "nothing"), "--hub-key", "  \n" + jwk)[1][0].startswith(
        "FAILED: cannot read input"
    )
    assert _main(capsys, str(out), "--hub-key", "  \n" + jwk) == (0, [warning, f"ok: {out}"])
    # --hub-key is required.
    with pytest.raises(SystemExit) as info:
        audit_verify.main([str(out)])
    assert info.value.code == 2
    capsys.readouterr()


def test_verifier_messages_say_something() -> None:
    jwk = okp_public_jwk(Ed25519PrivateKey.generate().public_key())
    for bad in ({**jwk, "crv": "X25519"}, {**jwk, "x": jwk["x"][:8]}):
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.load_hub_key(bad)
        assert str(info.value) not in ("", "None"), bad
    with pytest.raises(ValueError) as err:
        audit_verify.load_hub_key({**jwk, "x": "*" * 43})
    assert str(err.value) not in ("", "None")


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("not UTF-8", b'{"actor":"a","data":{},"seq":3,"time":"t","type":"x.y\xff"}'),
        ("a duplicate key", b'{"actor":"a","actor":"b","data":{},"seq":3,"time":"t","type":"x.y"}'),
        ("NaN", b'{"actor":"a","data":{"n":NaN},"seq":3,"time":"t","type":"x.y"}'),
        ("not canonical (spaces)", b'{"actor": "a","data":{},"seq":3,"time":"t","type":"x.y"}'),
        ("not canonical (key order)", b'{"data":{},"actor":"a","seq":3,"time":"t","type":"x.y"}'),
        ("not an object", b'["actor","data","seq","time","type"]'),
        ("a key missing", b'{"actor":"a","data":{},"seq":3,"type":"x.y"}'),
        ("a key too many", b'{"actor":"a","data":{},"extra":1,"seq":3,"time":"t","type":"x.y"}'),
        ("another seq", b'{"actor":"a","data":{},"seq":4,"time":"t","type":"x.y"}'),
        ("seq as true", b'{"actor":"a","data":{},"seq":true,"time":"t","type":"x.y"}'),
        (
            "a number too large",
            b'{"actor":"a","data":{"n":9007199254740992},"seq":3,"time":"t","type":"x.y"}',
        ),
    ],
)
def test_each_entry_rule_names_the_seq(case: str, line: bytes) -> None:
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.check_entry(line, 3)
    assert info.value.seq == 3 and str(info.value) not in ("", "None"), case


def test_a_good_entry_and_seq_1_as_true_is_not_1() -> None:
    line = b'{"actor":"a","data":{"n":9007199254740991,"s":"\xc3\xa9"},"seq":1,"time":"t","type":"x.y"}'
    assert audit_verify.check_entry(line, 1)["data"]["s"] == "\u00e9"
    with pytest.raises(audit_verify.VerifyError):
        audit_verify.check_entry(line.replace(b'"seq":1', b'"seq":true'), 1)


def test_canonical_form_edges_match_rfc8785() -> None:
    # RFC 8785 §3.2.3 sorts keys by UTF-16 code units: U+E000 after U+1F600 (a surrogate pair, D83D).
    for value in (
        {"\ue000": 1, "\U0001f600": 2, "a": 3, "B": 4},
        {"é": "ü", "z": "\u2028"},
        {"n": 2**53 - 1, "m": -(2**53 - 1)},
        ["x", {"b": None, "a": [True, False]}],
    ):
        assert audit_verify._canon(value).encode("utf-8") == rfc8785.dumps(value), value
    for number in (2**53, -(2**53), 2**54, 3**40):
        with pytest.raises(ValueError) as info:
            audit_verify._canon(number)
        assert str(info.value) not in ("", "None")
    with pytest.raises(ValueError):
        audit_verify._canon(1.5)


async def test_the_first_bad_seq_is_the_lowest_of_all_problems(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    out, _ = await export_dir(tmp_path, store, hub_key)
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine)
    lines = _lines(out)
    # Entry 2 rewritten (hash list recomputed): only the first checkpoint's interval, 0..3, can be named.
    lines[2] = lines[2].replace(b"agency:2", b"agency:0")
    # Entry 10 not canonical: named by itself, but later than 0.
    lines[10] = lines[10].replace(b'"seq":10', b'"seq": 10')
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (out / "leaf-hashes.txt").write_text("".join(audit_verify.leaf_hash(x).hex() + "\n" for x in lines))
    failure = _verify(out, hub_key)
    assert failure is not None and (failure.seq, failure.last) == (0, 3), (failure, failure and failure.seq)
    # With the signed hash list kept, the entry itself is named, also in the last interval (8..11).
    (pristine / "entries.jsonl").write_bytes(
        b"".join(
            (x.replace(b"agency:1", b"agency:2") if i == 10 else x) + b"\n"
            for i, x in enumerate(_lines(pristine))
        )
    )
    failure = _verify(pristine, hub_key)
    assert failure is not None and (failure.seq, failure.last) == (10, None), failure


def test_base64_in_notes_and_bundles_is_strict() -> None:
    """A character outside the alphabet is refused, not skipped (non-validating base64 drops it)."""
    key = Ed25519PrivateKey.generate()
    origin = "camhub/abc"
    root = base64.b64encode(b"\x05" * 32).decode()
    for body in (f"{origin}\n5\n{root[:10]}*{root[10:]}\n",):
        note = checkpoint_mod.sign_note(body, origin, key)
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.parse_checkpoint(note, key.public_key(), origin)
        assert str(info.value) not in ("", "None")
    good = checkpoint_mod.sign_note(f"{origin}\n5\n{root}\n", origin, key)
    text, sig_line = good.rstrip("\n").rsplit("\n", 1)
    name, sig = sig_line.rsplit(" ", 1)
    starred = f"{text}\n{name} {sig[:10]}*{sig[10:]}\n"
    for parse in (audit_verify.parse_checkpoint, checkpoint_mod.parse_checkpoint):
        with pytest.raises((audit_verify.VerifyError, AuditError)):
            parse(starred, key.public_key(), origin)  # type: ignore[operator]


def test_signatures_of_other_keys_before_the_hubs_are_skipped() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "camhub/abc"
    body = f"{origin}\n5\n{base64.b64encode(bytes(32)).decode()}\n"
    hub_line = checkpoint_mod.sign_note(body, origin, key).split("\n\n")[1]
    witness = checkpoint_mod.sign_note(body, "witness.example", Ed25519PrivateKey.generate()).split("\n\n")[1]
    for note in (body + "\n" + witness + hub_line, body + "\n" + hub_line + witness):
        assert audit_verify.parse_checkpoint(note, key.public_key(), origin) == (5, bytes(32))
        assert checkpoint_mod.parse_checkpoint(note, key.public_key(), origin).size == 5
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.parse_checkpoint(body + "\n" + witness, key.public_key(), origin)
    assert str(info.value) not in ("", "None")


# --- issue 14: what the verifier refuses, says and accepts, one rule at a time ----------------------
# (each table row was written against a surviving mutant of camhub_protocol/audit_verify.py; the
# refusal reason is pinned by a fragment because it is all a person running the verifier gets.)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signed_export(tmp_path: Path, key: HubKey, lines: list[bytes], sizes: list[int] | None = None) -> Path:
    """An export directory whose checkpoints the hub key really signed over exactly these lines (so
    only the entry rules, not the roots, can find what is wrong)."""
    out = tmp_path / "signed-export"
    shutil.rmtree(out, ignore_errors=True)
    (out / "checkpoints").mkdir(parents=True)
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    tree = merkle.MerkleTree([merkle.leaf_hash(line) for line in lines])
    origin = checkpoint_mod.origin_for(key.hub_id)
    for size in sizes if sizes is not None else [len(lines)]:
        note = checkpoint_mod.sign_checkpoint(origin, size, tree.root(size), key.private_key)
        (out / "checkpoints" / f"{size}.note").write_text(note, encoding="utf-8")
    return out


def _entry(seq: int, type_: str, data: object, actor: str = "owner:k") -> bytes:
    return rfc8785.dumps(
        {"actor": actor, "data": data, "seq": seq, "time": "2026-12-04T20:00:00Z", "type": type_}
    )


def test_b64url_decoding_rules() -> None:
    decode = audit_verify._b64url_decode
    assert decode("") == b""
    assert decode("AAAA") == bytes(3)  # a length of exactly 4 is fine (len/4 == 1 is not len%4 == 1)
    assert decode("AAAX") == b"\x00\x00\x17"  # ends in "X": only "=" is stripped when re-encoding
    assert decode("QUI") == b"AB" and decode("QQ") == b"A"
    for bad, why in (
        ("AAAAA", "not base64url"),  # 5 characters can encode no byte string
        ("A", "not base64url"),
        ("*" * 43, "not base64url"),  # outside the alphabet, whatever the length
        ("AA+A", "not base64url"),  # base64, not base64url
        ("AAAA=", "not base64url"),
        ("AB", "not canonical base64url"),  # trailing bits set: another spelling of b"\x00"
        ("QR", "not canonical base64url"),
    ):
        with pytest.raises(ValueError) as info:
            decode(bad)
        assert str(info.value) == why, bad


def test_load_jwk_from_a_file_is_utf8_whatever_the_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The verifier reads its JWK, checkpoints and audit-proof.json as UTF-8 even on a host whose
    locale is ASCII (simulated: Path.read_text asks io.text_encoding for the default encoding)."""
    import io

    real = io.text_encoding
    monkeypatch.setattr(io, "text_encoding", lambda enc, *a: "ascii" if enc is None else real(enc, *a))
    key = Ed25519PrivateKey.generate()
    jwk = {**okp_public_jwk(key.public_key()), "name": "Küche"}
    path = tmp_path / "hub.jwk"
    path.write_text(json.dumps(jwk, ensure_ascii=False), encoding="utf-8")
    assert audit_verify._load_jwk(str(path)) == jwk
    path.write_text("[1]", encoding="utf-8")
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify._load_jwk(str(path))
    assert "not a JWK object" in str(info.value)


async def test_cli_reads_notes_and_bundles_as_utf8_whatever_the_locale(
    tmp_path: Path,
    store: Store,
    hub_key: HubKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    out, log = await export_dir(tmp_path, store, hub_key)
    saved = tmp_path / "seen.note"
    saved.write_text((out / "checkpoints" / "8.note").read_text(encoding="utf-8"), encoding="utf-8")
    bundle_path = tmp_path / "audit-proof.json"
    bundle_path.write_text(json.dumps(await log.proof_bundle(3), ensure_ascii=False), encoding="utf-8")
    assert "\u2014" in bundle_path.read_text(encoding="utf-8")  # the signature line's em dash, raw
    real = io.text_encoding
    monkeypatch.setattr(io, "text_encoding", lambda enc, *a: "ascii" if enc is None else real(enc, *a))
    jwk = json.dumps(hub_key.public_jwk)
    assert _main(capsys, str(out), "--hub-key", jwk) == (0, [f"ok: {out}"])
    assert _main(capsys, str(out), "--hub-key", jwk, "--checkpoint", str(saved)) == (0, [f"ok: {out}"])
    rc, lines = _main(capsys, str(bundle_path), "--hub-key", jwk)
    assert (rc, lines[0][:10]) == (0, "ok: entry "), lines


def test_each_entry_rule_says_which_rule() -> None:
    base = b'{"actor":"a","data":{},"seq":3,"time":"t","type":"x.y"}'
    for line, why in (
        (base.replace(b'"actor":"a"', b'"actor":"a","actor":"a"'), "duplicate key 'actor'"),
        (base.replace(b"{}", b'{"k":1,"k":1}'), "duplicate key 'k'"),
        (base.replace(b"{}", b'{"n":NaN}'), "number outside what audit entries use"),
        (base.replace(b"{}", b'{"n":Infinity}'), "number outside what audit entries use"),
        (base.replace(b"{}", b'{"n":1.5}'), "number outside what audit entries use"),
        (base.replace(b'"seq":3', b'"seq": 3'), "not in RFC 8785 canonical form"),
    ):
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.check_entry(line, 3)
        assert info.value.seq == 3 and why in str(info.value), (line, str(info.value))


async def test_a_non_canonical_entry_the_hub_signed_is_still_named(tmp_path: Path, hub_key: HubKey) -> None:
    """The entry rules find what the roots cannot: an entry the hub itself wrote wrongly and signed."""
    lines = [_entry(i, "hub.started", {"i": i}) for i in range(5)]
    good = _signed_export(tmp_path, hub_key, lines, [2, 5])
    assert audit_verify.verify_export(good, hub_key.public_jwk) == []
    lines[3] = lines[3].replace(b'"seq":3', b'"seq": 3')
    bad = _signed_export(tmp_path, hub_key, lines, [2, 5])
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_export(bad, hub_key.public_jwk)
    assert (info.value.seq, info.value.last) == (3, None)
    assert "not in RFC 8785 canonical form" in str(info.value)


async def test_messages_name_the_bad_checkpoint_and_entry(
    tmp_path: Path, store: Store, hub_key: HubKey
) -> None:
    out, log = await export_dir(tmp_path, store, hub_key)
    jwk = hub_key.public_jwk
    garbage = "camhub/x\n3\n"
    for extra, name in (
        ([garbage], "--checkpoint #1"),
        ([await log.checkpoint(), garbage], "--checkpoint #2"),
    ):
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.verify_export(out, jwk, extra)
        assert str(info.value) == f"checkpoint {name}: checkpoint has no signatures", info.value
    # With the signed hash list, the entry is named and the message says what it differs from.
    lines = _lines(out)
    lines[5] = lines[5].replace(b"agency:2", b"agency:0")
    (out / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_export(out, jwk)
    assert info.value.seq == 5 and str(info.value) == "entry 5 differs from what checkpoint 8.note signed"


def _parse_refusal(note: str, key: Ed25519PrivateKey, origin: str) -> str:
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.parse_checkpoint(note, key.public_key(), origin)
    assert info.value.seq is None
    return str(info.value)


def test_every_checkpoint_rule_of_the_verifier_says_which() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "camhub/abc"
    root = base64.b64encode(b"\x07" * 32).decode()
    body = f"{origin}\n5\n{root}\n"
    good = checkpoint_mod.sign_note(body, origin, key)
    assert audit_verify.parse_checkpoint(good, key.public_key(), origin) == (5, b"\x07" * 32)
    hub_line = good.split("\n\n")[1]
    # The same name signed by another key is ignored (signed-note: the key ID decides), not refused.
    impostor = checkpoint_mod.sign_note(body, origin, Ed25519PrivateKey.generate()).split("\n\n")[1]
    assert audit_verify.parse_checkpoint(body + "\n" + impostor + hub_line, key.public_key(), origin) == (
        5,
        b"\x07" * 32,
    )
    sig = hub_line.split(" ")[2].rstrip("\n")
    raw_sig = base64.b64decode(sig)
    flipped = base64.b64encode(raw_sig[:-1] + bytes([raw_sig[-1] ^ 1])).decode()
    witness = checkpoint_mod.sign_note(body, "witness.example", Ed25519PrivateKey.generate()).split("\n\n")[1]
    cases = [
        (good.rstrip("\n"), "checkpoint is not a signed note"),  # no final newline
        (good.replace("\n5\n", "\n5\t\n"), "checkpoint is not a signed note"),  # a control character
        (body, "checkpoint has no signatures"),
        (checkpoint_mod.sign_note("\n", origin, key), "checkpoint body is not origin/size/root"),
        (body + "\n\u2014 camhub/abc\n", "bad signature line in checkpoint"),
        (body + "\n" + hub_line + "\n" + witness, "checkpoint is not signed by the hub key"),
        (body + "\n\u2014 camhub/abc !!!!\n", "checkpoint signature is not base64"),
        (body + f"\n\u2014 {origin} {flipped}\n", "checkpoint signature does not verify with the hub key"),
        (body + "\n" + witness, "checkpoint is not signed by the hub key"),
        (
            checkpoint_mod.sign_note(f"{origin}\n5 \n{root}\n", origin, key),
            "checkpoint body is not origin/size/root",
        ),
        (
            checkpoint_mod.sign_note(f"{origin}\n05\n{root}\n", origin, key),
            "checkpoint body is not origin/size/root",
        ),
        (checkpoint_mod.sign_note(f"{origin}\n5\n", origin, key), "checkpoint body is not origin/size/root"),
        (
            checkpoint_mod.sign_note(f"camhub/other\n5\n{root}\n", origin, key),
            "checkpoint body is not origin/size/root",
        ),
        (
            checkpoint_mod.sign_note(f"{origin}\n5\n{root[:-4]}\n", origin, key),
            "checkpoint root is not 32 bytes",
        ),
        (
            checkpoint_mod.sign_note(f"{origin}\n5\n{root[:-1]}\n", origin, key),
            "checkpoint root is not base64",
        ),
    ]
    for note, why in cases:
        assert _parse_refusal(note, key, origin) == why, (note, why)


def test_consistency_proof_nodes_must_be_hashes() -> None:
    """RFC 9162 §2.1.4.2 on 32-byte nodes: a node of another length is refused even when the
    arithmetic would work out (old size 1: the new root is HASH(0x01 || old || node) for any node)."""
    old = merkle.leaf_hash(b"a")
    for node in (bytes(33), bytes(31), b""):
        new = merkle.node_hash(old, node)
        assert not audit_verify.verify_consistency(1, 2, old, new, [node])
        assert not merkle.verify_consistency(1, 2, old, new, [node])
    node = bytes(32)
    assert audit_verify.verify_consistency(1, 2, old, merkle.node_hash(old, node), [node])
    assert merkle.verify_consistency(1, 2, old, merkle.node_hash(old, node), [node])


async def test_proof_bundle_refusals_say_which(store: Store, hub_key: HubKey) -> None:
    log = await filled(store, hub_key, 1, checkpoint_every=1)
    bundle = await log.proof_bundle(0)
    jwk = hub_key.public_jwk
    # A tree of one entry: the empty proof is the proof, with or without the member.
    assert bundle["inclusion_proof"] == [] and bundle["tree_size"] == 1
    without = {k: v for k, v in bundle.items() if k != "inclusion_proof"}
    assert audit_verify.verify_proof_bundle(without, jwk)["seq"] == 0
    for change, why in (
        ({"checkpoint": None}, "checkpoint is not a signed note"),
        (
            {"inclusion_proof": [base64.b64encode(bytes(32)).decode()]},
            "entry 0 is not in the checkpointed tree",
        ),
        ({"inclusion_proof": 5}, "inclusion proof is not base64"),
    ):
        with pytest.raises(audit_verify.VerifyError) as info:
            audit_verify.verify_proof_bundle({**bundle, **change}, jwk)
        assert why in str(info.value), (change, info.value)
    no_checkpoint = {k: v for k, v in bundle.items() if k != "checkpoint"}
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_proof_bundle(no_checkpoint, jwk)
    assert str(info.value) == "checkpoint is not a signed note" and info.value.seq is None
    with pytest.raises(audit_verify.VerifyError) as info:
        audit_verify.verify_proof_bundle([bundle], jwk)  # type: ignore[arg-type]
    assert str(info.value) == "audit proof is not a JSON object"


def _passkey_decision(pk: SoftPasskey, hub_id: str, request_id: str = "r1") -> dict[str, str]:
    """A §3.1 passkey decision as the log stores it (`data.webauthn`), signed by the soft authenticator."""
    payload = json.dumps({"hub": hub_id, "decision": "decline", "request_id": request_id}).encode()
    auth, client, sig = pk.assert_(_b64u(hashlib.sha256(payload).digest()))
    return {
        "format": "webauthn",
        "kid": pk.kid,
        "payload": _b64u(payload),
        "authenticator_data": _b64u(auth),
        "client_data_json": _b64u(client),
        "signature": _b64u(sig),
    }


def test_passkey_public_key_rules() -> None:
    """The enrolled public_jwk is exactly a P-256 EC or an Ed25519 OKP key, and its thumbprint is the
    RFC 7638 one (members sorted, as jwk_thumbprint_any computes it)."""
    for alg in ("ES256", "EdDSA"):
        pk = SoftPasskey("camhub.local", "https://camhub.local", alg=alg)
        jwk = pk.public_jwk()
        assert audit_verify._passkey_public_key(jwk)[1] == pk.kid == jwk_thumbprint_any(jwk)
    ec_jwk = SoftPasskey("camhub.local", "https://camhub.local", alg="ES256").public_jwk()
    ed_jwk = SoftPasskey("camhub.local", "https://camhub.local", alg="EdDSA").public_jwk()
    short = _b64u(bytes(31))
    for jwk, why in (
        ([ec_jwk], "public_jwk is not an object"),
        (None, "public_jwk is not an object"),
        ({**ec_jwk, "crv": "P-384"}, "public_jwk is neither P-256 nor Ed25519"),  # kty EC alone is not P-256
        ({**ec_jwk, "kty": "OKP"}, "public_jwk is neither P-256 nor Ed25519"),  # crv P-256 alone neither
        ({**ed_jwk, "kty": "EC"}, "public_jwk is neither P-256 nor Ed25519"),  # crv Ed25519 alone is not OKP
        ({**ed_jwk, "crv": "X25519"}, "public_jwk is neither P-256 nor Ed25519"),  # kty OKP alone neither
        ({**ec_jwk, "x": short}, "P-256 coordinates are 32 bytes"),
        ({**ec_jwk, "y": short}, "P-256 coordinates are 32 bytes"),
        ({**ed_jwk, "x": short}, "an Ed25519 key is 32 bytes"),
    ):
        with pytest.raises(ValueError) as info:
            audit_verify._passkey_public_key(jwk)
        assert str(info.value) == why, (jwk, why)


def test_an_unknown_kid_is_quoted_up_to_60_characters() -> None:
    pk = SoftPasskey("camhub.local", "https://camhub.local")
    signed = {**_passkey_decision(pk, "hub-x"), "kid": "k" * 100}
    with pytest.raises(ValueError) as info:
        audit_verify.check_passkey_decision(signed, {}, "hub-x")
    assert str(info.value) == f"kid {'k' * 60!r} has no earlier key.enrolled entry with a passkey"


def test_check_passkey_entries_walks_the_log_in_order() -> None:
    """Only `decision.accepted` entries with a `webauthn` member are re-verified, against passkeys of
    earlier `key.enrolled` entries that carry both `public_jwk` and `rp_id`; entries of other types
    (even with those members) and entries whose data is not an object are skipped, not the end."""
    hub_id = "hub-x"
    pk = SoftPasskey("camhub.local", "https://camhub.local")
    enrolled = {"kid": pk.kid, "rp_id": "camhub.local", "public_jwk": pk.public_jwk()}
    impostor = {"kid": pk.kid, "rp_id": "evil.example", "public_jwk": pk.public_jwk()}
    bad = {**_passkey_decision(pk, hub_id), "payload": _b64u(b'{"hub":"hub-x"}')}
    entries: list[tuple[int, dict[str, object]]] = [
        (0, {"type": "key.enrolled", "data": enrolled}),
        (1, {"type": "hub.started", "data": []}),  # data not an object: skipped
        (2, {"type": "owner.note", "data": impostor}),  # not key.enrolled: enrols nothing
        (3, {"type": "key.enrolled", "data": {"kid": pk.kid, "rp_id": "evil.example"}}),  # no public_jwk
        (4, {"type": "key.enrolled", "data": {"kid": pk.kid, "public_jwk": {}}}),  # no rp_id
        (5, {"type": "decision.accepted", "data": {"webauthn": _passkey_decision(pk, hub_id)}}),
        (6, {"type": "decision.accepted", "data": {"jws": "x"}}),  # a JWS decision: not re-checked here
        (7, {"type": "owner.note", "data": {"webauthn": bad}}),  # not a decision: not re-checked
        (8, {"type": "decision.accepted", "data": {"webauthn": bad}}),
        (9, {"type": "decision.accepted", "data": {"webauthn": _passkey_decision(pk, hub_id, "r2")}}),
    ]
    problems = audit_verify.check_passkey_entries(entries, hub_id)  # type: ignore[arg-type]
    assert [(p.seq, p.last, str(p)) for p in problems] == [
        (8, None, "entry 8: passkey decision does not verify: the assertion was made for another payload")
    ]
    assert audit_verify.check_passkey_entries(entries[:8] + entries[9:], hub_id) == []  # type: ignore[arg-type]
