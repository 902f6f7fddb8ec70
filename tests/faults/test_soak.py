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


def test_the_rss_floor_ignores_a_spike_and_sees_memory_that_stays() -> None:
    # What `make soak` prints for issue 17's goal: a spike at one sample is not growth; a step that
    # raises every later sample is.
    def run(rss: list[int]) -> soak.SoakResult:
        result = soak.SoakResult()
        for i, kb in enumerate(rss):
            result.samples.append(soak.Sample(i * 60.0, kb, 20, 10, 28, 0, 0, 0, 0, 0))
        return result

    flat_with_spike = [150_000] * 40
    flat_with_spike[35] = 160_000
    assert run(flat_with_spike).rss_floor_growth_mib() == (150_000 / 1024, 150_000 / 1024)
    stepped = [150_000] * 25 + [154_096] * 15
    first, last = run(stepped).rss_floor_growth_mib()  # type: ignore[misc]
    assert round(last - first, 3) == 4.0
    assert run([150_000] * 20).rss_floor_growth_mib() is None  # under 30 minutes: no measure
