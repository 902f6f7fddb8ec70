"""Run the real daemon (`camhub run`) with the reconnect backoff and retention interval shortened.

The fault tests flap a camera 100 times and fill a disk in seconds; with the production backoff
(capped at 30 s) and retention interval (30 s) that takes an hour. Only these timing constants are
changed, from the environment, before the daemon starts; everything else is the shipped code path.

    python -m tests.faults.run_hub --config camhub.toml
"""

from __future__ import annotations

import os
import sys

from hub import cli
from hub.ingest import camera


def main() -> int:
    if v := os.environ.get("CAMHUB_TEST_MAX_BACKOFF_S"):
        camera.MAX_BACKOFF_S = float(v)
        camera.MIN_BACKOFF_S = min(camera.MIN_BACKOFF_S, float(v))
    if v := os.environ.get("CAMHUB_TEST_RETENTION_INTERVAL_S"):
        camera.RETENTION_INTERVAL_S = float(v)
    return cli.main(["run", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
