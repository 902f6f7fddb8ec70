"""kill -9 at seeded random moments while the daemon records, handles an owner decision and builds the
approved delivery; restart after each kill. After every restart: nothing approved is lost (every
approval that was answered 201 ends fulfilled and fetchable), nothing unapproved is sent (a request
never approved stays pending with no delivery and no egress), and at the end every completed segment
is intact and indexed, `PRAGMA integrity_check` is ok and the audit chain verifies."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

from tests.consent.flow_env import CAMERA, HubEnv, Response
from tests.faults.hubproc import SimProcess, audit_verify, check_store, db, hub_env, start_hub, until

ROUNDS = 5  # each round: one kill while recording, one during a decision, one during the delivery build


def _kill_and_restart(env: HubEnv, n: int) -> None:
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.proc.wait(10)
    env.extra_daemons.append(env.daemon)
    env.daemon = start_hub(env.config, env.tmp / f"daemon-{n}.log")
    env.daemon.wait_ready()


def _post(env: HubEnv, compact: str, answer: list[Response]) -> None:
    try:
        answer.append(env.post_decision(compact))
    except OSError:
        pass  # the daemon died under the request: no answer


def _state(env: HubEnv, request_id: str) -> str:
    conn = db(env.data_dir)
    try:
        return conn.execute("SELECT state FROM consent_requests WHERE id = ?", (request_id,)).fetchone()[0]
    finally:
        conn.close()


def _deliveries(env: HubEnv) -> dict[str, int]:
    conn = db(env.data_dir)
    try:
        rows = conn.execute("SELECT request_id, count(*) FROM deliveries GROUP BY request_id").fetchall()
    finally:
        conn.close()
    return {r[0]: r[1] for r in rows}


def test_kill9_during_recording_decisions_and_deliveries(tmp_path: Path) -> None:
    rng = random.Random(9)
    sim = SimProcess(tmp_path, 1)
    env = hub_env(tmp_path, "[storage]\nsegment_seconds = 1\n" + sim.camera_toml("sim-1"))
    restarts = 0
    answered_before_kill = 0
    approved: dict[str, str] = {}  # request id -> sha, answered 201
    try:
        # A request the owner never answers: nothing of it may ever leave.
        never_id, _ = env.submit(env.t0 + 5, env.t0 + 15)
        for i in range(ROUNDS):
            # 1. While recording.
            until(lambda: env.daemon.proc.poll() is None, 5, "daemon up")
            time.sleep(rng.uniform(0.5, 2.5))
            restarts += 1
            _kill_and_restart(env, restarts)

            # 2. During decision handling: the kill lands while the POST is in flight (or just after).
            start = env.t0 + 5 + i * 12
            rid, sha = env.submit(start, start + 10)
            compact = env.sign(env.approval(rid, sha, start, start + 10))
            answer: list[Response] = []
            poster = threading.Thread(target=_post, args=(env, compact, answer))
            poster.start()
            time.sleep(rng.uniform(0.0, 0.06))
            restarts += 1
            _kill_and_restart(env, restarts)
            poster.join(40)
            if answer and answer[0].status == 201:
                approved[rid] = sha
                answered_before_kill += 1
            # Answered or not, the request is either approved or still pending (never half-decided),
            # and one answered 201 is approved (durable). The agency's poll says `pending` until the
            # delivery exists (§2.2), so this reads the hub's own state.
            state = _state(env, rid)
            assert state in ("pending", "approved"), state
            if rid in approved:
                assert state == "approved", state
            if state == "approved":
                approved[rid] = sha  # applied, though the answer may have died with the daemon
            else:
                r = env.decide(env.approval(rid, sha, start, start + 10))
                assert r.status == 201, r.body
                approved[rid] = sha

            # 3. During the delivery build the approval started (it runs after the 201).
            time.sleep(rng.uniform(0.0, 0.3))
            restarts += 1
            _kill_and_restart(env, restarts)

        # Nothing approved is lost: every approved request is fulfilled (rebuilt at start if the build
        # was killed) and its delivery fetches and verifies.
        for rid in approved:
            env.wait_status(rid, "fulfilled", timeout=60)
            fetched = env.client().fetch(rid, tmp_path / "fetched" / rid)
            assert fetched and fetched[0]["camera"] == CAMERA
        # Nothing unapproved is sent.
        assert env.poll(never_id).json()["status"] == "pending" and _state(env, never_id) == "pending"
        assert never_id not in _deliveries(env)
        egress = [e for e in env.audit_entries() if e["type"].startswith("egress")]
        assert {e["data"]["request_id"] for e in egress} <= set(approved), egress
        audit_verify(env, tmp_path / "audit-export")
        env.stop()
    finally:
        try:
            env.stop()
        finally:
            sim.stop()
    # Every completed segment is intact and indexed; recovery left no unindexed file or `.part`.
    rows = check_store(env.data_dir)
    indexed = {r["path"] for r in rows}
    on_disk = {
        str(p.relative_to(env.data_dir / "segments")) for p in (env.data_dir / "segments").rglob("*.mp4")
    }
    assert on_disk == indexed, sorted(on_disk ^ indexed)
    assert list((env.data_dir / "segments").rglob("*.part")) == []
    print(
        f"restarts={restarts} approved={len(approved)} (answered before the kill: {answered_before_kill}) segments={len(rows)}"
    )
