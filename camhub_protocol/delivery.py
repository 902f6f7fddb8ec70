"""The delivery container (PROTOCOL §2.3): an age-encrypted POSIX tar of clips, manifest and proof.

    <out>.age = age v1 (age-encryption.org/v1) to the agency's X25519 recipient, containing a
    POSIX.1-2001 (pax) tar with
        clip-<camera>.mp4   the approved range, stream-copied (cut elsewhere, given here as files)
        audit-proof.json    the egress.delivery audit entry + RFC 9162 inclusion proof + checkpoint
        manifest.json       RFC 8785 canonical JSON, fields exactly as on the protocol page
        manifest.jws        compact JWS over the manifest bytes, alg Ed25519, kid = hub_id

`manifest.files` lists every clip and `audit-proof.json` (so the proof is bound to the signature
too); the manifest cannot list itself or its signature.

Bounded memory and one pass: clips are never read whole, and each is read and hashed once.
The pax tar is generated on demand in the calling thread (headers from `tarfile.TarInfo.tobuf`,
the clip bytes through a 1 MiB buffer, hashed as they go; the same bytes `tarfile` "w|" writes) and
written into a pipe to the encryption worker, a process of its own: the stock `age` CLI, or where
the system has none `encrypt_worker.py` running `pyrage.encrypt_io` (rage); both write 64 KiB STREAM
chunks (`encrypt_command`). A second thread here reads the ciphertext back from the worker,
hashes it and writes it to a temp file, which is fsynced and renamed. The manifest follows the clips
in the tar, so it is built from the hashes of the bytes actually tarred; a clip that shrinks while
packed aborts the build. Peak memory is a few MiB here and ~5 MiB in the worker (~14 with pyrage),
whatever the clip size (`bench/delivery_bench.py`). Why a process: pyrage holds the GIL while it encrypts; in one
thread the build took turns between tarring, encrypting and hashing on one core (~2.5x the wall time
of `tar | age`, issue 17), and with a producer thread that thread waited for the GIL at every chunk
(~5x). All of this is blocking I/O: call it from a worker thread (`build_delivery_async` does).

The reader side (`open_delivery`) is what the reference agency client uses: decrypt with an age
identity, unpack only plain regular files with simple names, verify manifest.jws against the
hub's JWK, every listed file's hash and size, and the audit proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyrage
import rfc8785
from pyrage import x25519

from camhub_protocol import audit_verify, durable, jws
from camhub_protocol.errors import ConsentError, DeliveryError
from camhub_protocol.keys import HubKey, jwk_thumbprint, public_key_from_jwk

CONTENT_TYPE = "application/vnd.camhub.delivery+age"
MANIFEST_TYP = "camhub-manifest+jws"
CHUNK = 1024 * 1024
_WORKER = Path(__file__).with_name("encrypt_worker.py")
_WRITEBACK = 32 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CLIP_NAME = re.compile(r"clip-[A-Za-z0-9][A-Za-z0-9._-]*\.mp4")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: The caller supplies these; `v`, `hub_id`, `files`, `audit` and `created` are filled in here.
CALLER_FIELDS = (
    "request_id", "request_sha256", "approval_id", "camera", "start", "end", "audio", "segments"
)  # fmt: skip
#: Optional for the caller (absent: `null`, a stream copy); optional for the verifier (hubs before it).
REDACTION = "redaction"
MANIFEST_FIELDS = frozenset(
    {"v", "hub_id", "request_id", "request_sha256", "approval_id", "camera", "start", "end", "audio",
     "files", "segments", "redaction", "audit", "created"}
)  # fmt: skip
REDACTION_FIELDS = frozenset({"masks", "width", "height", "fill", "codec"})
#: A manifest from a hub before `audio` or `redaction` (PROTOCOL §2.3) lacks them: they read as
#: `false` and `null`.
OPTIONAL_MANIFEST_FIELDS = frozenset({"audio", REDACTION})
FIXED_NAMES = ("audit-proof.json", "manifest.json", "manifest.jws")


@dataclass(frozen=True)
class Delivery:
    """A built delivery file: what `GET <delivery url>` serves and what the poll reply lists."""

    path: Path
    bytes: int
    sha256: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class OpenedDelivery:
    """A decrypted, verified delivery unpacked into `directory`."""

    directory: Path
    manifest: dict[str, Any]
    audit_entry: dict[str, Any]


def clip_name(camera: str) -> str:
    """`clip-<camera>.mp4` (PROTOCOL §2.3)."""
    name = f"clip-{camera}.mp4"
    if not _CLIP_NAME.fullmatch(name):
        raise DeliveryError("delivery_bad_input", f"camera id {camera!r} cannot name a tar member")
    return name


def _utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _member(name: str, size: int, mtime: int) -> bytes:
    """The member's header block(s), encoded as `tarfile` does (utf-8, surrogateescape)."""
    return _tarinfo(name, size, mtime).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return tarfile.NUL * (-size % tarfile.BLOCKSIZE)


