"""C2SP tlog-checkpoint bodies wrapped as C2SP signed notes, signed with the hub's Ed25519 key.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text
    camhub/<hub_id>\\n<tree size>\\n<base64 root hash>\\n
and the signed note (c2sp.org/signed-note) appends a blank line and one signature line
    — <key name> base64(key ID || Ed25519 signature over the text)\\n
where the key name is the origin (tlog-checkpoint: "SHOULD match the origin line") and the key ID
is SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (signed-note, "Ed25519 signatures").
Verifiers ignore signatures from unknown keys, reject a note whose known-key signature fails, and
reject a note with no verified known-key signature (signed-note, "Signatures").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camhub_protocol.errors import AuditError

SIG_TYPE_ED25519 = b"\x01"
MAX_NOTE_BYTES = 16 * 1024
MAX_SIGNATURES = 16
_SIG_LINE = re.compile(r"\u2014 (\S+) (\S+)")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def origin_for(hub_id: str) -> str:
    """PROTOCOL §5: the origin line and key name are `camhub/<hub_id>`."""
    return f"camhub/{hub_id}"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + SIG_TYPE_ED25519 + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The `<name>+<hex key id>+<base64(0x01 || key)>` string Go's `note` package verifiers read."""
    raw = base64.b64encode(SIG_TYPE_ED25519 + _raw(public_key)).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{raw}"


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """tlog-checkpoint note text: origin, decimal size, base64 root, each ending in a newline."""
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise ValueError("origin must be non-empty without spaces or '+'")
    if size < 0 or len(root) != 32:
        raise ValueError("bad size or root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """A signed note with one Ed25519 signature line (signed-note, "Format")."""
    if not text.endswith("\n"):
        raise ValueError("note text must end in a newline")
    sig = key_id(name, private_key.public_key()) + private_key.sign(text.encode("utf-8"))
    return f"{text}\n\u2014 {name} {base64.b64encode(sig).decode('ascii')}\n"


def sign_checkpoint(origin: str, size: int, root: bytes, private_key: Ed25519PrivateKey) -> str:
    return sign_note(checkpoint_text(origin, size, root), origin, private_key)


def open_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """Verify a signed note against one known key and return its text (signed-note rules)."""
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise AuditError("checkpoint_malformed", "note too large")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise AuditError("checkpoint_malformed", "control characters in note")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise AuditError("checkpoint_malformed", "no signature block")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block[:-1].split("\n")
    if not lines or len(lines) > MAX_SIGNATURES:
        raise AuditError("checkpoint_malformed", "bad number of signatures")
    want_id = key_id(name, public_key)
    verified = False
    for line in lines:
        m = _SIG_LINE.fullmatch(line)
        if not m:
            raise AuditError("checkpoint_malformed", "bad signature line")
        try:
            sig = base64.b64decode(m.group(2), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AuditError("checkpoint_malformed", "signature is not base64") from exc
        if len(sig) < 5:
            raise AuditError("checkpoint_malformed", "signature too short")
        if m.group(1) != name or sig[:4] != want_id:
            continue  # unknown key: ignored, as the spec requires
        try:
            public_key.verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature as exc:
            raise AuditError("checkpoint_bad_signature", "hub signature does not verify") from exc
        verified = True
    if not verified:
        raise AuditError("checkpoint_unsigned", "no signature by the hub key")
    return text


def parse_checkpoint(note: str, public_key: Ed25519PublicKey, origin: str) -> Checkpoint:
    """Verify a signed checkpoint from `origin` and return its size and root (tlog-checkpoint)."""
    text = open_note(note, origin, public_key)
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise AuditError("checkpoint_malformed", "a checkpoint has at least three non-empty lines")
    if lines[0] != origin:
        raise AuditError("checkpoint_wrong_origin", f"origin {lines[0]!r} is not {origin!r}")
    if not _SIZE.fullmatch(lines[1]):
        raise AuditError("checkpoint_malformed", "tree size is not a canonical decimal")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuditError("checkpoint_malformed", "root is not base64") from exc
    if len(root) != 32:
        raise AuditError("checkpoint_malformed", "root is not 32 bytes")
    return Checkpoint(lines[0], int(lines[1]), root)
