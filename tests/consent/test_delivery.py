"""Delivery containers (PROTOCOL §2.3): built from a real mp4, opened by the stock `age` and by pyrage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from pyrage import x25519

from camhub_protocol import delivery
from camhub_protocol.errors import DeliveryError
from camhub_protocol.keys import HubKey
from hub.consent.audit import AuditLog
from hub.store import Store

AGE = shutil.which("age")


def make_mp4(path: Path, seconds: int = 2, fps: int = 10) -> None:
    """A small real H.264 mp4 (libx264 via PyAV), one keyframe per second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = fps
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            img = np.full((48, 64, 3), (i * 7) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    (tmp_path / "keys").mkdir()
    hub_key = HubKey.load_or_create(tmp_path / "keys")[0]
    store = await Store.open(tmp_path / "hub.db")
    try:
        log = await AuditLog.open(store, hub_key)
        await log.append("decision.accepted", "owner:k1", {"request_id": "r1"})
        seq, _ = await log.append(
            "egress.delivery", "agency:a1", {"request_id": "r1", "camera": "front-door"}
        )
        await log.checkpoint()
        proof = await log.proof_bundle(seq)
        clip = tmp_path / "cut.mp4"
        make_mp4(clip)
        identity = x25519.Identity.generate()
        yield {
            "hub_key": hub_key,
            "proof": proof,
            "clip": clip,
            "identity": identity,
            "tmp": tmp_path,
        }
    finally:
        await store.close()


FIELDS = {
    "request_id": "r1",
    "request_sha256": "ab" * 32,
    "approval_id": "d1",
    "camera": "front-door",
    "start": "2026-11-20T18:00:00Z",
    "end": "2026-11-20T18:00:30Z",
    "audio": False,
    "segments": [{"start": "2026-11-20T17:59:58Z", "end": "2026-11-20T18:00:32Z", "sha256": "cd" * 32}],
}


def build(env: dict[str, Any], out: Path | None = None, **overrides: Any) -> delivery.Delivery:
    kwargs: dict[str, Any] = {
        "clips": {delivery.clip_name("front-door"): env["clip"]},
        "manifest_fields": FIELDS,
        "audit_proof": env["proof"],
        "hub_key": env["hub_key"],
        "recipient": str(env["identity"].to_public()),
        "out_path": out or env["tmp"] / "delivery.age",
        "created": "2026-11-21T09:00:00Z",
    }
    kwargs.update(overrides)
    return delivery.build_delivery(**kwargs)


def test_manifest_fields_exactly_as_the_page(env: dict[str, Any]) -> None:
    d = build(env)
    assert list(d.manifest) == [
        "v", "hub_id", "request_id", "request_sha256", "approval_id", "camera", "start", "end",
        "audio", "files", "segments", "redaction", "audit", "created",
    ]  # fmt: skip
    assert d.manifest["redaction"] is None  # a stream copy (no privacy masks)
    assert d.manifest["hub_id"] == env["hub_key"].hub_id
    assert d.manifest["audit"] == {"seq": env["proof"]["seq"], "entry_hash": env["proof"]["entry_hash"]}
    clip_bytes = env["clip"].read_bytes()
    assert d.manifest["files"][0] == {
        "name": "clip-front-door.mp4",
        "sha256": hashlib.sha256(clip_bytes).hexdigest(),
        "bytes": len(clip_bytes),
    }
    data = d.path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    assert (d.bytes, d.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert not list(env["tmp"].glob(".delivery.age.*"))  # temp file renamed away


@pytest.mark.skipif(AGE is None, reason="Debian package `age` not installed")
def test_stock_age_cli_decrypts_and_manifest_verifies(env: dict[str, Any]) -> None:
    d = build(env)
    ident = env["tmp"] / "identity.txt"
    ident.write_text(str(env["identity"]) + "\n")
    tar_path = env["tmp"] / "out.tar"
    subprocess.run([AGE, "-d", "-i", str(ident), "-o", str(tar_path), str(d.path)], check=True, timeout=30)
    with tarfile.open(tar_path) as tar:
        assert tar.getnames() == ["clip-front-door.mp4", "audit-proof.json", "manifest.json", "manifest.jws"]
    opened = delivery.verify_tar(tar_path, env["hub_key"].public_jwk, env["tmp"] / "unpacked")
    assert opened.manifest == d.manifest
    assert opened.audit_entry["type"] == "egress.delivery"
    with av.open(str(env["tmp"] / "unpacked" / "clip-front-door.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.demux(video=0)) >= 20


def test_pyrage_reader_opens_and_verifies(env: dict[str, Any]) -> None:
    d = build(env)
    opened = delivery.open_delivery(d.path, str(env["identity"]), env["hub_key"].public_jwk, env["tmp"] / "o")
    assert (opened.directory / "clip-front-door.mp4").read_bytes() == env["clip"].read_bytes()
    assert opened.manifest["request_id"] == "r1"


def test_wrong_identity_cannot_decrypt(env: dict[str, Any]) -> None:
    d = build(env)
    with pytest.raises(DeliveryError) as exc:
        delivery.open_delivery(
            d.path, str(x25519.Identity.generate()), env["hub_key"].public_jwk, env["tmp"] / "o"
        )
    assert exc.value.code == "delivery_decrypt_failed"


def test_wrong_hub_key_refused(env: dict[str, Any], tmp_path: Path) -> None:
    d = build(env)
    (tmp_path / "other").mkdir()
    other = HubKey.load_or_create(tmp_path / "other")[0]
    with pytest.raises(DeliveryError) as exc:
        delivery.open_delivery(d.path, str(env["identity"]), other.public_jwk, env["tmp"] / "o")
    assert exc.value.code == "delivery_bad_signature"


def decrypted_tar(env: dict[str, Any]) -> dict[str, bytes]:
    d = build(env)
    buf = io.BytesIO()
    import pyrage

    with d.path.open("rb") as f:
        pyrage.decrypt_io(f, buf, [env["identity"]])
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


@pytest.mark.parametrize("clip_bytes", [0, 1, 511, 512, 10240, 1024 * 1024 + 7])
def test_tar_is_byte_for_byte_what_tarfile_writes(env: dict[str, Any], clip_bytes: int) -> None:
    # The delivery's tar is generated on demand (one pass, no producer thread); it must stay the
    # exact bytes tarfile's streaming writer gives for the same members (PROTOCOL §2.3 format).
    env["clip"].write_bytes(bytes(range(256)) * (clip_bytes // 256) + b"x" * (clip_bytes % 256))
    d = build(env)
    plain = io.BytesIO()
    import pyrage

    with d.path.open("rb") as f:
        pyrage.decrypt_io(f, plain, [env["identity"]])
    plain.seek(0)
    with tarfile.open(fileobj=plain) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for m, data in members:
            info = tarfile.TarInfo(m.name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), m.mtime, 0o644, "", ""
            tar.addfile(info, io.BytesIO(data))
    assert [m.name for m, _ in members] == [delivery.clip_name("front-door"), *delivery.FIXED_NAMES]
    assert members[0][1] == env["clip"].read_bytes()
    assert plain.getvalue() == expected.getvalue()
    assert d.manifest["files"][0]["sha256"] == hashlib.sha256(env["clip"].read_bytes()).hexdigest()


def repack(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda m: m.update({"clip-front-door.mp4": m["clip-front-door.mp4"][:-1] + b"\0"}), "delivery_hash_mismatch"),
        (lambda m: m.update({"manifest.json": m["manifest.json"].replace(b'"r1"', b'"r2"')}), "delivery_bad_signature"),
        (lambda m: m.update({"extra.bin": b"x"}), "delivery_unexpected_file"),
        (lambda m: m.pop("audit-proof.json"), "delivery_missing_file"),
        (lambda m: m.update({"audit-proof.json": m["audit-proof.json"].replace(b'"tree_size"', b'"tree_sizE"')}),
         "delivery_hash_mismatch"),
    ],
)  # fmt: skip
def test_tampered_contents_refused(env: dict[str, Any], mutate: Any, code: str) -> None:
    members = decrypted_tar(env)
    mutate(members)
    tar = repack(env["tmp"] / "t.tar", members)
    with pytest.raises(DeliveryError) as exc:
        delivery.verify_tar(tar, env["hub_key"].public_jwk, env["tmp"] / "u")
    assert exc.value.code == code


def test_path_traversal_member_refused(env: dict[str, Any]) -> None:
    members = decrypted_tar(env)
    members["../evil"] = b"x"
    tar = repack(env["tmp"] / "t.tar", members)
    with pytest.raises(DeliveryError) as exc:
        delivery.verify_tar(tar, env["hub_key"].public_jwk, env["tmp"] / "u")
    assert exc.value.code == "delivery_malformed"
    assert not (env["tmp"] / "evil").exists()


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"recipient": "age1notarecipient"}, "delivery_bad_recipient"),
        ({"clips": {"../clip.mp4": Path("/dev/null")}}, "delivery_bad_input"),
        ({"clips": {}}, "delivery_bad_input"),
        ({"manifest_fields": {**FIELDS, "extra": 1}}, "delivery_bad_input"),
        ({"manifest_fields": {k: v for k, v in FIELDS.items() if k != "camera"}}, "delivery_bad_input"),
    ],
)
def test_bad_inputs(env: dict[str, Any], override: dict[str, Any], code: str) -> None:
    with pytest.raises(DeliveryError) as exc:
        build(env, **override)
    assert exc.value.code == code
    assert not (env["tmp"] / "delivery.age").exists()


