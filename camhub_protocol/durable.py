"""Renames that survive a power cut.

A file written to a temporary name, fsynced, then renamed into place is only safe once the directory
holding the new name is on disk too: until then a power cut can bring back the old directory entry
(POSIX leaves a rename's durability to an fsync of the directory; ext4 with `data=ordered` usually
gets it right by luck, other filesystems do not). The caller fsyncs the file; `replace` renames it
and fsyncs the directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str | Path, dst: str | Path) -> None:
    """`os.replace(src, dst)`, then fsync the directory of `dst` so the new name survives a power cut."""
    os.replace(src, dst)
    fsync_dir(os.path.dirname(os.fspath(dst)) or ".")
