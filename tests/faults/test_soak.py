"""SOAK (CI version, 60 s): `bench/soak.py` — the real daemon with 4 simulated cameras, doorbell events
every few seconds, an agency asking/polling/fetching and retention cycling — for 60 s. RSS, open fds,
threads and asyncio tasks must stay flat after the warm-up and the log must have no ERROR/Traceback.
The 30-minute run is `make soak`; keep this one at 60 s."""

from __future__ import annotations

from pathlib import Path

from bench import soak

SOAK_SECONDS = 60


def test_soak_60_seconds(tmp_path: Path) -> None:
    result = soak.run(SOAK_SECONDS, interval=5, cameras=4, workdir=tmp_path / "soak")
    print(result.table())
    assert result.ok, "\n".join(result.problems)
    last = result.samples[-1]
    assert last.segments > 0 and last.events > 0 and last.requests > 0
    slope = result.rss_slope_mb_per_h()  # what `make soak` prints beside the table (issue 17)
    assert slope is not None
    print(f"rss slope after warm-up: {slope:+.2f} MB/h")
