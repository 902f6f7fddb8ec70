"""WS-Discovery by multicast, as on a real LAN, but inside a network namespace of its own with only
loopback (`unshare -n`): no Probe can leave the box."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# lo carries multicast once it is up, flagged for it and routed for the group's range.
NETNS = 'ip link set lo up && ip link set lo multicast on && ip route add 239.0.0.0/8 dev lo && exec "$@"'


def test_multicast_probe_finds_the_camera_in_a_loopback_only_namespace() -> None:
    assert shutil.which("unshare"), "unshare (util-linux) is needed for the multicast test"
    cmd = ["unshare", "-n", "sh", "-c", NETNS, "sh", sys.executable, "-m", "tests.onvif.multicast_session"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("found http://127.0.0.1:"), run.stdout