def test_source_shrinking_while_packed_aborts(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # The clip is one byte shorter than its header said when it was opened: the tar would be short.
    real = delivery._clip_size
    monkeypatch.setattr(delivery, "_clip_size", lambda f: real(f) + 1)
    with pytest.raises(DeliveryError) as exc:
        build(env)
    assert exc.value.code == "delivery_source_changed"
    assert not (env["tmp"] / "delivery.age").exists()
    assert not list(env["tmp"].glob(".delivery.age.*"))


def test_audit_proof_inside_verifies_without_hub(env: dict[str, Any]) -> None:
    """The delivery's audit-proof.json checks out with audit_verify.py alone, `hub` never imported."""
    from tests.consent.test_audit import run_verify

    members = decrypted_tar(env)
    proof = env["tmp"] / "audit-proof.json"
    proof.write_bytes(members["audit-proof.json"])
    rc, text = run_verify(str(proof), "--hub-key", json.dumps(env["hub_key"].public_jwk))
    assert rc == 0 and "egress.delivery" in text, text


@pytest.fixture(params=["stock age", "pyrage"])
def worker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The encryption worker: the stock `age` CLI where the system has it (what CI installs), else
    encrypt_worker.py on pyrage; each test using this runs with both."""
    if request.param == "stock age":
        if delivery._stock_age() is None:
            pytest.skip("needs the age CLI in the system's directories (make sysdeps)")
    else:
        monkeypatch.setattr(delivery, "_stock_age", lambda: None)
    assert delivery.encrypt_command("age1x")[0].endswith("age") == (request.param == "stock age")
    return str(request.param)


def test_the_encryptor_runs_in_its_own_process_and_a_full_disk_is_a_clear_error(
    env: dict[str, Any], worker: str
) -> None:
    # The age file is written by the worker, a process of its own (pyrage holds the GIL while it
    # encrypts, and the stock CLI is a program of its own anyway). The kernel's /dev/full refuses every write with ENOSPC: the worker's failure
    # reaches the caller as delivery_failed with the reason, and the worker is gone.
    recipient = str(env["identity"].to_public())
    parts = iter([b"x" * 1024 * 1024] * 8)
    with open("/dev/full", "wb") as full, pytest.raises(DeliveryError) as exc:
        delivery._encrypt(parts, recipient, full)
    assert exc.value.code == "delivery_failed" and exc.value.status == 500
    assert "No space left on device" in exc.value.detail


def test_a_clip_that_cannot_be_read_stops_the_encryptor(env: dict[str, Any], worker: str) -> None:
    # Reading a clip fails half way: the build says delivery_failed (not a bare OSError), the worker
    # is killed rather than left waiting on its pipe, and nothing is left behind.
    def parts() -> Any:
        yield b"y" * 65536
        raise OSError(5, "Input/output error")

    recipient = str(env["identity"].to_public())
    before = _workers(recipient)
    out = env["tmp"] / "partial.age"
    with out.open("wb") as f, pytest.raises(DeliveryError) as exc:
        delivery._encrypt(parts(), recipient, f)
    assert exc.value.code == "delivery_failed" and "Input/output error" in exc.value.detail
    assert _workers(recipient) <= before


def _workers(recipient: str) -> set[int]:
    """Our child processes encrypting to `recipient` (from /proc: ppid is field 4 of stat)."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and recipient.encode() in cmdline:
            found.add(int(proc.name))
    return found


def test_a_successful_build_reports_the_hash_of_the_file_on_disk(env: dict[str, Any]) -> None:
    # The worker hashes the ciphertext as it writes it; the digest the hub records and serves must be
    # the file's own (PROTOCOL §2.3 `sha256` of the delivery).
    d = build(env)
    data = d.path.read_bytes()
    assert d.bytes == len(data) and d.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("direct", [True, False])
def test_a_delivery_of_several_mib_is_written_whole_with_or_without_o_direct(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, direct: bool, worker: str
) -> None:
    # The ciphertext goes to disk in whole 1 MiB blocks with O_DIRECT and its tail (under a block)
    # after O_DIRECT is off; where a filesystem refuses O_DIRECT (tmpfs, some FUSE), buffered with
    # early writeback as before. Either way the file must be the age file whole: its hash is the one
    # reported, and it opens and verifies.
    if not direct:
        monkeypatch.setattr(delivery, "_set_direct", lambda fd, on: False)
        monkeypatch.setattr(delivery, "_WRITEBACK", 1024 * 1024)
    env["clip"].write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    d = build(env)
    data = d.path.read_bytes()
    assert d.bytes == len(data) > 5 * 1024 * 1024 and d.sha256 == hashlib.sha256(data).hexdigest()
    opened = delivery.open_delivery(d.path, str(env["identity"]), env["hub_key"].public_jwk, env["tmp"] / "o")
    assert (env["tmp"] / "o" / delivery.clip_name("front-door")).read_bytes() == env["clip"].read_bytes()
    assert opened.manifest["files"][0]["bytes"] == 5 * 1024 * 1024 + 123


def test_the_delivery_is_renamed_into_place_and_its_directory_fsynced(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub records the delivery's path in its database right after the build: the new name must
    # survive a power cut, so the directory holding it is fsynced after the rename (and before return).
    from camhub_protocol import durable

    synced: list[tuple[Path, bool]] = []
    real = durable.fsync_dir
    out = env["tmp"] / "deliveries" / "d1.age"
    out.parent.mkdir()

    def fsync_dir(path: str | Path) -> None:
        synced.append((Path(path), out.exists()))
        real(path)

    monkeypatch.setattr(durable, "fsync_dir", fsync_dir)
    d = build(env, out=out)
    assert d.path == out and (out.parent, True) in synced
    assert [p.name for p in out.parent.iterdir()] == ["d1.age"]  # no temp file left beside it
