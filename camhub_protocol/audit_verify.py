"""Stand-alone audit log verifier: `camhub audit verify DIR --hub-key JWK` (PROTOCOL §5).

Deliberately imports nothing from `hub` and nothing outside the standard library but
`cryptography`: the owner (or a court, or an agency holding an `audit-proof.json`) must be able to
check the log with a copy of this one file, without trusting or even installing the hub that wrote
it. So the few pieces it needs are copied here rather than imported: RFC 9162 hashing and proof
verification (`camhub_protocol/merkle.py`), C2SP signed-note checking (`camhub_protocol/checkpoint.py`), the
RFC 7638 thumbprint (`camhub_protocol/keys.py`) and an RFC 8785 check (entries carry no floats, and for
the other JSON types RFC 8785 equals sorted-key, no-whitespace `json.dumps` with keys ordered by
UTF-16 code units). The tests run this file against the hub's own output.

Checks on an export directory (layout in `hub/consent/audit.py`):
- each line of entries.jsonl is a canonical entry whose "seq" equals its line number;
- every checkpoint is signed by the hub key with origin `camhub/<hub_id>` and its root equals the
  tree recomputed from the entries at that size; a checkpoint larger than the log means truncation;
- `--checkpoint FILE` adds checkpoints kept elsewhere (an older export, the owner's browser): the log
  must still contain them, which catches a rollback or a fork.
The first bad seq is printed and the exit status is 1. With leaf-hashes.txt present, a tampered
entry is named exactly: that list is authenticated by the checkpoints, so the entry whose recomputed
hash differs from it is the bad one; otherwise the range between two checkpoints is reported.

- every passkey decision (PROTOCOL §3.1: a `decision.accepted` entry carrying `"webauthn"`) is
  re-verified from the log alone: the passkey's `key.enrolled` entry (with its `public_jwk` and
  `rp_id`) comes earlier, the key's RFC 7638 thumbprint is the kid, the payload is for this hub, and
  clientDataJSON (type `webauthn.get`, challenge = SHA-256 of the payload), the rpIdHash, the UP and
  UV flags and the ES256 or EdDSA signature over authenticatorData ‖ SHA-256(clientDataJSON) all
  check (WebAuthn L2 §7.2). So a hub that logged a decision its owner's passkey never signed is named.
Given a file instead of a directory, verifies an `audit-proof.json` from a delivery: the entry, its
RFC 9162 inclusion proof and the signed checkpoint, against the hub key.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ENTRY_KEYS = ("actor", "data", "seq", "time", "type")


class VerifyError(Exception):
    """Verification failed; `seq` is the first bad entry when it is known."""

    def __init__(self, message: str, seq: int | None = None, last: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq
        self.last = last  # set when only a range seq..last can be named


# ---- RFC 7638 thumbprint of an Ed25519 OKP JWK (copied from camhub_protocol/keys.py) ----
def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # One spelling per key: other trailing bits would name the same key under another hub_id.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise ValueError("not canonical base64url")
    return raw


def load_hub_key(jwk: dict[str, Any]) -> tuple[Ed25519PublicKey, str]:
    """The hub's public key and `hub_id` (RFC 7638 SHA-256 thumbprint, base64url)."""
    if (
        jwk.get("kty") != "OKP"
        or jwk.get("crv") != "Ed25519"
        or not isinstance(jwk.get("x"), str)
        or "d" in jwk
    ):
        raise VerifyError("--hub-key must be a public Ed25519 OKP JWK")
    raw = _b64url_decode(jwk["x"])
    if len(raw) != 32:
        raise VerifyError("Ed25519 public key must be 32 bytes")
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}, separators=(",", ":"))
    hub_id = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return Ed25519PublicKey.from_public_bytes(raw), hub_id


