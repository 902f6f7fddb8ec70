"""Encryption at rest (`[storage] encrypt = true`): footage and thumbnails sealed on disk.

Every read or write of a segment or thumbnail goes through `AtRest` here, so plain and sealed files
(a directory where encryption was turned on later) are told apart in one place, by the magic.

Keys. One random 256-bit **storage key** per hub, kept in `keys/storage.key` wrapped (AES key wrap,
RFC 3394) under a key-encryption key derived with HKDF-SHA256 (RFC 5869) from the hub's Ed25519
private key (`camhub_protocol/keys.py`). The wrapped key stays with the footage; the hub key can live off
the card (`[hub] key_file`, e.g. a systemd credential): a card without the hub key is ciphertext only.
If the hub key is on the same card, a thief has both — the README says so.

File format (version 1), a streaming AEAD in the shape of Tink's AES-GCM-HKDF streaming and age's
STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
Misuse-Resistance", CRYPTO 2015):

    header  = "CAMHSEAL" | version (1) | key id (8) | salt (32) | nonce prefix (7)        56 bytes
    record  = length (4, big-endian, of the ciphertext incl. tag) | AES-256-GCM ciphertext+tag
    file    = header | record* | final record (last flag set, may be empty)

* File key = HKDF-SHA256(storage key, salt, "camhub sealed v1 file key"): a fresh key per file, so
  the 56-bit nonce prefix never has to be unique across files (GCM's birthday bound applies per key).
* Record i's nonce = prefix | i (4 bytes, big-endian) | last (1 byte, 0 or 1); its AAD is the whole
  header. So a record moved (reordered), dropped, altered or taken from another file fails its tag;
  a header edit fails every tag; a file cut at a record boundary lacks the last-flagged record.
* The writer seals each write it gets: with PyAV writing through `SealedWriter` and `flush_packets`,
  that is what the muxer handed over after each packet — the same bytes a plaintext recording would
  have in the page cache at that point, so a crash loses no more (`salvage` keeps every complete
  record; recovery then cuts at the last complete fMP4 fragment). PyAV's I/O buffer (32 KiB) bounds
  a record; making it 1 MiB (a record per fragment) measured slower, the large buffers falling out
  of cache (bench/encrypt_bench.py).

Errors are typed (`SealedError` and subclasses, each with a stable `code`): truncated, tampered
(any tag failure, reordering, trailing data), wrong key (key id or unwrap mismatch), no key.

The index's sha256 is of the **plaintext**: it names the footage, not how it is stored, so a consent
manifest's segment hashes do not change with at-rest settings, and checking it (clip export) also
checks the decryption. `bytes` in the index stays the size on disk, which is what retention counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from camhub_protocol.keys import b64url, b64url_decode, write_secret

MAGIC = b"CAMHSEAL"
VERSION = 1
_HEADER = struct.Struct(">8sB8s32s7s")
HEADER_SIZE = _HEADER.size  # 56
_LENGTH = struct.Struct(">I")
TAG_SIZE = 16
# Plaintext per record at most; bigger writes are split. Bounds what a reader allocates for one record.
MAX_RECORD = 1 << 20
_MAX_RECORDS = 1 << 32  # the counter is 4 bytes
STORAGE_KEY_FILE = "storage.key"
_FILE_KEY_INFO = b"camhub sealed v1 file key"
_KEK_INFO = b"camhub storage kek v1"
_KEY_ID_PREFIX = b"camhub storage key id\x00"


class SealedError(Exception):
    """A sealed file cannot be opened; `code` is stable for logs and API errors."""

    code = "sealed"


class SealedTruncated(SealedError):
    code = "sealed_truncated"


class SealedTampered(SealedError):
    code = "sealed_tampered"


class WrongStorageKey(SealedError):
    code = "sealed_wrong_key"


class NoStorageKey(SealedError):
    code = "sealed_no_key"


# sha256_file's read size: under glibc's mmap threshold as the daemon fixes it (128 KiB,
# hub/daemon.py tune_malloc), so the buffer comes from malloc's heap and is reused there.
_HASH_CHUNK = 64 * 1024


def sha256_file(f: BinaryIO) -> hashlib._Hash:
    """SHA-256 of the rest of `f`, read into one buffer. A fresh 1 MiB bytes per read cost more than the
    hash itself (0.96 against 0.61 ms per MB, mostly page faults), once per segment; and
    hashlib.file_digest's 256 KiB buffer is past the daemon's mmap threshold, so it would be a fresh
    mapping, 64 page faults and an munmap each time."""
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    sha = hashlib.sha256()
    while n := f.readinto(buf):
        sha.update(view[:n])
    return sha


@dataclass(frozen=True)
class StorageKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise ValueError("a storage key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        """Names the key in each file header (so a wrong key is told from tampering)."""
        return hashlib.sha256(_KEY_ID_PREFIX + self.secret).digest()[:8]

    @classmethod
    def generate(cls) -> StorageKey:
        return cls(os.urandom(32))


def _file_aead(key: StorageKey, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_FILE_KEY_INFO)
    return AESGCM(hkdf.derive(key.secret))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _is_sealed_head(head: bytes) -> bool:
    return head[: len(MAGIC)] == MAGIC


# ------------------------------------------------------------------------------------------------
# Writing


class SealedWriter:
    """A write-only, non-seekable binary file that seals every write as one or more records.

    Hand it to `av.open(writer, "w", ...)`: PyAV sees no `seek`, so the muxer streams (fragmented MP4
    needs no seeking), and calls `close()` when the container closes, which writes the final record.
    """

    def __init__(self, path: str | Path, key: StorageKey) -> None:
        salt, prefix = os.urandom(32), os.urandom(7)
        self._header = _HEADER.pack(MAGIC, VERSION, key.key_id, salt, prefix)
        self._aead = _file_aead(key, salt)
        self._prefix = prefix
        self._counter = 0
        self.path = path
        self.plaintext_bytes = 0
        # Unbuffered: each record reaches the kernel in one write, as the plaintext muxer's would.
        self._f: BinaryIO | None = open(path, "wb", buffering=0)  # closed in close()
        self._put(self._header)

    def _put(self, data: bytes) -> None:
        assert self._f is not None
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            view = view[n or 0 :]

    def _seal(self, chunk: bytes | memoryview, last: bool) -> None:
        if self._counter >= _MAX_RECORDS:
            raise SealedError(f"{os.path.basename(self.path)}: too many records for one file")
        ct = self._aead.encrypt(_nonce(self._prefix, self._counter, last), bytes(chunk), self._header)
        self._counter += 1
        self._put(_LENGTH.pack(len(ct)) + ct)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._f is None:
            raise ValueError("write to a closed SealedWriter")
        view = memoryview(data).cast("B")
        for start in range(0, len(view), MAX_RECORD):
            self._seal(view[start : start + MAX_RECORD], last=False)
        self.plaintext_bytes += len(view)
        return len(view)

    def flush(self) -> None:
        pass  # every write is already in the kernel

    def fileno(self) -> int:
        assert self._f is not None
        return self._f.fileno()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._f is None

    def close(self, *, fsync: bool = False) -> None:
        """Write the last-flagged (empty) record and close (after an fsync if asked); idempotent."""
        if self._f is None:
            return
        try:
            self._seal(b"", last=True)
            if fsync:
                os.fsync(self._f.fileno())
        finally:
            f, self._f = self._f, None
            f.close()

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# Reading


def _read_exact(f: BinaryIO, n: int) -> bytes:
    out = f.read(n)
    return out if out is not None else b""


def read_records(f: BinaryIO, key: StorageKey | None, *, strict: bool = True) -> Iterator[bytes]:
    """Yield each record's plaintext, in order.

    strict: the file must end with the last-flagged record and nothing after it; otherwise
    `SealedTruncated` / `SealedTampered`. Not strict (recovery): stop quietly at the first record
    that is incomplete or fails, having yielded every complete one before it. A wrong or missing key
    raises in both modes (nothing can be salvaged without it).
    """
    header = _read_exact(f, HEADER_SIZE)
    if not _is_sealed_head(header):
        raise SealedError("not a sealed file")
    if len(header) < HEADER_SIZE:
        if strict:
            raise SealedTruncated("sealed file shorter than its header")
        return
    _magic, version, key_id, salt, prefix = _HEADER.unpack(header)
    if version != VERSION:
        raise SealedError(f"sealed file version {version} is not supported")
    if key is None:
        raise NoStorageKey("footage is sealed but this hub has no storage key (keys/storage.key)")
    if key_id != key.key_id:
        raise WrongStorageKey("footage was sealed under a different storage key")
    aead = _file_aead(key, salt)
    counter = 0
    while True:
        raw_len = _read_exact(f, _LENGTH.size)
        if len(raw_len) < _LENGTH.size:
            if strict:
                raise SealedTruncated(f"sealed file ends after {counter} records without the final one")
            return
        (n,) = _LENGTH.unpack(raw_len)
        if not TAG_SIZE <= n <= MAX_RECORD + TAG_SIZE:
            if strict:
                raise SealedTampered(f"record {counter} has an impossible length {n}")
            return
        ct = _read_exact(f, n)
        if len(ct) < n:
            if strict:
                raise SealedTruncated(f"record {counter} is cut short")
            return
        plain: bytes | None = None
        last = False
        for last in (False, True):
            try:
                plain = aead.decrypt(_nonce(prefix, counter, last), ct, header)
                break
            except InvalidTag:
                continue
        if plain is None:
            if strict:
                raise SealedTampered(f"record {counter} fails authentication (altered, moved or foreign)")
            return
        counter += 1
        yield plain
        if last:
            if strict and _read_exact(f, 1):
                raise SealedTampered("data after the final record")
            return


# ------------------------------------------------------------------------------------------------
# The one place callers go through


@dataclass(frozen=True)
class AtRest:
    """How this hub stores footage: `key` to open sealed files, `seal` to write new ones sealed.

    `AtRest()` (no key, not sealing) reads and writes plain files and refuses sealed ones with
    `NoStorageKey` — the default where no hub key is at hand.
    """

    key: StorageKey | None = None
    seal: bool = False

    def __post_init__(self) -> None:
        if self.seal and self.key is None:
            raise ValueError("sealing needs a storage key")

    @staticmethod
    def is_sealed(path: Path) -> bool:
        with open(path, "rb") as f:
            return _is_sealed_head(f.read(len(MAGIC)))

    def writer(self, path: str | Path) -> SealedWriter:
        """A new sealed file at `path` (only when sealing; callers keep their plain path otherwise)."""
        assert self.key is not None and self.seal
        return SealedWriter(path, self.key)

    def read_file(self, path: Path) -> bytes:
        """The whole plaintext of a plain or sealed file, authenticated. Raises SealedError."""
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
            f.seek(0)
            if not _is_sealed_head(head):
                return f.read()
            return b"".join(read_records(f, self.key))

    def media(self, path: Path) -> str | io.BytesIO:
        """What to give `av.open` to read `path`: its name if plain, the plaintext in memory if sealed
        (a segment is a few seconds; decrypting it whole keeps PyAV's seeking working)."""
        if not self.is_sealed(path):
            return str(path)
        return io.BytesIO(self.read_file(path))

    def digest(self, path: str | Path) -> tuple[int, str]:
        """(size on disk, sha256 hex of the plaintext), read in bounded memory."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if _is_sealed_head(f.read(len(MAGIC))):
                f.seek(0)
                sha = hashlib.sha256()
                for record in read_records(f, self.key):
                    sha.update(record)
            else:
                f.seek(0)
                sha = sha256_file(f)
        return size, sha.hexdigest()

    def salvage(self, path: Path) -> bytes:
        """The plaintext of every complete record of a sealed file a crash may have cut short."""
        with open(path, "rb") as f:
            return b"".join(read_records(f, self.key, strict=False))

    def write_file(self, path: Path, data: bytes, *, sealed: bool | None = None) -> None:
        """Store `data` durably at `path`: temp file, fsync, rename, fsync the directory.

        Sealed if this hub seals (or `sealed=True`, e.g. rewriting a salvaged sealed file)."""
        seal = self.seal if sealed is None else sealed
        tmp = path.with_name(path.name + ".tmp")
        if seal:
            if self.key is None:
                raise NoStorageKey("cannot seal without a storage key")
            w = SealedWriter(tmp, self.key)
            try:
                w.write(data)
            finally:
                w.close(fsync=True)  # the final record too: a file without it reads as truncated
        else:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------
# The storage key, wrapped under the hub key


def _kek(hub_private_key: Ed25519PrivateKey) -> bytes:
    raw = hub_private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO).derive(raw)


def wrap_storage_key(key: StorageKey, hub_private_key: Ed25519PrivateKey, hub_id: str) -> bytes:
    doc = {
        "version": 1,
        "alg": "A256KW",  # RFC 3394 AES key wrap
        "kek": "HKDF-SHA256(hub Ed25519 private key, info='camhub storage kek v1')",
        "hub_id": hub_id,
        "key_id": b64url(key.key_id),
        "wrapped": b64url(aes_key_wrap(_kek(hub_private_key), key.secret)),
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def unwrap_storage_key(data: bytes, hub_private_key: Ed25519PrivateKey, hub_id: str) -> StorageKey:
    try:
        doc = json.loads(data)
        wrapped = b64url_decode(doc["wrapped"])
        if doc.get("version") != 1 or doc.get("alg") != "A256KW":
            raise ValueError("unknown version or algorithm")
    except (ValueError, KeyError, TypeError) as exc:
        raise SealedError(f"{STORAGE_KEY_FILE} is malformed: {exc}") from exc
    try:
        return StorageKey(aes_key_unwrap(_kek(hub_private_key), wrapped))
    except (InvalidUnwrap, ValueError) as exc:
        raise WrongStorageKey(
            f"{STORAGE_KEY_FILE} was wrapped by hub {doc.get('hub_id')!r}, not by this hub key ({hub_id});"
            " sealed footage cannot be opened without the original hub key"
        ) from exc


def load_at_rest(keys_dir: Path, hub_private_key: Ed25519PrivateKey, hub_id: str, *, encrypt: bool) -> AtRest:
    """Unwrap `keys_dir/storage.key` if present (so sealed footage stays readable after `encrypt`
    is turned off); create it when `encrypt` is on and there is none. Raises SealedError."""
    path = keys_dir / STORAGE_KEY_FILE
    if path.exists():
        key: StorageKey | None = unwrap_storage_key(path.read_bytes(), hub_private_key, hub_id)
    elif encrypt:
        key = StorageKey.generate()
        write_secret(path, wrap_storage_key(key, hub_private_key, hub_id))
    else:
        key = None
    return AtRest(key=key, seal=encrypt)


def reader_at_rest(keys_dir: Path, hub_key_path: Path) -> AtRest:
    """For tools beside the daemon (`camhub export`): open sealed footage, never create a key."""
    from camhub_protocol.keys import HubKey

    wrapped = keys_dir / STORAGE_KEY_FILE
    if not wrapped.exists():
        return AtRest()
    if not hub_key_path.exists():
        raise NoStorageKey(f"footage is sealed and the hub key {hub_key_path} is not there to open it")
    hub_key, _ = HubKey.load_or_create_at(hub_key_path)
    return load_at_rest(keys_dir, hub_key.private_key, hub_key.hub_id, encrypt=False)
