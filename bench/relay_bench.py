"""camhub-relay under load (PROTOCOL §7), against real nats-server and camhub-relay processes.

`python -m bench.relay_bench [--smoke]`

1. **1,000 simulated hubs on one NATS node**: nats-py connections in this process that behave like a
   hub's link (`hub/uplink/link.py`): each registers in the relay's `camhub_hubs` bucket and answers
   calls on its subject; the 50 that agencies ask also take their queue through a durable consumer
   (ack each message, as a hub does once it stored the request). Measured: the connections' cost at
   rest — client RSS per connection, nats-server RSS per connection, and the CPU of both over an idle
   window.
2. **request → 202 at 200 requests/s from 50 agencies**, open loop (a request every 5 ms whatever
   the answers), each freshly RFC 9421 signed for the relay, to random hubs among the 50: latency
   from send to the relay's 202, and from the 202 to the simulated hub receiving it from JetStream.
   Reference in the same run: the same rate of signed requests to a real hub directly (`camhub run`,
   the §2.1 route: verify, store, audit). Rounds alternate relay / direct.
3. **relay-added latency**: polls (`GET …/requests/{id}`, forwarded live to the hub over NATS
   request/reply) of the real hub through the relay and directly; the difference of the medians is
   what the relay adds to a call that needs the hub.
4. **relay CPU and RSS** (from /proc) over the load windows.
5. **a node killed under load**: a 3-node cluster, `--replicas 3`, 20 simulated hubs, 100 requests/s;
   one node SIGKILLed a third of the way in. Every request the relay answered 202 for must reach its
   hub (lost = 0); 503s during the election are counted (a client retries them).

Goals (issue 15): p99 ≤ 50 ms at 200 requests/s, relay-added p50 ≤ 10 ms, nothing lost.
Writes bench/results/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.api import AckPolicy, ConsumerConfig

from bench import results_dir
from camhub_protocol import httpsig, sealed_bodies
from camhub_protocol import relay_wire as wire

RESULTS = results_dir()
P99_TARGET_MS = 50.0
ADDED_P50_TARGET_MS = 10.0
UNLIMITED = [
    "--burst",
    "1000000",
    "--rate-per-s",
    "100000",
    "--hub-burst",
    "1000000",
    "--hub-rate-per-s",
    "100000",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


class SimHub:
    """A nats-py connection that answers like a hub's relay link (register, calls, queue)."""

    def __init__(self, hub_id: str) -> None:
        self.hub_id = hub_id
        # What agencies seal requests to (PROTOCOL §7.6), as a hub derives it from its key.
        self.recipient = sealed_bodies.hub_identity(Ed25519PrivateKey.generate())[1]
        self.nc: nats.NATS | None = None
        self.received: dict[str, float] = {}  # request id → when it arrived from the queue

    async def connect(self, urls: list[str], consume: bool) -> None:
        async def quiet(exc: Exception) -> None:  # a node killed on purpose: the client reconnects
            pass

        self.nc = await nats.connect(
            urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=5, error_cb=quiet
        )
        js = self.nc.jetstream(timeout=10)
        kv = await js.key_value(wire.HUBS_BUCKET)
        doc = {
            "hub": {"hub_id": self.hub_id, "public_jwk": {}, "name": "sim", "protocol": 1},
            "respond_by_s": 604800,
        }
        await kv.put(self.hub_id, json.dumps(doc).encode())

        async def on_call(msg: Any) -> None:
            answer = wire.json_answer(
                200, {"id": "x", "status": "pending", "respond_by": "2026-01-01T00:00:00Z"}
            )
            await self.nc.publish(msg.reply, answer.body, headers=answer.answer_headers())  # type: ignore[union-attr]

        await self.nc.subscribe(wire.call_subject(self.hub_id), cb=on_call)
        if consume:
            sub = await js.pull_subscribe(
                wire.queue_subject(self.hub_id), durable=wire.consumer_name(self.hub_id), stream=wire.QUEUE_STREAM,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
            )  # fmt: skip
            asyncio.get_running_loop().create_task(self._consume(sub))

    async def _consume(self, sub: Any) -> None:
        while self.nc is not None and not self.nc.is_closed:
            try:
                msgs = await sub.fetch(batch=1, timeout=1)  # as the hub does (hub/uplink/link.py)
            except (TimeoutError, nats.errors.Error):
                continue
            except asyncio.CancelledError:
                return
            for msg in msgs:
                try:
                    claims = wire.claims(json.loads((msg.headers or {}).get(wire.H_FIELDS, "[]")))
                    self.received.setdefault(wire.request_id(claims.keyid, claims.nonce), time.perf_counter())
                except Exception:
                    pass
                await msg.ack()

    async def close(self) -> None:
        if self.nc is not None:
            nc, self.nc = self.nc, None
            await nc.close()


