"""Per-client limits on what anyone on the network can call (issue 12): token buckets and backoff.

Two rules shape everything here:

- **Nothing locks anyone out.** Every limit is a wait of bounded length, per client, never a global
  switch: a limit that one stranger can trip for everybody (a global login cap, a pairing lock until
  restart) is itself a denial-of-service attack on the owner. Backoff is capped at `cap_s` (60 s).
- **Memory is bounded.** State lives in memory (a restart forgets it, which costs an attacker a
  reboot of the box, not a bypass) in LRU maps of at most `max_clients` entries.

A client is its address; IPv6 clients by their /64, because one host on a LAN segment can use any
address of its prefix (RFC 4941 temporary addresses) and would otherwise get a fresh bucket per try.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass, field


def client_key(remote: str | None) -> str:
    """The rate-limit identity of a peer address (`request.remote`)."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _Lru(OrderedDict[str, object]):
    """An OrderedDict that forgets its least recently used entries beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str) -> None:
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One token bucket per client: `burst` calls at once, then `rate_per_s` calls a second."""

    def __init__(self, rate_per_s: float, burst: float, max_clients: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets = _Lru(max_clients)

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key`'s bucket: 0.0 if the call may go ahead, else the seconds until a
        token is there (nothing is spent then). `now` is a monotonic clock."""
        bucket = self._buckets.get(key)
        if not isinstance(bucket, _Bucket):
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate_per_s)
            bucket.at = now
        self._buckets.touch(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s


def retry_after_header(seconds: float) -> str:
    """RFC 9110 §10.2.3 `Retry-After` delay-seconds: a whole number, never 0 for a refusal."""
    return str(max(1, math.ceil(seconds)))


@dataclass
class _Failures:
    count: int
    last: float


@dataclass
class Backoff:
    """Exponential backoff per client after failed tries (wrong pairing codes, wrong passwords).

    The first `free` failures cost nothing; after failure number n > free the client waits
    min(cap_s, 2 ** (n - free)) seconds before its next try is even looked at. A client that has not
    failed for `forget_s` starts again from zero; a success forgets it at once.
    """

    free: int
    cap_s: float = 60.0
    forget_s: float = 15 * 60.0
    max_clients: int = 10_000
    _clients: _Lru = field(init=False)

    def __post_init__(self) -> None:
        self._clients = _Lru(self.max_clients)

    def _state(self, key: str, now: float) -> _Failures | None:
        state = self._clients.get(key)
        if not isinstance(state, _Failures):
            return None
        if now - state.last >= self.forget_s:
            del self._clients[key]
            return None
        return state

    def wait_after(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return float(min(self.cap_s, 2 ** (failures - self.free)))

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now). `now` is a monotonic clock."""
        state = self._state(key, now)
        if state is None:
            return 0.0
        return max(0.0, state.last + self.wait_after(state.count) - now)

    def failed(self, key: str, now: float) -> float:
        """Count one failure; returns the wait it imposes."""
        state = self._state(key, now)
        if state is None:
            state = _Failures(0, now)
            self._clients[key] = state
        state.count += 1
        state.last = now
        self._clients.touch(key)
        return self.wait_after(state.count)

    def succeeded(self, key: str) -> None:
        self._clients.pop(key, None)
