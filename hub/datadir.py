"""The data directory: one place for footage, events, keys and the database, with safe permissions.

Layout: `segments/`, `events/`, `keys/`, `camhub.sqlite` (+ WAL files). Directories are 0700 and
secret files 0600 because the box may be shared with other local users; systemd's StateDirectory
gives the same mode.
"""

from __future__ import annotations

import os
from pathlib import Path

from hub.config import Config

SUBDIRS = ("segments", "events", "keys")


class DataDirError(Exception):
    """The data directory cannot be created or is not safe to use."""


def prepare(config: Config) -> None:
    """Create the layout (idempotent) and tighten permissions on what is already there."""
    root = config.hub.data_dir
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for name in SUBDIRS:
            sub = root / name
            sub.mkdir(mode=0o700, exist_ok=True)
            os.chmod(sub, 0o700)
        for secret in config.keys_dir.iterdir():
            if secret.is_file():
                os.chmod(secret, 0o600)
    except OSError as exc:
        raise DataDirError(f"cannot prepare data dir {root}: {exc}") from exc
    if not os.access(root, os.W_OK):
        raise DataDirError(f"data dir {root} is not writable")


def secure_db_files(db_path: Path) -> None:
    """The database holds consent records and nonces; keep it and its WAL owner-only."""
    for suffix in ("", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        if path.exists():
            os.chmod(path, 0o600)


def become_data_dir_owner(config: Config) -> None:
    """Run on as the user that owns the data dir (the `camhub` service user) when started as root.

    An admin command run with sudo (`camhub pair`, `camhub owner reset`) would otherwise create the
    database's `-wal`/`-shm` files as root while the daemon is stopped, and the daemon could then not
    open its own database.
    """
    if os.geteuid() != 0:
        return
    try:
        st = config.hub.data_dir.stat()
    except OSError:
        return
    if st.st_uid == 0:
        return
    os.setgid(st.st_gid)
    os.setgroups([st.st_gid])
    os.setuid(st.st_uid)