def _clip_parts(
    name: str, path: Path, mtime: int, hashes: dict[str, tuple[str, int]]
) -> Iterator[bytes | memoryview]:
    """A clip member, hashed as it is read; its (sha256, bytes) go to `hashes` at the end."""
    with path.open("rb", buffering=0) as f:
        size = _clip_size(f)
        yield _member(name, size, mtime)
        h, left, buf = hashlib.sha256(), size, bytearray(CHUNK)
        view = memoryview(buf)
        while left:
            n = f.readinto(view[: min(CHUNK, left)])
            if not n:
                raise DeliveryError("delivery_source_changed", f"{path} shrank while packing", 500)
            h.update(view[:n])
            left -= n
            yield view[:n]
        yield _padding(size)
    hashes[name] = (h.hexdigest(), size)


def _clip_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uname = info.gname = ""
    return info


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_redaction(value: Any) -> bool:
    """PROTOCOL §2.3: `{"masks": [[[x, y], …]], "width", "height", "fill": "black", "codec": "h264"}`."""
    if not isinstance(value, dict) or set(value) != REDACTION_FIELDS:
        return False
    if value["fill"] != "black" or value["codec"] != "h264":
        return False
    if not (_int(value["width"]) and _int(value["height"]) and isinstance(value["masks"], list)):
        return False
    return all(
        isinstance(poly, list)
        and len(poly) >= 3
        and all(isinstance(pt, list) and len(pt) == 2 and all(_int(c) for c in pt) for pt in poly)
        for poly in value["masks"]
    )


def _manifest(
    hub_id: str,
    fields: Mapping[str, Any],
    files: list[dict[str, Any]],
    proof: Mapping[str, Any],
    created: str,
) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(CALLER_FIELDS) - {REDACTION})
    missing = [k for k in CALLER_FIELDS if k not in fields]
    if unknown or missing:
        raise DeliveryError("delivery_bad_input", f"manifest fields: unknown {unknown}, missing {missing}")
    if not isinstance(fields["segments"], list) or not all(
        isinstance(s, dict) and set(s) == {"start", "end", "sha256"} for s in fields["segments"]
    ):
        raise DeliveryError("delivery_bad_input", 'segments must be [{"start", "end", "sha256"}]')
    redaction = fields.get(REDACTION)
    if redaction is not None and not _valid_redaction(redaction):
        raise DeliveryError("delivery_bad_input", "redaction must be null or PROTOCOL §2.3's object")
    if not isinstance(fields["audio"], bool):
        raise DeliveryError("delivery_bad_input", "audio must be true or false (the approval's scope.audio)")
    seq, entry_hash = proof.get("seq"), proof.get("entry_hash")
    if not isinstance(seq, int) or not isinstance(entry_hash, str) or proof.get("hub_id") != hub_id:
        raise DeliveryError("delivery_bad_input", "audit proof is not a proof_bundle() of this hub")
    manifest = {
        "v": 1,
        "hub_id": hub_id,
        **{k: fields[k] for k in CALLER_FIELDS if k != "segments"},
        "files": files,
        "segments": fields["segments"],
        "redaction": redaction,
        "audit": {"seq": seq, "entry_hash": entry_hash},
        "created": created,
    }
    return manifest