def sealed_request(
    agency: Any, url: str, hub_id: str, recipient: str
) -> tuple[str, str, bytes, dict[str, str]]:
    """A request as camhub-agency sends it through a relay: sealed to the hub, then signed."""
    body = sealed_bodies.seal(body_for(hub_id), recipient)
    return "POST", url, body, signed(agency, "POST", url, body, sealed_bodies.CONTENT_TYPE)


def fake_hub_id(i: int) -> str:
    return f"sim{i:08d}".ljust(43, "A")


def start(
    cmd: list[str], log: Path, ready: str | None = None, timeout: float = 30
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    deadline = time.monotonic() + timeout
    while ready is not None and ready not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[0]} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_node(tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp / f"js-{name}")],
        tmp / f"nats-{name}.log", "Server is ready",
    )  # fmt: skip
    return proc, f"nats://127.0.0.1:{port}"


def nats_cluster(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    ports, routes = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
    route_list = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
    procs = []
    for i in range(3):
        conf = tmp / f"c{i}.conf"
        conf.write_text(
            f"server_name: c{i}\nlisten: 127.0.0.1:{ports[i]}\njetstream {{ store_dir: {tmp / f'cjs{i}'} }}\n"
            f"cluster {{ name: bench, listen: 127.0.0.1:{routes[i]}, routes: [{route_list}] }}\n"
        )
        procs.append(start(["nats-server", "-c", str(conf)], tmp / f"c{i}.log", "Server is ready"))
    return procs, [f"nats://127.0.0.1:{p}" for p in ports]


def relay_proc(tmp: Path, urls: list[str], name: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "relay.cli", "--bind", "127.0.0.1", "--port", str(port), "--public-url", url,
           "--log-level", "warning", *UNLIMITED, *extra]  # fmt: skip
    for u in urls:
        cmd += ["--nats", u]
    return start(cmd, tmp / f"{name}.log", f"camhub-relay ready url={url}", timeout=60), url


# --- load ------------------------------------------------------------------------------------------


def body_for(hub_id: str) -> bytes:
    now = time.time()
    return json.dumps({
        "hub": hub_id, "case_id": "2026-1", "kind": "clip", "cameras": ["front-door"],
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 300)), "live_max_seconds": None,
        "reason": "bench", "legal_basis": {"type": "consent", "reference": None}, "contact": "bench",
    }).encode()  # fmt: skip


