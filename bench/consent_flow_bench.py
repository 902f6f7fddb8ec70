"""The consent HTTP path end to end, in one hub process on loopback (PROTOCOL §2.1, §2.2).

`python -m bench.consent_flow_bench [--smoke]`

1. Accepted signed requests per second: `POST /api/agency/v1/requests`, each freshly signed, through
   RFC 9421 verification, the persisted nonce, body validation, the insert and the `request.received`
   audit append (one client, sequential: the latency a single agency sees).
2. The §2.2 privacy rule in time: poll latency of a declined request, an approved one with no
   footage, one naming an unknown camera, and a 404 (another agency's id, with its audit entry),
   as medians over interleaved rounds. The first three must be indistinguishable; the 404 also
   writes a `request.rejected` entry.

Prints a table and writes bench/results/consent_flow.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from bench import results_dir
from camhub_protocol import httpsig, jws, rfc3339
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk
from hub import config as config_mod
from hub.consent import pairing
from hub.daemon import running_hub

RESULTS = results_dir()


class Bench:
    def __init__(self, url: str, hub_id: str, http: aiohttp.ClientSession) -> None:
        self.url, self.hub_id, self.http = url, hub_id, http
        self.authority = url.split("://", 1)[1]
        self.owner = Ed25519PrivateKey.generate()
        self.agency = Ed25519PrivateKey.generate()
        self.agency_jwk = okp_public_jwk(self.agency.public_key())
        self.keyid = jwk_thumbprint(self.agency_jwk)

    async def decide(self, fields: dict[str, Any]) -> None:
        payload = {"v": 1, "hub": self.hub_id, **fields, "issued_at": rfc3339.format(int(time.time())),
                   "jti": secrets.token_urlsafe(16)}  # fmt: skip
        kid = jwk_thumbprint(okp_public_jwk(self.owner.public_key()))
        compact = jws.sign(json.dumps(payload).encode(), self.owner, kid, "camhub-decision+jws")
        async with self.http.post(
            self.url + "/api/v1/decisions", data=compact, headers={"Content-Type": "application/jose"}
        ) as r:
            assert r.status == 201, await r.text()

    async def signed(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        headers: list[tuple[str, str]] = [("Content-Type", "application/json")] if body else []
        headers += httpsig.sign_request(
            method=method, authority=self.authority, path=path, query=None, headers=headers, body=body,
            private_key=self.agency, keyid=self.keyid, created=int(time.time()), scheme="http",
        )  # fmt: skip
        async with self.http.request(method, self.url + path, data=body or None, headers=dict(headers)) as r:
            return r.status, await r.read()

    def body(self, cameras: list[str], start: float, end: float) -> bytes:
        return json.dumps(
            {"hub": self.hub_id, "case_id": "B-1", "kind": "clip", "cameras": cameras,
             "start": rfc3339.format(start), "end": rfc3339.format(end), "live_max_seconds": None,
             "reason": "bench", "legal_basis": {"type": "consent", "reference": None}, "contact": "bench"}
        ).encode()  # fmt: skip

    async def submit(self, cameras: list[str], start: float, end: float) -> tuple[str, str]:
        body = self.body(cameras, start, end)
        status, answer = await self.signed("POST", "/api/agency/v1/requests", body)
        assert status == 202, answer
        return json.loads(answer)["id"], hashlib.sha256(body).hexdigest()


async def run(smoke: bool) -> dict[str, Any]:
    n_requests = 50 if smoke else 400
    rounds = 20 if smoke else 200
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.parse(
            # One client filing hundreds of requests a second: the per-client and per-agency limits
            # (PROTOCOL §1.1, §2.1) are lifted so the bench measures the request path itself.
            {"hub": {"data_dir": tmp, "port": 0, "log_level": "warning", "rate_limit_per_s": 100000,
                     "rate_limit_burst": 1000000},
             "consent": {"trust_system_clock": True, "agency_requests_per_hour": 1000000},
             "discovery": {"enabled": False}}
        )  # fmt: skip
        async with running_hub(cfg) as s, aiohttp.ClientSession() as http:
            b = Bench(s.base_url, s.hub_key.hub_id, http)
            code = await s.store.run(pairing.issue)
            async with http.post(
                b.url + "/api/v1/owner/enroll",
                json={"pairing_code": code, "public_jwk": okp_public_jwk(b.owner.public_key()), "name": "b"},
            ) as r:
                assert r.status == 201
            recipient = str(x25519.Identity.generate().to_public())
            await b.decide(
                {
                    "decision": "add-agency",
                    "subject": {"name": "B", "sig_jwk": b.agency_jwk, "recipient": recipient},
                }
            )
            now = time.time()
            t = time.perf_counter()
            for _ in range(n_requests):
                await b.submit(["front-door"], now - 600, now - 300)
            accepted_per_s = n_requests / (time.perf_counter() - t)

            # Three hidden outcomes (no footage exists at all in this hub) and a 404.
            declined, sha_d = await b.submit(["front-door"], now - 600, now - 300)
            await b.decide(
                {"decision": "decline", "request_id": declined, "request_sha256": sha_d, "recipient": b.keyid}
            )
            empty, sha_e = await b.submit(["front-door"], now - 600, now - 300)
            unknown, sha_u = await b.submit(["no-such-camera"], now - 600, now - 300)
            for rid, sha, cams in ((empty, sha_e, ["front-door"]), (unknown, sha_u, ["no-such-camera"])):
                await b.decide({
                    "decision": "approve", "request_id": rid, "request_sha256": sha, "recipient": b.keyid,
                    "scope": {"kind": "clip", "cameras": cams, "start": rfc3339.format(now - 600),
                              "end": rfc3339.format(now - 300), "live_max_seconds": None},
                    "max_fetches": 3, "not_after": rfc3339.format(now + 3600),
                })  # fmt: skip
            cases = {"declined": declined, "approved_no_footage": empty, "unknown_camera": unknown,
                     "not_found": "A" * 22}  # fmt: skip
            samples: dict[str, list[float]] = {k: [] for k in cases}
            bodies: dict[str, set[str]] = {k: set() for k in cases}
            for _ in range(rounds):
                for name, rid in cases.items():
                    t = time.perf_counter()
                    status, answer = await b.signed("GET", f"/api/agency/v1/requests/{rid}")
                    samples[name].append(time.perf_counter() - t)
                    doc = json.loads(answer)
                    bodies[name].add(f"{status} {sorted(doc)} {doc.get('status', doc.get('error'))}")
    medians_ms = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    hidden = [medians_ms[k] for k in ("declined", "approved_no_footage", "unknown_camera")]
    spread = max(hidden) - min(hidden)
    return {
        "summary": (
            f"{accepted_per_s:.0f} signed requests accepted/s (one client, sequential); §2.2 hidden outcomes "
            f"poll in {statistics.median(hidden):.2f} ms ± {spread:.3f} ms (404: {medians_ms['not_found']:.2f} ms)"
        ),
        "accepted_requests_per_s": round(accepted_per_s, 1),
        "poll_median_ms": {k: round(v, 3) for k, v in medians_ms.items()},
        "hidden_outcomes_spread_ms": round(spread, 3),
        "answers": {k: sorted(v) for k, v in bodies.items()},
        "requests": n_requests,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few iterations, to check it runs")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.smoke))
    print(f"accepted signed requests/s (one client, sequential): {result['accepted_requests_per_s']}")
    for name, ms in result["poll_median_ms"].items():
        print(f"poll median {name:>22}: {ms:7.3f} ms   {result['answers'][name]}")
    print(f"spread of the three hidden outcomes: {result['hidden_outcomes_spread_ms']} ms")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "consent_flow.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
