"""The age encryption of a delivery, in its own process (`delivery.build_delivery` starts it).

    python -I encrypt_worker.py RECIPIENT   < plaintext tar   > age ciphertext
    exit 0 and nothing on stderr on success; else a reason on stderr

Why a process: pyrage holds the GIL while it encrypts, so in the daemon the encryption, the tar
producer (file reads, SHA-256 of every clip) and the SHA-256 of the ciphertext took turns on one
core, and every other thread of the daemon (the recorder's packet loop) waited for the GIL at each
chunk. Here the encryption has a core and an interpreter of its own, as `age` has beside `tar`;
the hub tars and hashes on the other side of the two pipes. It imports nothing from camhub (it runs
by path, isolated), only pyrage: the recipient was already parsed by the parent.
"""

from __future__ import annotations

import sys

import pyrage
from pyrage import x25519

_READ_BUFFER = 1024 * 1024


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: encrypt_worker.py RECIPIENT", file=sys.stderr)
        return 2
    try:
        recipient = x25519.Recipient.from_str(argv[0])
    except Exception:  # pyrage raises its own RecipientError
        print("not an age X25519 recipient", file=sys.stderr)
        return 2
    # pyrage reads 8 KiB at a time: a 1 MiB buffer turns that into few pipe reads. It writes whole
    # 64 KiB STREAM chunks, so the output needs no buffer of its own.
    with (
        open(0, "rb", buffering=_READ_BUFFER, closefd=False) as plain,
        open(1, "wb", buffering=0, closefd=False) as out,
    ):
        try:
            pyrage.encrypt_io(plain, out, [recipient])
        except Exception as exc:  # a broken pipe from a parent that gave up, or a read error
            print(f"encryption failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
