"""C2SP signed notes and tlog-checkpoints, anchored to Go's sumdb/note and the spec's own example."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from camhub_protocol import checkpoint
from camhub_protocol.errors import AuditError

# golang.org/x/mod/sumdb/note (note_test.go, example_test.go): an independent implementation.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# c2sp.org/signed-note's example key and note.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def vkey_public(vkey: str) -> tuple[str, Ed25519PublicKey]:
    name, _, blob = vkey.split("+", 2)
    raw = base64.b64decode(blob)
    assert raw[0] == 1
    return name, Ed25519PublicKey.from_public_bytes(raw[1:])


def test_go_note_signature_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert checkpoint.key_id("PeterNeumann", key.public_key()).hex() == "c74f20a3"
    assert checkpoint.verifier_key("PeterNeumann", key.public_key()) == GO_VKEY
    assert checkpoint.sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert checkpoint.open_note(GO_NOTE, "PeterNeumann", key.public_key()) == GO_TEXT


def test_spec_example_note_verifies() -> None:
    name, pub = vkey_public(SPEC_VKEY)
    assert checkpoint.verifier_key(name, pub) == SPEC_VKEY
    assert checkpoint.open_note(SPEC_NOTE, name, pub) == "This is an example message.\n"


def test_checkpoint_round_trip_and_format() -> None:
    key = Ed25519PrivateKey.generate()
    root = bytes(range(32))
    note = checkpoint.sign_checkpoint("camhub/abc", 20852163, root, key)
    lines = note.split("\n")
    assert lines[:4] == ["camhub/abc", "20852163", base64.b64encode(root).decode(), ""]
    assert lines[4].startswith("\u2014 camhub/abc ")
    cp = checkpoint.parse_checkpoint(note, key.public_key(), "camhub/abc")
    assert (cp.size, cp.root) == (20852163, root)


def test_unknown_signatures_ignored_but_one_known_required() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    note = checkpoint.sign_checkpoint("camhub/abc", 1, b"\x01" * 32, key)
    text = note[: note.rfind("\n\n") + 1]
    witness = checkpoint.sign_note(text, "witness.example", other)
    both = note + witness.split("\n\n")[1]
    assert checkpoint.parse_checkpoint(both, key.public_key(), "camhub/abc").size == 1
    with pytest.raises(AuditError) as exc:
        checkpoint.parse_checkpoint(witness, key.public_key(), "camhub/abc")
    assert exc.value.code == "checkpoint_unsigned"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda n: n.replace("\n5\n", "\n6\n"), "checkpoint_bad_signature"),
        (lambda n: n.replace("\n\n", "\n"), "checkpoint_malformed"),
        (lambda n: n.replace("\u2014", "-"), "checkpoint_malformed"),
        (lambda n: n + "\x07", "checkpoint_malformed"),
    ],
)
def test_tampered_checkpoints(mutate: object, code: str) -> None:
    key = Ed25519PrivateKey.generate()
    note = checkpoint.sign_checkpoint("camhub/abc", 5, b"\x02" * 32, key)
    with pytest.raises(AuditError) as exc:
        checkpoint.parse_checkpoint(mutate(note), key.public_key(), "camhub/abc")  # type: ignore[operator]
    assert exc.value.code == code


def test_wrong_origin_is_an_unknown_key() -> None:
    key = Ed25519PrivateKey.generate()
    note = checkpoint.sign_checkpoint("camhub/other", 5, b"\x02" * 32, key)
    with pytest.raises(AuditError) as exc:
        checkpoint.parse_checkpoint(note, key.public_key(), "camhub/abc")
    assert exc.value.code == "checkpoint_unsigned"


# Bodies that are properly signed but are not a tlog-checkpoint: only the body rules can refuse them,
# in the hub's parser and in the stand-alone verifier's copy alike.
ORIGIN = "camhub/abc"
ROOT = base64.b64encode(b"\x03" * 32).decode()
BAD_BODIES = [
    ("two lines", f"{ORIGIN}\n5\n", "checkpoint_malformed"),
    ("an empty line", f"{ORIGIN}\n5\n{ROOT}\n\nextension\n", "checkpoint_malformed"),
    ("another origin line", f"camhub/xyz\n5\n{ROOT}\n", "checkpoint_wrong_origin"),
    ("size with a leading zero", f"{ORIGIN}\n05\n{ROOT}\n", "checkpoint_malformed"),
    ("negative size", f"{ORIGIN}\n-5\n{ROOT}\n", "checkpoint_malformed"),
    ("size not a number", f"{ORIGIN}\nfive\n{ROOT}\n", "checkpoint_malformed"),
    ("root not base64", f"{ORIGIN}\n5\n!!!!\n", "checkpoint_malformed"),
    ("root with a stray character", f"{ORIGIN}\n5\n{ROOT[:-1]}*\n", "checkpoint_malformed"),
    ("root of 31 bytes", f"{ORIGIN}\n5\n{base64.b64encode(bytes(31)).decode()}\n", "checkpoint_malformed"),
]


@pytest.mark.parametrize(("case", "body", "code"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_signed_bodies_that_are_not_checkpoints(case: str, body: str, code: str) -> None:
    from camhub_protocol import audit_verify

    key = Ed25519PrivateKey.generate()
    note = checkpoint.sign_note(body, ORIGIN, key)
    assert checkpoint.open_note(note, ORIGIN, key.public_key()) == body  # the signature is fine
    with pytest.raises(AuditError) as exc:
        checkpoint.parse_checkpoint(note, key.public_key(), ORIGIN)
    assert exc.value.code == code and exc.value.detail, case
    with pytest.raises(audit_verify.VerifyError):
        audit_verify.parse_checkpoint(note, key.public_key(), ORIGIN)


def test_extension_lines_and_size_zero_are_fine() -> None:
    from camhub_protocol import audit_verify

    key = Ed25519PrivateKey.generate()
    for size in (0, 7, 10):
        note = checkpoint.sign_note(f"{ORIGIN}\n{size}\n{ROOT}\nan extension line\n", ORIGIN, key)
        cp = checkpoint.parse_checkpoint(note, key.public_key(), ORIGIN)
        assert (cp.origin, cp.size, cp.root) == (ORIGIN, size, b"\x03" * 32)
        assert audit_verify.parse_checkpoint(note, key.public_key(), ORIGIN) == (size, b"\x03" * 32)


def test_verifier_key_format() -> None:
    key = Ed25519PrivateKey.generate()
    vkey = checkpoint.verifier_key("camhub/abc", key.public_key())
    name, key_hex, blob = vkey.split("+", 2)  # base64 may hold "+" too
    assert name == "camhub/abc" and key_hex == checkpoint.key_id(name, key.public_key()).hex()
    assert base64.b64decode(blob, validate=True)[1:] == key.public_key().public_bytes_raw()
    assert vkey.isascii()


def _signature_line(name: str, sig: bytes) -> str:
    return f"\u2014 {name} {base64.b64encode(sig).decode()}"


def test_each_signed_note_rule() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    text = f"{ORIGIN}\n5\n{ROOT}\n"
    good = checkpoint.sign_note(text, ORIGIN, key)
    good_line = good.split("\n\n")[1].rstrip("\n")
    witness = checkpoint.sign_note(text, "witness.example", Ed25519PrivateKey.generate()).split("\n\n")[1]
    key_id = checkpoint.key_id(ORIGIN, pub)
    cases = [
        ("too large", text + "x" * (16 * 1024) + "\n\n" + good_line + "\n", "checkpoint_malformed"),
        ("a control character", text.replace("5", "5\x01") + "\n" + good_line + "\n", "checkpoint_malformed"),
        ("no blank line", text + good_line + "\n", "checkpoint_malformed"),
        ("no final newline", text + "\n" + good_line, "checkpoint_malformed"),
        ("17 signatures", text + "\n" + (witness * 16) + good_line + "\n", "checkpoint_malformed"),
        ("a signature line without the dash", text + "\n- " + good_line[2:] + "\n", "checkpoint_malformed"),
        ("a signature not base64", text + "\n\u2014 " + ORIGIN + " !!!!\n", "checkpoint_malformed"),
        ("a signature of 4 bytes", text + "\n" + _signature_line(ORIGIN, key_id) + "\n", "checkpoint_malformed"),
        ("the hub key id, a wrong signature", text + "\n" + _signature_line(ORIGIN, key_id + bytes(64)) + "\n",
         "checkpoint_bad_signature"),
        ("only other keys", text + "\n" + witness, "checkpoint_unsigned"),
        ("the hub's name with another key id", text + "\n" + _signature_line(ORIGIN, b"\x00" * 4 + bytes(64)) + "\n",
         "checkpoint_unsigned"),
    ]  # fmt: skip
    for case, note, code in cases:
        with pytest.raises(AuditError) as exc:
            checkpoint.open_note(note, ORIGIN, pub)
        assert (exc.value.code, bool(exc.value.detail)) == (code, True), case
    # 16 signatures, the hub's after others it does not know: fine (unknown keys are skipped, not fatal).
    many = text + "\n" + (witness * 15) + good_line + "\n"
    assert checkpoint.open_note(many, ORIGIN, pub) == text
    # Exactly the size limit is fine.
    body = f"{ORIGIN}\n5\n{ROOT}\n"
    pad = 16 * 1024 - len(checkpoint.sign_note(body + "e\n", ORIGIN, key).encode())
    big = checkpoint.sign_note(body + "e" * (1 + pad) + "\n", ORIGIN, key)
    assert len(big.encode()) == 16 * 1024
    assert checkpoint.open_note(big, ORIGIN, pub).startswith(body)
    # A body with a blank line of its own: the signatures start after the last one.
    inner = f"{ORIGIN}\n5\n{ROOT}\n\nnot a signature\n"
    assert checkpoint.open_note(checkpoint.sign_note(inner, ORIGIN, key), ORIGIN, pub) == inner


# --- issue 14: each rule of checkpoint_text, sign_note and open_note, alone -------------------------


def test_checkpoint_text_rules() -> None:
    root = b"\x03" * 32
    assert checkpoint.checkpoint_text("o", 0, root) == f"o\n0\n{base64.b64encode(root).decode()}\n"
    for origin in ("", "a b", "a\tb", "a+b", "+"):
        with pytest.raises(ValueError, match=r"^origin must be non-empty without spaces or '\+'$"):
            checkpoint.checkpoint_text(origin, 1, root)
    for size, bad_root in ((-1, root), (1, root[:31]), (1, root + b"\x00"), (-1, b"")):
        with pytest.raises(ValueError, match=r"^bad size or root$"):
            checkpoint.checkpoint_text("o", size, bad_root)
    with pytest.raises(ValueError, match=r"^note text must end in a newline$"):
        checkpoint.sign_note("o\n1", "o", Ed25519PrivateKey.generate())


def test_open_note_edges() -> None:
    key = Ed25519PrivateKey.generate()
    name = "camhub/abc"
    # A text of a single newline signs and opens (the signature block starts at offset 0).
    assert checkpoint.open_note(checkpoint.sign_note("\n", name, key), name, key.public_key()) == "\n"
    good = checkpoint.sign_checkpoint(name, 5, bytes(32), key)
    text = good.split("\n\n")[0] + "\n"
    # A signature of exactly 5 bytes (key ID and one byte) from another key is long enough to ignore.
    five = f"\u2014 witness.example {base64.b64encode(bytes(5)).decode()}\n"
    assert checkpoint.open_note(good + five, name, key.public_key()) == text
    four = f"\u2014 witness.example {base64.b64encode(bytes(4)).decode()}\n"
    with pytest.raises(AuditError) as info:
        checkpoint.open_note(good + four, name, key.public_key())
    assert (info.value.code, info.value.detail) == ("checkpoint_malformed", "signature too short")
    # A note must end in a newline even when its last line would otherwise be a fine signature line.
    for note in (good + five.rstrip("\n") + "x", good.rstrip("\n")):
        with pytest.raises(AuditError) as info:
            checkpoint.open_note(note, name, key.public_key())
        assert (info.value.code, info.value.detail) == ("checkpoint_malformed", "no signature block"), note


def test_checkpoint_root_and_origin_are_checked_strictly() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "camhub/abc"
    root = base64.b64encode(b"\x05" * 32).decode()
    starred = checkpoint.sign_note(f"{origin}\n5\n{root[:10]}*{root[10:]}\n", origin, key)
    with pytest.raises(AuditError) as info:
        checkpoint.parse_checkpoint(starred, key.public_key(), origin)
    assert (info.value.code, info.value.detail) == ("checkpoint_malformed", "root is not base64")
    other = checkpoint.sign_note(f"camhub/zzz\n5\n{root}\n", origin, key)
    with pytest.raises(AuditError) as info:
        checkpoint.parse_checkpoint(other, key.public_key(), origin)
    assert info.value.code == "checkpoint_wrong_origin"
    assert info.value.detail == "origin 'camhub/zzz' is not 'camhub/abc'"
