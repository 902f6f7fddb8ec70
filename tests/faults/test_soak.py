"""SOAK (CI version, 60 s): `bench/soak.py` — the real daemon with 4 simulated cameras, doorbell events
every few seconds, an agency asking/polling/fetching and retention cycling — for 60 s. RSS, open fds,
threads and asyncio tasks must stay flat after the warm-up and the log must have no ERROR/Traceback.
The 30-minute run is `make soak`; keep this one at 60 s."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_agency_stops_polling_an_approval_that_has_nothing_left_to_deliver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Approved after retention had deleted its range, a request is never fulfilled. Polled forever,
    # 41 of them in a 2-hour soak made enough status calls to hit the hub's rate limit, and the soak
    # died on a 429 before its summary (2026-12-06).
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        def status(self, request_id: str) -> dict[str, str]:
            self.calls += 1
            return {"status": "approved"}

    agency = object.__new__(soak._Agency)
    agency.client, agency.fetched, agency.unfulfilled = Client(), 0, 0
    clock = [1000.0]
    monkeypatch.setattr(soak.time, "monotonic", lambda: clock[0])
    agency.open = {
        "gone": ("sha", 0.0, 6.0, "cam", True, clock[0]),
        "declined": ("sha", 0.0, 6.0, "cam", False, clock[0]),
    }
    agency.poll(Path("unused"))
    assert list(agency.open) == ["gone"]  # the unapproved one is polled once; the approval waits
    clock[0] += soak.UNFULFILLED_AFTER_S + 1
    agency.poll(Path("unused"))
    assert agency.open == {} and agency.unfulfilled == 1
    assert agency.client.calls == 3