# ---- RFC 9162 §2.1 (copied from camhub_protocol/merkle.py) ----
def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """Perfect-subtree cache: level h holds MTH of leaves [i*2^h, (i+1)*2^h)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            row = self.levels[-1]
            self.levels.append([node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)])

    def _hash(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self.levels[n.bit_length() - 1][start // n]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def root(self, size: int) -> bytes:
        return hashlib.sha256(b"").digest() if size == 0 else self._hash(0, size)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if not 0 <= old_size <= new_size or any(len(p) != 32 for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


# ---- C2SP signed-note + tlog-checkpoint (copied from camhub_protocol/checkpoint.py) ----
def parse_checkpoint(note: str, key: Ed25519PublicKey, origin: str) -> tuple[int, bytes]:
    """Verify a signed checkpoint; returns (tree size, root)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    want_id = hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()[:4]
    if any(ord(c) < 0x20 and c != "\n" for c in note) or not note.endswith("\n"):
        raise VerifyError("checkpoint is not a signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerifyError("checkpoint has no signatures")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    verified = False
    for line in lines:
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if not m:
            raise VerifyError("bad signature line in checkpoint")
        try:
            sig = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerifyError("checkpoint signature is not base64") from exc
        if m.group(1) != origin or sig[:4] != want_id:
            continue  # signed-note: signatures from unknown keys are ignored
        try:
            key.verify(sig[4:], text.encode())
        except InvalidSignature as exc:
            raise VerifyError("checkpoint signature does not verify with the hub key") from exc
        verified = True
    if not verified:
        raise VerifyError("checkpoint is not signed by the hub key")
    body = text[:-1].split("\n")
    if len(body) < 3 or "" in body or body[0] != origin or not re.fullmatch(r"0|[1-9][0-9]*", body[1]):
        raise VerifyError("checkpoint body is not origin/size/root")
    try:
        root = base64.b64decode(body[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerifyError("checkpoint root is not base64") from exc
    if len(root) != 32:
        raise VerifyError("checkpoint root is not 32 bytes")
    return int(body[1]), root


# ---- RFC 8785 for entries without floats ----
def _reject_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _canon(value: Any) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))  # RFC 8785 §3.2.3
        return "{" + ",".join(_canon(k) + ":" + _canon(value[k]) for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # RFC 8785 §3.2.2.2 escaping
    if isinstance(value, int) and abs(value) <= 2**53 - 1:
        return str(value)
    raise ValueError("number outside what audit entries use")


def check_entry(line: bytes, seq: int) -> dict[str, Any]:
    """One exported line must be the canonical entry with this seq."""
    try:
        obj = json.loads(line.decode("utf-8"), object_pairs_hook=_reject_dupes, parse_constant=float)
        canonical = _canon(obj).encode("utf-8")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VerifyError(f"entry {seq} is not valid canonical JSON ({exc})", seq) from exc
    if canonical != line:
        raise VerifyError(f"entry {seq} is not in RFC 8785 canonical form", seq)
    if not isinstance(obj, dict) or tuple(sorted(obj)) != ENTRY_KEYS:
        raise VerifyError(f"entry {seq} does not have exactly {ENTRY_KEYS}", seq)
    if obj["seq"] != seq or isinstance(obj["seq"], bool):
        raise VerifyError(f"line {seq} carries seq {obj['seq']!r}: the sequence is broken", seq)
    return obj


# ---- passkey decisions (PROTOCOL §3.1; WebAuthn L2 §7.2) ----
def _passkey_public_key(jwk: Any) -> tuple[ec.EllipticCurvePublicKey | Ed25519PublicKey, str]:
    """The key and its RFC 7638 thumbprint, from a `key.enrolled` entry's `public_jwk`."""
    if not isinstance(jwk, dict):
        raise ValueError("public_jwk is not an object")
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        x, y = _b64url_decode(str(jwk.get("x"))), _b64url_decode(str(jwk.get("y")))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates are 32 bytes")
        members = {"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
        key: ec.EllipticCurvePublicKey | Ed25519PublicKey = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    elif jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        raw = _b64url_decode(str(jwk.get("x")))
        if len(raw) != 32:
            raise ValueError("an Ed25519 key is 32 bytes")
        members = {"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}
        key = Ed25519PublicKey.from_public_bytes(raw)
    else:
        raise ValueError("public_jwk is neither P-256 nor Ed25519")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return key, base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def check_passkey_decision(signed: Any, enrolled: dict[str, Any], hub_id: str) -> None:
    """Re-verify one stored passkey decision; ValueError says what is wrong."""
    if not isinstance(signed, dict) or signed.get("format") != "webauthn":
        raise ValueError("webauthn member is not a passkey decision")
    kid = signed.get("kid")
    if kid not in enrolled:
        raise ValueError(f"kid {str(kid)[:60]!r} has no earlier key.enrolled entry with a passkey")
    key_entry = enrolled[kid]
    key, thumbprint = _passkey_public_key(key_entry.get("public_jwk"))
    if thumbprint != kid:
        raise ValueError("the enrolled public_jwk is not the key the kid names")
    payload = _b64url_decode(str(signed.get("payload")))
    auth = _b64url_decode(str(signed.get("authenticator_data")))
    client_raw = _b64url_decode(str(signed.get("client_data_json")))
    signature = _b64url_decode(str(signed.get("signature")))
    body = json.loads(payload.decode("utf-8"))
    if not isinstance(body, dict) or body.get("hub") != hub_id:
        raise ValueError("the payload is not for this hub")
    client = json.loads(client_raw.decode("utf-8"))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    if not isinstance(client, dict) or client.get("type") != "webauthn.get":
        raise ValueError("clientDataJSON.type is not webauthn.get")
    if client.get("challenge") != challenge:
        raise ValueError("the assertion was made for another payload")
    rp_id = key_entry.get("rp_id")
    if not isinstance(rp_id, str) or len(auth) < 37 or auth[:32] != hashlib.sha256(rp_id.encode()).digest():
        raise ValueError("authenticatorData is not for the passkey's relying party")
    if auth[32] & 0x05 != 0x05:
        raise ValueError("the user was not present and verified (UP and UV flags)")
    signed_bytes = auth + hashlib.sha256(client_raw).digest()
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, signed_bytes)
        else:
            key.verify(signature, signed_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ValueError("the passkey signature does not verify") from exc


def check_passkey_entries(entries: Sequence[tuple[int, dict[str, Any]]], hub_id: str) -> list[VerifyError]:
    """Every passkey decision in the log, against the passkeys enrolled before it."""
    enrolled: dict[str, Any] = {}
    problems: list[VerifyError] = []
    for seq, entry in entries:
        data = entry.get("data")
        if not isinstance(data, dict):
            continue
        if entry.get("type") == "key.enrolled" and "public_jwk" in data and "rp_id" in data:
            enrolled[str(data.get("kid"))] = data
        elif entry.get("type") == "decision.accepted" and "webauthn" in data:
            try:
                check_passkey_decision(data["webauthn"], enrolled, hub_id)
            except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as exc:
                problems.append(VerifyError(f"entry {seq}: passkey decision does not verify: {exc}", seq))
    return problems


# ---- the export directory ----
def verify_export(directory: Path, jwk: dict[str, Any], extra_checkpoints: Sequence[str] = ()) -> list[str]:
    """Verify an export; returns warnings, raises VerifyError (with the first bad seq) on failure."""
    key, hub_id = load_hub_key(jwk)
    origin = f"camhub/{hub_id}"
    data = (directory / "entries.jsonl").read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a lost final newline alone changes no entry bytes
    lines = data.split(b"\n")[:-1] if data else []
    problems: list[VerifyError] = []
    leaves: list[bytes] = []
    parsed: list[tuple[int, dict[str, Any]]] = []
    for seq, line in enumerate(lines):
        try:
            parsed.append((seq, check_entry(line, seq)))
        except VerifyError as exc:
            problems.append(exc)
        leaves.append(leaf_hash(line))
    tree = Tree(leaves)
    problems += check_passkey_entries(parsed, hub_id)

    listed: list[bytes] | None = None
    hashes_file = directory / "leaf-hashes.txt"
    if hashes_file.exists():
        try:
            listed = [bytes.fromhex(h) for h in hashes_file.read_text().split()]
        except ValueError:
            listed = None
    listed_tree = Tree(listed) if listed else None

    notes: list[tuple[str, str]] = []
    cp_dir = directory / "checkpoints"
    if cp_dir.is_dir():
        notes += [(p.name, p.read_text(encoding="utf-8")) for p in sorted(cp_dir.glob("*.note"))]
    notes += [(f"--checkpoint #{i + 1}", n) for i, n in enumerate(extra_checkpoints)]
    if not notes:
        raise VerifyError("no checkpoints: nothing authenticates this log")
    heads: list[tuple[int, bytes, str]] = []
    for name, note in notes:
        try:
            size, root = parse_checkpoint(note, key, origin)
        except VerifyError as exc:
            raise VerifyError(f"checkpoint {name}: {exc}") from exc
        heads.append((size, root, name))
    heads.sort()

    good = 0
    for size, root, name in heads:
        if size > len(lines):
            problems.append(
                VerifyError(
                    f"checkpoint {name} covers {size} entries but the log has {len(lines)}: truncated",
                    len(lines),
                )
            )
            break
        if tree.root(size) == root:
            good = max(good, size)
            continue
        seq: int | None = None
        if listed_tree is not None and len(listed or []) >= size and listed_tree.root(size) == root:
            # The listed hashes are what the hub signed: the first differing entry is the bad one.
            seq = next(i for i in range(size) if listed is not None and listed[i] != leaves[i])
            problems.append(VerifyError(f"entry {seq} differs from what checkpoint {name} signed", seq))
        else:
            problems.append(
                VerifyError(
                    f"checkpoint {name} (size {size}) does not match entries {good}..{size - 1}",
                    good,
                    size - 1,
                )
            )
        break
    if problems:
        first = min(problems, key=lambda e: e.seq if e.seq is not None else len(lines))
        raise first
    warnings = []
    if heads and heads[-1][0] < len(lines):
        warnings.append(f"entries {heads[-1][0]}..{len(lines) - 1} are not yet covered by a checkpoint")
    return warnings


# ---- audit-proof.json from a delivery ----
def verify_proof_bundle(bundle: dict[str, Any], jwk: dict[str, Any]) -> dict[str, Any]:
    """Verify entry + inclusion proof + signed checkpoint; returns the entry object."""
    key, hub_id = load_hub_key(jwk)
    origin = f"camhub/{hub_id}"
    if not isinstance(bundle, dict):
        raise VerifyError("audit proof is not a JSON object")
    if bundle.get("v") != 1 or bundle.get("hub_id") != hub_id:
        raise VerifyError("audit proof is not for this hub")
    size, root = parse_checkpoint(str(bundle.get("checkpoint", "")), key, origin)
    seq = bundle.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise VerifyError("audit proof has no seq")
    entry_text = bundle.get("entry")
    if not isinstance(entry_text, str):
        raise VerifyError("audit proof has no entry", seq)
    entry = entry_text.encode("utf-8")
    obj = check_entry(entry, seq)
    leaf = leaf_hash(entry)
    if bundle.get("entry_hash") != leaf.hex():
        raise VerifyError("entry_hash does not match the entry", seq)
    if bundle.get("tree_size") != size:
        raise VerifyError("tree_size differs from the checkpoint", seq)
    try:
        proof = [base64.b64decode(h, validate=True) for h in bundle.get("inclusion_proof", [])]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise VerifyError("inclusion proof is not base64", seq) from exc
    if not verify_inclusion(seq, size, leaf, proof, root):
        raise VerifyError(f"entry {seq} is not in the checkpointed tree of size {size}", seq)
    return obj


def _load_jwk(value: str) -> dict[str, Any]:
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    jwk = json.loads(text)
    if not isinstance(jwk, dict):
        raise VerifyError("--hub-key is not a JWK object")
    return jwk


def main(argv: Sequence[str] | None = None) -> int:
    """`verify DIR|audit-proof.json --hub-key JWK [--checkpoint NOTE]...`; 0 if good, 1 if bad, 2 on usage."""
    parser = argparse.ArgumentParser(prog="camhub audit verify", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="an export directory or an audit-proof.json")
    parser.add_argument("--hub-key", required=True, help="the hub's public JWK, inline JSON or a file")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        type=Path,
        help="a signed checkpoint seen earlier that the log must still contain",
    )
    args = parser.parse_args(argv)
    try:
        jwk = _load_jwk(args.hub_key)
        if args.path.is_dir():
            notes = [p.read_text(encoding="utf-8") for p in args.checkpoint]
            warnings = verify_export(args.path, jwk, notes)
            for w in warnings:
                print(f"warning: {w}")
            print(f"ok: {args.path}")
        else:
            obj = verify_proof_bundle(json.loads(args.path.read_text(encoding="utf-8")), jwk)
            print(f"ok: entry {obj['seq']} ({obj['type']}) is in the hub's signed log")
        return 0
    except VerifyError as exc:
        if exc.seq is not None and exc.last is not None and exc.last != exc.seq:
            print(f"first bad seq: in {exc.seq}..{exc.last}")
        elif exc.seq is not None:
            print(f"first bad seq: {exc.seq}")
        print(f"FAILED: {exc}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"FAILED: cannot read input: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
