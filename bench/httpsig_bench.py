"""Signed-request verification rate on one core (PROTOCOL §2, issue 5 benchmark: ≥ 2,000/s).

`python -m bench.httpsig_bench [--smoke]`

Verifies pre-signed agency requests (a POST with a JSON body and a GET with a query) through the
full `httpsig.verify_request` path — structured-field parsing, every PROTOCOL §2 rule, signature
base, Ed25519 verify, Content-Digest and an in-memory nonce check — and compares with the floor,
a bare Ed25519 verify from `cryptography`, and with a compact-JWS decision verify. Prints a table
and writes bench/results/httpsig.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bench import results_dir
from hub.consent import httpsig, jws

RESULTS = results_dir()
TARGET_PER_S = 2000.0
NOW = 1_800_000_000
BODY = json.dumps(
    {"hub": "x" * 43, "case_id": "2026-000123", "kind": "clip", "cameras": ["front-door"],
     "start": "2026-11-20T18:00:00Z", "end": "2026-11-20T18:30:00Z", "live_max_seconds": None,
     "reason": "Package theft reported at 18:10", "legal_basis": {"type": "consent", "reference": None},
     "contact": "Det. J. Rivera, +1-555-0100"}
).encode()  # fmt: skip


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        except OSError:
            pass


def rate(fn: object, items: list[object]) -> float:
    call = fn  # type: ignore[assignment]
    started = time.perf_counter()
    for item in items:
        call(item)  # type: ignore[operator]
    return len(items) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.httpsig_bench")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    n = 500 if args.smoke else 20_000
    pin_one_core()
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    keyid = "agency-bench"

    def resolve(k: str) -> Ed25519PublicKey | None:
        return public if k == keyid else None

    seen: set[tuple[str, str]] = set()

    def nonce_check(k: str, nonce: str, expires: int) -> bool:
        if (k, nonce) in seen:
            return False
        seen.add((k, nonce))
        return True

    posts, gets = [], []
    for _ in range(n):
        base = [("Host", "hub.local:8443"), ("Content-Type", "application/json")]
        posts.append(base + httpsig.sign_request(
            method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
            headers=base, body=BODY, private_key=key, keyid=keyid, created=NOW))  # fmt: skip
        gets.append(httpsig.sign_request(
            method="GET", authority="hub.local:8443", path="/api/agency/v1/requests/abc", query="x=1",
            headers=[], body=b"", private_key=key, keyid=keyid, created=NOW))  # fmt: skip

    def verify_post(headers: object) -> None:
        httpsig.verify_request(
            method="POST", authority="hub.local:8443", path="/api/agency/v1/requests", query=None,
            headers=headers, body=BODY, now=NOW, resolve_key=resolve, nonce_check=nonce_check)  # type: ignore[arg-type]  # fmt: skip

    def verify_get(headers: object) -> None:
        httpsig.verify_request(
            method="GET", authority="hub.local:8443", path="/api/agency/v1/requests/abc", query="x=1",
            headers=headers, body=b"", now=NOW, resolve_key=resolve, nonce_check=nonce_check)  # type: ignore[arg-type]  # fmt: skip

    post_rate = rate(verify_post, posts)  # type: ignore[arg-type]
    get_rate = rate(verify_get, gets)  # type: ignore[arg-type]
    msgs = [os.urandom(300) for _ in range(n)]
    sigs = {m: key.sign(m) for m in msgs}
    raw_rate = rate(lambda m: public.verify(sigs[m], m), msgs)  # type: ignore[arg-type]
    tokens = [jws.sign(os.urandom(200), key, "owner", "camhub-decision+jws") for _ in range(n)]
    jws_rate = rate(lambda t: jws.verify(jws.parse(t, typ="camhub-decision+jws"), public), tokens)  # type: ignore[arg-type]

    result = {
        "requests": n,
        "verify_post_per_s": round(post_rate),
        "verify_get_per_s": round(get_rate),
        "raw_ed25519_verify_per_s": round(raw_rate),
        "jws_decision_verify_per_s": round(jws_rate),
        "target_per_s": TARGET_PER_S,
        "target": f">= {TARGET_PER_S:,.0f} verifications/s",
        "meets_target": min(post_rate, get_rate) >= TARGET_PER_S,
        "smoke": args.smoke,
    }
    result["summary"] = (
        f"RFC 9421 verify {min(post_rate, get_rate):,.0f}/s on one core "
        f"(bare Ed25519 {raw_rate:,.0f}/s, JWS {jws_rate:,.0f}/s)"
    )
    rows = [
        ("signed POST + body verify", f"{post_rate:,.0f}/s"),
        ("signed GET + query verify", f"{get_rate:,.0f}/s"),
        ("reference: bare Ed25519 verify", f"{raw_rate:,.0f}/s"),
        ("owner decision JWS verify", f"{jws_rate:,.0f}/s"),
        ("target", f">= {TARGET_PER_S:,.0f}/s: {'met' if result['meets_target'] else 'MISSED'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "httpsig.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
