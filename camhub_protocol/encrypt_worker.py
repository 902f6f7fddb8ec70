"""The age encryption of a delivery, in its own process (`delivery.build_delivery` starts it).

    python -I encrypt_worker.py RECIPIENT   < plaintext   > ciphertext file
    on success, the last line on stderr is "ok <sha256 of the ciphertext> <bytes>"

Why a process: pyrage holds the GIL while it encrypts, so in the daemon the encryption and the tar
producer (file reads, SHA-256 of every clip) took turns on one core, and every other thread of the
daemon (the recorder's packet loop) waited for the GIL at each 64 KiB chunk. Here the encryption has
a core and an interpreter of its own, like `tar | age`. It imports nothing from camhub (it runs by
path, isolated), only pyrage: the recipient was already parsed by the parent.
"""

from __future__ import annotations

import hashlib
import io
import sys
from typing import Any

import pyrage
from pyrage import x25519

_READ_BUFFER = 1024 * 1024


class _HashingWriter(io.RawIOBase):
    def __init__(self, f: io.RawIOBase) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        # pyrage's buffer is only lent for the call: write all of it and hash it, without a copy.
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            n = self._f.write(view[done:])
            if not n:
                raise OSError("short write of the ciphertext")
            done += n
        self.sha.update(view)
        self.count += done
        return done


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: encrypt_worker.py RECIPIENT", file=sys.stderr)
        return 2
    try:
        recipient = x25519.Recipient.from_str(argv[0])
    except Exception:  # pyrage raises its own RecipientError
        print("not an age X25519 recipient", file=sys.stderr)
        return 2
    # pyrage reads 8 KiB at a time: a 1 MiB buffer turns that into few pipe reads.
    with (
        open(0, "rb", buffering=_READ_BUFFER, closefd=False) as plain,
        open(1, "wb", buffering=0, closefd=False) as out,
    ):
        writer = _HashingWriter(out)
        try:
            pyrage.encrypt_io(plain, writer, [recipient])
        except Exception as exc:  # an I/O error (a full disk) or a broken pipe from a parent that gave up
            print(f"encryption failed: {exc}", file=sys.stderr)
            return 1
    print(f"ok {writer.sha.hexdigest()} {writer.count}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