def signed(
    agency: Any, method: str, url: str, body: bytes, content_type: str = "application/json"
) -> dict[str, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    headers: list[tuple[str, str]] = [("Content-Type", content_type)] if body else []
    headers += httpsig.sign_request(
        method=method, authority=parts.netloc, path=parts.path, query=None, headers=headers, body=body,
        private_key=agency.key, keyid=agency.keyid, created=int(time.time()), scheme="http",
    )  # fmt: skip
    return dict(headers)


async def open_loop(
    http: aiohttp.ClientSession, make: Any, rate: float, seconds: float
) -> tuple[list[float], dict[int, int], list[Any]]:
    """Send `make(i)` → (method, url, body, headers) every 1/rate s for `seconds`, whatever the
    answers; latencies of the expected answers, status counts, and each answer's JSON (or None)."""
    n = max(1, int(rate * seconds))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answers: list[Any] = [None] * n

    async def one(i: int) -> None:
        method, url, body, headers = make(i)
        t = time.perf_counter()
        sent = t
        async with http.request(method, url, data=body or None, headers=headers) as r:
            data = await r.read()
            dt = time.perf_counter() - t
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.status in (200, 202):
            latencies.append(dt * 1000)
            try:
                answers[i] = (json.loads(data), sent)
            except ValueError:
                pass

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    async with asyncio.timeout(seconds + 60):
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, statuses, answers


def summary(lat: list[float]) -> dict[str, float]:
    return {"n": len(lat), "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2)}


async def measure(tmp: Path, smoke: bool) -> dict[str, Any]:
    from tests.consent.flow_env import new_agency, start_hub_env

    n_hubs, active, n_agencies = (50, 10, 10) if smoke else (1000, 50, 50)
    rate, seconds, rounds = (50.0, 1.0, 1) if smoke else (200.0, 8.0, 2)
    out: dict[str, Any] = {
        "simulated_hubs": n_hubs,
        "asked_hubs": active,
        "agencies": n_agencies,
        "rate_per_s": rate,
    }

    nats_p, nats_url = nats_node(tmp, "single")
    relay_p, relay_url = relay_proc(tmp, [nats_url], "relay")
    hub_env = None
    sims: list[SimHub] = []
    try:
        # A real hub, reached directly (the reference) and through the relay (relay-added latency).
        (tmp / "hub").mkdir()
        hub_env = start_hub_env(
            tmp / "hub", footage=False,
            hub="rate_limit_per_s = 100000\nrate_limit_burst = 1000000",
            consent="agency_requests_per_hour = 1000000",
            extra_config=f'\n[relay]\nurl = "{nats_url}"\npublic_url = "{relay_url}"\ncalls_per_s = 10000\ncalls_burst = 100000\n',
        )  # fmt: skip
        hub_recipient = str(hub_env.client().hub()["recipient"])
        agencies = [hub_env.agency]
        for i in range(1, n_agencies):
            a = new_agency(tmp / f"agency-{i}")
            hub_env.add_agency(a, f"Agency {i}")
            agencies.append(a)

        # 1. The simulated hubs, and what they cost at rest.
        client_rss0 = proc_stats(os.getpid())[1]
        nats_rss0 = proc_stats(nats_p.pid)[1]
        t = time.perf_counter()
        sims = [SimHub(fake_hub_id(i)) for i in range(n_hubs)]
        for batch in range(0, n_hubs, 50):
            await asyncio.gather(
                *(
                    s.connect([nats_url], consume=i < active)
                    for i, s in enumerate(sims[batch : batch + 50], batch)
                )
            )
        out["connect_seconds"] = round(time.perf_counter() - t, 2)
        idle_s = 2.0 if smoke else 5.0
        await asyncio.sleep(1.0)
        c_cpu0, c_rss1 = proc_stats(os.getpid())
        n_cpu0, n_rss1 = proc_stats(nats_p.pid)
        await asyncio.sleep(idle_s)
        c_cpu1, _ = proc_stats(os.getpid())
        n_cpu1, _ = proc_stats(nats_p.pid)
        out["idle_connection"] = {
            "client_rss_kib_per_hub": round((c_rss1 - client_rss0) / n_hubs / 1024, 1),
            "nats_rss_kib_per_hub": round((n_rss1 - nats_rss0) / n_hubs / 1024, 1),
            "client_cpu_pct_all_hubs": round(100 * (c_cpu1 - c_cpu0) / idle_s, 2),
            "nats_cpu_pct_all_hubs": round(100 * (n_cpu1 - n_cpu0) / idle_s, 2),
            "idle_window_s": idle_s,
        }

        # 2./4. request → 202, relay vs direct, alternating; relay CPU/RSS over its windows.
        relayed: list[float] = []
        direct: list[float] = []
        to_hub: list[float] = []
        statuses_relay: dict[int, int] = {}
        statuses_direct: dict[int, int] = {}
        relay_cpu_s = relay_wall_s = 0.0
        relay_rss = 0
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(rounds):
                targets = [random.randrange(active) for _ in range(int(rate * seconds))]

                # Sealed and signed before the round, so that the client's own work (age, Ed25519)
                # does not delay the requests it measures; the same sealed requests go to the hub.
                n = int(rate * seconds)
                via = [
                    sealed_request(
                        agencies[i % n_agencies], f"{relay_url}/hubs/{sims[targets[i]].hub_id}/api/agency/v1/requests",
                        sims[targets[i]].hub_id, sims[targets[i]].recipient,
                    )
                    for i in range(n)
                ]  # fmt: skip
                direct_url = f"{hub_env.url}/api/agency/v1/requests"
                to = [
                    sealed_request(agencies[i % n_agencies], direct_url, hub_env.hub_id, hub_recipient)
                    for i in range(n)
                ]

                def via_relay(i: int, via: list[Any] = via) -> tuple[str, str, bytes, dict[str, str]]:
                    return via[i]  # type: ignore[no-any-return]

                def to_direct(i: int, to: list[Any] = to) -> tuple[str, str, bytes, dict[str, str]]:
                    return to[i]  # type: ignore[no-any-return]

                cpu0, _ = proc_stats(relay_p.pid)
                w0 = time.perf_counter()
                lat, st, answers = await open_loop(http, via_relay, rate, seconds)
                relay_wall_s += time.perf_counter() - w0
                cpu1, rss = proc_stats(relay_p.pid)
                relay_cpu_s += cpu1 - cpu0
                relay_rss = max(relay_rss, rss)
                relayed += lat
                for k, v in st.items():
                    statuses_relay[k] = statuses_relay.get(k, 0) + v
                # From sending to the simulated hub holding it (relay → JetStream → its pull consumer).
                deadline = time.monotonic() + 20
                pending = [(a[0]["id"], a[1]) for a in answers if a is not None]
                while time.monotonic() < deadline:
                    if all(any(rid in s.received for s in sims[:active]) for rid, _ in pending):
                        break
                    await asyncio.sleep(0.05)
                for rid, at in pending:
                    got = next((s.received[rid] for s in sims[:active] if rid in s.received), None)
                    if got is not None:
                        to_hub.append((got - at) * 1000)
                lat, st, _ = await open_loop(http, to_direct, rate, seconds)
                direct += lat
                for k, v in st.items():
                    statuses_direct[k] = statuses_direct.get(k, 0) + v

            # 3. A call that needs the hub: polls of the real hub, through the relay and directly.
            rid = (await (await http.post(
                f"{hub_env.url}/api/agency/v1/requests", data=body_for(hub_env.hub_id),
                headers=signed(agencies[0], "POST", f"{hub_env.url}/api/agency/v1/requests", body_for(hub_env.hub_id)),
            )).json())["id"]  # fmt: skip
            poll_rate, poll_s = (20.0, 1.0) if smoke else (50.0, 4.0)
            poll_relay: list[float] = []
            poll_direct: list[float] = []
            for _ in range(rounds):
                url_r = f"{relay_url}/hubs/{hub_env.hub_id}/api/agency/v1/requests/{rid}"
                url_d = f"{hub_env.url}/api/agency/v1/requests/{rid}"
                lat, _, _ = await open_loop(
                    http,
                    lambda i, u=url_r: ("GET", u, b"", signed(agencies[0], "GET", u, b"")),
                    poll_rate,
                    poll_s,
                )
                poll_relay += lat
                lat, _, _ = await open_loop(
                    http,
                    lambda i, u=url_d: ("GET", u, b"", signed(agencies[0], "GET", u, b"")),
                    poll_rate,
                    poll_s,
                )
                poll_direct += lat
        out["request_to_202"] = {
            "relay": summary(relayed), "direct_hub": summary(direct),
            "relay_statuses": statuses_relay, "direct_statuses": statuses_direct,
        }  # fmt: skip
        out["send_to_hub_ms"] = summary(to_hub) | {"delivered": len(to_hub), "accepted": len(relayed)}
        out["poll"] = {"relay": summary(poll_relay), "direct_hub": summary(poll_direct)}
        out["relay_added_p50_ms"] = round(
            out["poll"]["relay"]["p50_ms"] - out["poll"]["direct_hub"]["p50_ms"], 2
        )
        out["relay_process"] = {
            "cpu_pct_of_a_core_under_load": round(100 * relay_cpu_s / max(relay_wall_s, 1e-9), 1),
            "rss_mib": round(relay_rss / 2**20, 1),
        }
    finally:
        for s in sims:
            await s.close()
        if hub_env is not None:
            hub_env.stop()
        stop(relay_p)
        stop(nats_p)

    # 5. A node killed under load.
    out["node_killed"] = await node_killed(tmp / "cluster", agencies, smoke)
    return out


async def node_killed(tmp: Path, agencies: list[Any], smoke: bool) -> dict[str, Any]:
    await asyncio.to_thread(tmp.mkdir)
    procs, urls = nats_cluster(tmp)
    relay_p = None
    sims: list[SimHub] = []
    try:
        relay_p, relay_url = relay_proc(tmp, urls, "relay-cluster", "--replicas", "3")
        sims = [SimHub(fake_hub_id(90_000 + i)) for i in range(5 if smoke else 20)]
        await asyncio.gather(*(s.connect(urls, consume=True) for s in sims))
        rate, seconds = (30.0, 2.0) if smoke else (100.0, 6.0)

        prepared = [
            sealed_request(
                agencies[i % len(agencies)], f"{relay_url}/hubs/{sims[i % len(sims)].hub_id}/api/agency/v1/requests",
                sims[i % len(sims)].hub_id, sims[i % len(sims)].recipient,
            )
            for i in range(int(rate * seconds))
        ]  # fmt: skip

        def make(i: int) -> tuple[str, str, bytes, dict[str, str]]:
            return prepared[i]  # type: ignore[no-any-return]

        async def kill_later() -> None:
            await asyncio.sleep(seconds / 3)
            procs[0].kill()

        killer = asyncio.create_task(kill_later())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            lat, statuses, answers = await open_loop(http, make, rate, seconds)
        await killer
        accepted = {a[0]["id"] for a in answers if a is not None}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = set().union(*(s.received for s in sims))
            if accepted <= got:
                break
            await asyncio.sleep(0.1)
        got = set().union(*(s.received for s in sims))
        return {
            "requests": int(rate * seconds), "accepted_202": len(accepted), "statuses": statuses,
            "reached_hubs": len(accepted & got), "lost": len(accepted - got), "p99_ms": round(percentile(lat, 99), 1),
        }  # fmt: skip
    finally:
        for s in sims:
            await s.close()
        if relay_p is not None:
            stop(relay_p)
        for p in procs:
            stop(p)


def run(smoke: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camhub-relay-bench-") as tmp:
        figures = asyncio.run(measure(Path(tmp), smoke))
    if figures["request_to_202"]["relay"]["n"] == 0:
        raise RuntimeError(f"the relay accepted no request: {figures['request_to_202']['relay_statuses']}")
    r = figures["request_to_202"]["relay"]
    added = figures["relay_added_p50_ms"]
    lost = figures["node_killed"]["lost"]
    meets = r["p99_ms"] <= P99_TARGET_MS and added <= ADDED_P50_TARGET_MS and lost == 0
    d = figures["request_to_202"]["direct_hub"]
    idle = figures["idle_connection"]
    result = {
        "smoke": smoke,
        **figures,
        "target": "request→202 p99 ≤ 50 ms at 200/s; relay-added p50 ≤ 10 ms; no request lost",
        "meets_target": bool(meets),
        "summary": (
            f"{figures['simulated_hubs']} hubs, {figures['agencies']} agencies, {figures['rate_per_s']:.0f} req/s: "
            f"request→202 via relay p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms (hub direct p50 "
            f"{d['p50_ms']:.1f} p99 {d['p99_ms']:.1f}); sent→in the hub's hands p50 {figures['send_to_hub_ms']['p50_ms']:.1f} ms; "
            f"relay-added p50 {added:.1f} ms (poll via relay {figures['poll']['relay']['p50_ms']:.1f} vs "
            f"{figures['poll']['direct_hub']['p50_ms']:.1f}); relay {figures['relay_process']['cpu_pct_of_a_core_under_load']}% "
            f"of a core, {figures['relay_process']['rss_mib']} MiB; idle hub link {idle['nats_rss_kib_per_hub']} KiB "
            f"nats + {idle['client_rss_kib_per_hub']} KiB client; node killed: {lost} of "
            f"{figures['node_killed']['accepted_202']} lost"
        ),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_bench")
    parser.add_argument("--smoke", action="store_true", help="50 hubs, 10 agencies, 50 req/s for 1 s")
    args = parser.parse_args(argv)
    result = run(args.smoke)
    r = result["request_to_202"]
    print(f"request→202  relay  {r['relay']}  statuses {r['relay_statuses']}")
    print(f"request→202  direct {r['direct_hub']}  statuses {r['direct_statuses']}")
    print(f"poll         relay  {result['poll']['relay']}  direct {result['poll']['direct_hub']}")
    print(f"sent→hub      {result['send_to_hub_ms']}")
    print(f"idle         {result['idle_connection']}")
    print(f"relay        {result['relay_process']}")
    print(f"node killed  {result['node_killed']}")
    print(result["summary"])
    (RESULTS / "relay.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
