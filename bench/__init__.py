"""camhub benchmarks: each scenario is a module runnable as `python -m bench.<name> [--smoke]`.

Every scenario measures camhub against a reference in the same run (e.g. `ffmpeg -c copy`), prints a
table, and writes `bench/results/<name>.json`. `python -m bench` runs them all and writes
`bench/results/latest.json` and `bench/results/latest.md`.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "CAMHUB_BENCH_RESULTS"


def results_dir() -> Path:
    """Where scenario JSON goes: `$CAMHUB_BENCH_RESULTS` if set (smoke runs, CI), else bench/results.

    Smoke runs write elsewhere so a CI run never overwrites the committed full-run figures.
    """
    override = os.environ.get(RESULTS_ENV)
    path = Path(override) if override else Path(__file__).resolve().parent / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def spread(values: list[float], digits: int = 2) -> dict[str, object]:
    """Median with min/max of repeated measurements (issue 7: A/B alternated, the median reported)."""
    import statistics

    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }
