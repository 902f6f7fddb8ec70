"""`python -m bench [--smoke] [--only NAME ...]`: run every scenario, collect one table and one JSON.

Scenarios run one after another as subprocesses (each owns its cameras, hub and reference processes,
and a crash in one does not lose the others' figures), each bounded by its own time limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (module, time limit in seconds for a full run). The sum stays under the 10-minute budget.
SCENARIOS: list[tuple[str, int]] = [
    ("sim_bench", 90),
    ("record_bench", 180),
    ("motion_bench", 60),
    ("live_bench", 60),
    ("httpsig_bench", 45),
    ("delivery_bench", 90),
    ("retention_bench", 45),
]


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(names: list[str], smoke: bool) -> dict[str, object]:
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, object] = {"machine": machine(), "smoke": smoke, "started": time.time(), "scenarios": {}}
    scenarios = out["scenarios"]
    assert isinstance(scenarios, dict)
    for name, limit in SCENARIOS:
        if names and name not in names:
            continue
        module = Path(__file__).resolve().parent / f"{name}.py"
        if not module.exists():
            scenarios[name] = {"status": "missing"}
            continue
        result_file = RESULTS / f"{name.removesuffix('_bench')}.json"
        result_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", f"bench.{name}"] + (["--smoke"] if smoke else [])
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, timeout=limit if not smoke else max(60, limit // 2), check=False)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = "timeout"
        entry: dict[str, object] = {"status": status, "seconds": round(time.monotonic() - started, 1)}
        if result_file.exists():
            entry["result"] = json.loads(result_file.read_text())
        scenarios[name] = entry
    return out


def markdown(results: dict[str, object]) -> str:
    m = results["machine"]
    assert isinstance(m, dict)
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}"
        + (" (smoke run)" if results["smoke"] else ""),
        "",
        "| scenario | status | seconds | figures |",
        "|---|---|---|---|",
    ]
    scenarios = results["scenarios"]
    assert isinstance(scenarios, dict)
    for name, entry in scenarios.items():
        figures = entry.get("result", {}).get("summary", "") if isinstance(entry.get("result"), dict) else ""
        lines.append(f"| {name} | {entry['status']} | {entry.get('seconds', '')} | {figures} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds each (CI)")
    parser.add_argument("--only", nargs="*", default=[], help="scenario module names to run")
    args = parser.parse_args(argv)
    results = run(args.only, args.smoke)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / "latest.md").write_text(table)
    print(table)
    failed = [n for n, e in results["scenarios"].items() if e["status"] not in ("ok", "missing")]  # type: ignore[union-attr]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
