"""The per-client limits of camhub_protocol/limits.py: bounded waits, never a lock, bounded memory."""

from __future__ import annotations

import pytest

from camhub_protocol.limits import Backoff, TokenBuckets, client_key, retry_after_header


def test_backoff_doubles_from_the_first_paid_failure_and_caps_at_60_s() -> None:
    backoff = Backoff(free=2)
    waits = [backoff.failed("a", 100.0) for _ in range(10)]
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.retry_after("a", 100.0) == 60
    assert backoff.retry_after("a", 159.0) == pytest.approx(1)
    assert backoff.retry_after("a", 160.0) == 0  # a wait, not a lock
    assert backoff.retry_after("b", 100.0) == 0  # per client
    backoff.succeeded("a")
    assert backoff.retry_after("a", 100.0) == 0


def test_backoff_forgets_a_quiet_client_and_bounds_memory() -> None:
    backoff = Backoff(free=0, forget_s=900, max_clients=100)
    for _ in range(5):
        backoff.failed("a", 0.0)
    assert backoff.retry_after("a", 899.0) == 0  # the 32 s wait is long over
    assert backoff.failed("a", 900.0) == 2  # and after 15 quiet minutes it starts again
    for i in range(1000):
        backoff.failed(f"spray-{i}", 1000.0)
    assert len(backoff._clients) == 100


def test_token_bucket_burst_then_rate() -> None:
    buckets = TokenBuckets(rate_per_s=2, burst=3, max_clients=10)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.5) == 0  # one token back after 1/rate s
    assert buckets.take("b", 0.5) == 0  # another client has its own bucket
    for i in range(100):
        buckets.take(f"spray-{i}", 1.0)
    assert len(buckets._buckets) == 10


def test_clients_are_addresses_and_ipv6_prefixes() -> None:
    assert client_key("192.168.1.5") == "192.168.1.5"
    assert client_key("::ffff:192.168.1.5") == "192.168.1.5"
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == "unknown"
    assert retry_after_header(0.2) == "1" and retry_after_header(59.1) == "60"
