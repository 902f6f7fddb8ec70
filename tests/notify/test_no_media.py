"""No footage leaves through notifications (PROTOCOL §8, gate.py's table): the notifier's modules
import nothing that reads segments, clips, thumbnails or stills, and the gate's table lists both
channels. (What the channels actually send is checked in test_mqtt.py and test_push.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import hub.notify
from hub.consent import gate

# Everything in the hub that opens footage or pictures.
MEDIA_MODULES = (
    "hub.record",
    "hub.events.thumbnails",
    "hub.ingest",
    "hub.api.snapshot",
    "hub.egress",
    "av",
    "cv2",
)


def test_the_notifier_imports_nothing_that_reads_media() -> None:
    package = Path(hub.notify.__file__).parent
    files = sorted(package.glob("*.py"))
    assert {f.name for f in files} >= {"mqtt.py", "push.py", "service.py"}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                assert not name.startswith(MEDIA_MODULES), f"{path.name} imports {name}"


def test_the_gate_table_lists_both_channels() -> None:
    doc = gate.__doc__ or ""
    assert "hub/notify/mqtt.py" in doc and "hub/notify/push.py" in doc