def build_delivery(
    *,
    clips: Mapping[str, Path],
    manifest_fields: Mapping[str, Any],
    audit_proof: Mapping[str, Any],
    hub_key: HubKey,
    recipient: str,
    out_path: Path,
    created: str | None = None,
) -> Delivery:
    """Build the encrypted delivery at `out_path` (atomically) and return its size and SHA-256.

    `clips` maps tar member names (`clip_name(camera)`) to mp4 files already cut on disk;
    `manifest_fields` holds CALLER_FIELDS; `audit_proof` is `AuditLog.proof_bundle(seq)`.
    """
    try:
        x25519.Recipient.from_str(recipient)  # the worker parses it again; fail here with our code
    except Exception as exc:  # pyrage raises its own RecipientError; any failure means a bad recipient
        raise DeliveryError("delivery_bad_recipient", "not an age X25519 recipient (age1...)") from exc
    for name in clips:
        if not _CLIP_NAME.fullmatch(name):
            raise DeliveryError("delivery_bad_input", f"clip member name {name!r} is not clip-<camera>.mp4")
    if not clips:
        raise DeliveryError("delivery_bad_input", "a delivery needs at least one clip")

    proof_bytes = json.dumps(audit_proof, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    proof_file = {
        "name": "audit-proof.json",
        "sha256": hashlib.sha256(proof_bytes).hexdigest(),
        "bytes": len(proof_bytes),
    }
    created = created or _utc_now()
    # Bad caller fields fail now, before any clip is read (the real manifest is made after them).
    _manifest(hub_key.hub_id, manifest_fields, [proof_file], audit_proof, created)
    mtime = int(datetime.now(UTC).timestamp())
    hashes: dict[str, tuple[str, int]] = {}
    built: dict[str, Any] = {}

    def members() -> Iterator[bytes | memoryview]:
        for name, path in clips.items():
            yield from _clip_parts(name, path, mtime, hashes)
        # The manifest comes after the clips: it lists the hashes of the bytes just tarred.
        files = [{"name": n, "sha256": hashes[n][0], "bytes": hashes[n][1]} for n in clips]
        manifest = _manifest(hub_key.hub_id, manifest_fields, [*files, proof_file], audit_proof, created)
        manifest_bytes = rfc8785.dumps(manifest)
        manifest_jws = jws.sign(manifest_bytes, hub_key.private_key, hub_key.hub_id, MANIFEST_TYP)
        built["manifest"] = manifest
        for name, data in (
            ("audit-proof.json", proof_bytes),
            ("manifest.json", manifest_bytes),
            ("manifest.jws", manifest_jws.encode("ascii")),
        ):
            yield _member(name, len(data), mtime)
            yield data
            yield _padding(len(data))
        yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end of archive: two zero blocks

    def tar_parts() -> Iterator[bytes | memoryview]:
        size = 0
        for piece in members():
            size += len(piece)
            yield piece
        yield tarfile.NUL * (-size % tarfile.RECORDSIZE)  # then zeros to a whole record (TarFile.close)

    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with tmp_path.open("wb") as out:
            sha, size = _encrypt(tar_parts(), recipient, out)
            os.fsync(out.fileno())
        durable.replace(tmp_path, out_path)  # the DB row that follows points at this name
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return Delivery(out_path, size, sha, built["manifest"])


def encrypt_command(recipient: str) -> list[str]:
    """The encryption worker's command line.

    The stock `age` CLI where the system has it (Debian's `age`, the format's reference
    implementation; the installer adds it): it encrypts a pipe with about a third less CPU than
    pyrage, which reads through a Python file object 8 KiB at a time (858 MiB: 0.76 s of CPU
    against 1.09 s, median of 6 alternated runs). Looked up in the system's directories only
    (`os.defpath`), never the caller's PATH. Otherwise this interpreter, isolated, running
    encrypt_worker.py by path. Both write age v1 to one X25519 recipient, which was parsed before
    (`age1...`), so it cannot be taken for an option.
    """
    age = _stock_age()
    if age is not None:
        return [age, "--recipient", recipient]
    return [sys.executable, "-I", str(_WORKER), recipient]


def _stock_age() -> str | None:
    return shutil.which("age", path=os.defpath)


def _encrypt(parts: Iterator[bytes | memoryview], recipient: str, out: BinaryIO) -> tuple[str, int]:
    """Pipe the tar through the encryption worker (its own process, `encrypt_command`) and write the
    age file to `out`.

    Three things run at once, as `tar | age > file` would: this thread generates the tar (clip reads
    and their SHA-256) into the worker's stdin; the worker encrypts; a reader thread here takes the
    ciphertext from the worker's stdout, hashes it and writes it to `out`. Pipe I/O, hashing and file
    writes release the GIL, so the two threads here do not wait for each other. Returns (sha256 hex,
    bytes) of the age file. A failure anywhere kills the worker and leaves `out` to the caller.
    """
    worker = subprocess.Popen(
        encrypt_command(recipient),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, close_fds=True,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None and worker.stderr is not None
    for end in (worker.stdin, worker.stdout):
        # 1 MiB pipes (Linux's default limit for a process; 64 KiB otherwise): the three stages hand
        # over whole chunks instead of waking each other every 64 KiB.
        with contextlib.suppress(OSError):
            fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)
    sink = _Sink(worker.stdout.fileno(), out, on_error=worker.kill)
    reader = threading.Thread(target=sink.run, name="delivery-ciphertext", daemon=True)
    reader.start()
    pipe = worker.stdin.fileno()
    try:
        try:
            for piece in parts:
                view = memoryview(piece).cast("B")
                while view:
                    view = view[os.write(pipe, view) :]
        except BrokenPipeError:
            pass  # the worker stopped reading: its exit status, or the sink's error, says why (below)
        except ConsentError:
            raise  # a clip that changed while packed: its own code
        except Exception as exc:  # reading a clip failed
            raise DeliveryError("delivery_failed", f"packing failed: {exc}", 500) from exc
        worker.stdin.close()
        reader.join()
        # stderr holds at most the worker's last words; read once its output ended, so no deadlock.
        said = worker.stderr.read(64 * 1024).decode("utf-8", "replace").strip()
        code = worker.wait()
    except BaseException:
        worker.kill()
        worker.wait()
        reader.join()
        raise
    finally:
        for f in (worker.stdin, worker.stdout, worker.stderr):
            f.close()
    if sink.error is not None:
        raise DeliveryError("delivery_failed", f"packing failed: {sink.error}", 500) from sink.error
    if code != 0:
        reason = said.splitlines()[-1] if said else f"encryptor exit {code}"
        raise DeliveryError("delivery_failed", f"packing failed: {reason}", 500)
    return sink.sha.hexdigest(), sink.count


class _Sink:
    """The reader thread's side of `_encrypt`: ciphertext from the worker, hashed, into the file.

    The file is written with O_DIRECT where the filesystem allows it: whole 1 MiB blocks from a
    page-aligned buffer go to the disk without a copy into the page cache, and the fsync at the end
    has nothing left to write back. Measured alone on this project's box (858 MiB): 0.05 s of CPU
    and 0.5 s of wall time, against 0.18-1.6 s of CPU for buffered writes plus a 0.4 s fsync; the
    delivery as a whole, see bench/delivery_bench.py. The tail (under a block) is written after
    O_DIRECT is turned off again. Where the filesystem refuses it (tmpfs) the file is written as
    before: buffered, its writeback started every `_WRITEBACK` bytes so that the fsync at the end
    waits for the tail only.
    """

    def __init__(self, fd: int, out: BinaryIO, on_error: Callable[[], None]) -> None:
        self._fd = fd
        # Written by descriptor, past `out`'s buffer: nothing is left in it for close() to fail on.
        self._out = out.fileno()
        self._on_error = on_error
        self.sha = hashlib.sha256()
        self.count = 0
        self._flushed = 0
        self._direct = _set_direct(self._out, True)
        self.error: OSError | None = None

    def run(self) -> None:
        buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT needs
        view = memoryview(buf)
        filled = 0
        try:
            while n := os.readv(self._fd, [view[filled:]]):
                self.sha.update(view[filled : filled + n])
                filled += n
                self.count += n
                if filled == CHUNK or not self._direct:
                    self._write(view[:filled])
                    filled = 0
            if self._direct:
                self._direct = not _set_direct(self._out, False)
            self._write(view[:filled])
        except OSError as exc:
            # A full disk: stop the worker (it would block on a full pipe, and the tar producer
            # behind it); the producer then meets a broken pipe and reports this error.
            self.error = exc
            self._on_error()

    def _write(self, chunk: memoryview) -> None:
        while chunk:
            try:
                chunk = chunk[os.write(self._out, chunk) :]
            except OSError as exc:
                # A short write left the rest unaligned for O_DIRECT (EINVAL): go on buffered.
                if exc.errno != errno.EINVAL or not self._direct:
                    raise
                self._direct = not _set_direct(self._out, False)
                if self._direct:
                    raise
        if not self._direct and self.count - self._flushed >= _WRITEBACK:
            # Start writing back what is written so far, without waiting for it: the fsync at the end
            # then waits for the last few MiB, not the whole file.
            with contextlib.suppress(OSError):  # only advice: a filesystem may refuse it
                os.posix_fadvise(self._out, self._flushed, 0, os.POSIX_FADV_DONTNEED)
            self._flushed = self.count


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for `fd`; False where the filesystem does not allow it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return True


async def build_delivery_async(**kwargs: Any) -> Delivery:
    """`build_delivery` in a worker thread, so the event loop never blocks on hashing or I/O."""
    return await asyncio.to_thread(lambda: build_delivery(**kwargs))


# ---- reader side (reference agency client) ----


def _decrypt_to(path: Path, identity: str, dest: BinaryIO) -> None:
    try:
        ident = x25519.Identity.from_str(identity.strip())
    except Exception as exc:
        raise DeliveryError("delivery_bad_identity", "not an age X25519 identity") from exc
    with path.open("rb") as src:
        try:
            pyrage.decrypt_io(src, dest, [ident])
        except Exception as exc:  # pyrage.DecryptError and I/O failures alike
            raise DeliveryError("delivery_decrypt_failed", f"age decryption failed: {exc}") from exc


def _unpack(tar_path: Path, directory: Path) -> dict[str, tuple[str, int]]:
    """Extract regular files with simple names only; returns name -> (sha256, bytes)."""
    found: dict[str, tuple[str, int]] = {}
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                if not member.isreg() or not _NAME.fullmatch(member.name) or member.name in found:
                    raise DeliveryError("delivery_malformed", f"unexpected tar member {member.name!r}")
                src = tar.extractfile(member)
                if src is None:
                    raise DeliveryError("delivery_malformed", f"unreadable member {member.name!r}")
                h, n = hashlib.sha256(), 0
                fd = os.open(directory / member.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        n += len(chunk)
                        out.write(chunk)
                found[member.name] = (h.hexdigest(), n)
    except tarfile.TarError as exc:
        raise DeliveryError("delivery_malformed", f"not a tar archive: {exc}") from exc
    return found


def verify_unpacked(
    directory: Path, found: Mapping[str, tuple[str, int]], hub_jwk: dict[str, Any]
) -> OpenedDelivery:
    """Check manifest.jws (hub key, kid = hub_id), every listed file and the audit proof."""
    for name in ("manifest.json", "manifest.jws", "audit-proof.json"):
        if name not in found:
            raise DeliveryError("delivery_missing_file", f"{name} is missing")
    try:
        hub_key = public_key_from_jwk(hub_jwk)
        hub_id = jwk_thumbprint(hub_jwk)
    except ValueError as exc:
        raise DeliveryError("delivery_bad_input", "hub key is not an Ed25519 JWK") from exc
    try:
        parsed = jws.parse((directory / "manifest.jws").read_text("ascii").strip())
        # The page fixes only alg and kid; a typ, when present, must be ours (RFC 8725 §3.11).
        if parsed.header.get("typ", MANIFEST_TYP) != MANIFEST_TYP:
            raise DeliveryError("delivery_bad_signature", "manifest.jws has a foreign typ")
        if parsed.kid != hub_id:
            raise DeliveryError("delivery_bad_signature", "manifest.jws kid is not this hub's id")
        payload = jws.verify(parsed, hub_key)
        manifest = jws.decode_json(payload, "manifest")
    except (jws.JWSError, UnicodeDecodeError) as exc:
        raise DeliveryError("delivery_bad_signature", f"manifest.jws does not verify: {exc}") from exc
    if (directory / "manifest.json").read_bytes() != payload:
        raise DeliveryError("delivery_bad_signature", "manifest.json differs from the signed manifest")
    if (
        not isinstance(manifest, dict)
        or set(manifest) | OPTIONAL_MANIFEST_FIELDS != MANIFEST_FIELDS
        or manifest["v"] != 1
    ):
        raise DeliveryError("delivery_bad_manifest", "manifest fields differ from PROTOCOL §2.3")
    if not isinstance(manifest.get("audio", False), bool):
        raise DeliveryError("delivery_bad_manifest", "manifest audio must be true or false")
    if manifest.get(REDACTION) is not None and not _valid_redaction(manifest[REDACTION]):
        raise DeliveryError("delivery_bad_manifest", "redaction differs from PROTOCOL §2.3")
    if manifest["hub_id"] != hub_id:
        raise DeliveryError("delivery_bad_manifest", "manifest hub_id is not this hub")
    listed: dict[str, dict[str, Any]] = {}
    if not isinstance(manifest["files"], list):
        raise DeliveryError("delivery_bad_manifest", "files must be a list")
    for f in manifest["files"]:
        if not isinstance(f, dict) or set(f) != {"name", "sha256", "bytes"} or f["name"] in listed:
            raise DeliveryError("delivery_bad_manifest", "bad files entry")
        listed[f["name"]] = f
    extra = set(found) - set(listed) - set(FIXED_NAMES)
    if extra:
        raise DeliveryError("delivery_unexpected_file", f"files not in the manifest: {sorted(extra)}")
    for name, f in listed.items():
        if name not in found:
            raise DeliveryError("delivery_missing_file", f"{name} is listed but missing")
        if found[name] != (f["sha256"], f["bytes"]):
            raise DeliveryError("delivery_hash_mismatch", f"{name} does not match its manifest hash")
    if "audit-proof.json" not in listed:
        raise DeliveryError("delivery_bad_manifest", "audit-proof.json is not covered by the manifest")
    try:
        bundle = json.loads((directory / "audit-proof.json").read_text("utf-8"))
        entry = audit_verify.verify_proof_bundle(bundle, hub_jwk)
    except (audit_verify.VerifyError, ValueError) as exc:
        raise DeliveryError("delivery_bad_audit_proof", f"audit proof does not verify: {exc}") from exc
    if manifest["audit"] != {"seq": bundle["seq"], "entry_hash": bundle["entry_hash"]}:
        raise DeliveryError("delivery_bad_audit_proof", "manifest.audit does not name the proven entry")
    return OpenedDelivery(directory, manifest, entry)


def open_delivery(path: Path, identity: str, hub_jwk: dict[str, Any], directory: Path) -> OpenedDelivery:
    """Decrypt (age identity `AGE-SECRET-KEY-1...`), unpack into the empty `directory`, verify."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise DeliveryError("delivery_bad_input", f"{directory} is not empty")
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".delivery-", suffix=".tar") as tmp:
        _decrypt_to(path, identity, tmp)  # type: ignore[arg-type]
        tmp.flush()
        found = _unpack(Path(tmp.name), directory)
    return verify_unpacked(directory, found, hub_jwk)


def verify_tar(tar_path: Path, hub_jwk: dict[str, Any], directory: Path) -> OpenedDelivery:
    """Verify a tar someone already decrypted (e.g. with the stock `age -d`)."""
    directory.mkdir(parents=True, exist_ok=True)
    return verify_unpacked(directory, _unpack(tar_path, directory), hub_jwk)
