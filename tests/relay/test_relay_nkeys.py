"""A relay whose NATS asks for nkeys (PROTOCOL §7.7): the gateway and the hub each log in with their
own seed file, and the hub's user holds only what `camhub-relay hub-user` prints for it. Under those
permissions the whole relayed flow works (queue, live calls, a streamed delivery); with the same
seed, nothing of another hub can be read, pulled or answered; and a hub without the right seed is
refused, says why in its log, and keeps running.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import nkeys
import pytest
from nats.errors import TimeoutError as NatsTimeout

from camhub_protocol import relay_wire as wire
from tests.conftest import free_port
from tests.consent.flow_env import CAMERA, HubEnv, start_hub_env
from tests.relay.env import NatsNode, need_nats, relay_config, start_relay, stopping, wait_for
from tests.relay.test_relay_e2e import agency_cli, decide_through_relay, registered

OTHER_HUB = "O" * 43
AREA = "u33db"  # the hub opted in to area requests: its area consumer needs its permissions too


def new_user(path: Path) -> str:
    """A user nkey as an operator makes one: the seed in a 0600 file, the public key returned."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return nkeys.from_seed(seed).public_key.decode()


def hub_user_entry(hub_id: str, nkey: str, area: str | None = None) -> dict[str, object]:
    """What the operator pastes into the NATS config, from the relay's own CLI."""
    args = [sys.executable, "-m", "relay.cli", "hub-user", f"--hub-id={hub_id}", "--nkey", nkey]
    if area:
        args += ["--area", area]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    entry: dict[str, object] = json.loads(out)
    return entry


def nkey_node(tmp: Path, port: int, users: list[dict[str, object]]) -> NatsNode:
    need_nats()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nats.conf"
    # nats-server reads JSON inside its config; quoted strings keep `$JS…` literal (not a variable).
    conf.write_text(
        f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {json.dumps(str(tmp / 'js'))} }}\n"
        f"authorization {{ users = {json.dumps(users)} }}\n"
    )
    node = NatsNode("auth", port, tmp / "js", tmp / "nats.log", ["-c", str(conf)])
    node.start()
    return node


async def _can_subscribe(url: str, seed: Path, subject: str) -> bool:
    """True if the server lets this user read `subject` (a refused SUB is reported asynchronously)."""
    refused: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        refused.append(exc)

    nc = await nats.connect(url, nkeys_seed=str(seed), error_cb=on_error, allow_reconnect=False,
                            inbox_prefix=wire.hub_inbox_prefix(OTHER_HUB))  # fmt: skip
    try:
        await nc.subscribe(subject)
        await nc.flush(timeout=5)
        await asyncio.sleep(0.3)  # the -ERR for a refused subscription follows the PONG
        return not any("ermissions" in str(e) for e in refused)
    finally:
        await nc.close()


async def _can_pull(url: str, seed: Path, stream: str, durable: str, inbox: str = "_INBOX") -> bool:
    nc = await nats.connect(url, nkeys_seed=str(seed), allow_reconnect=False, inbox_prefix=inbox)
    try:
        await nc.jetstream(timeout=3).consumer_info(stream, durable)
        return True
    except NatsTimeout:  # a refused publish never gets an answer
        return False
    finally:
        await nc.close()


@pytest.mark.timeout(300)
def test_hub_and_relay_log_in_with_nkeys_and_a_hub_user_reaches_only_its_own_subjects(tmp_path: Path) -> None:
    port = free_port()
    nats_url = f"nats://127.0.0.1:{port}"
    relay_public = new_user(tmp_path / "relay.nk")
    hub_public = new_user(tmp_path / "hub.nk")
    # The hub first (its id is its key's thumbprint), pointed at a NATS that is not up yet: it retries.
    (tmp_path / "hub").mkdir()
    hub: HubEnv = start_hub_env(
        tmp_path / "hub",
        extra_config=relay_config(
            [nats_url], "http://127.0.0.1:1", area=AREA, extra=f'nkey_seed_file = "{tmp_path / "hub.nk"}"\n'
        ),
    )
    relay_port = free_port()
    # The relay's public URL must be the one the hub was told, or the hub refuses every signature.
    hub.stop()
    cfg = hub.config.read_text().replace("http://127.0.0.1:1", f"http://127.0.0.1:{relay_port}")
    hub.config.write_text(cfg)
    hub.restart()

    users = [{"nkey": relay_public}, hub_user_entry(hub.hub_id, hub_public, AREA)]
    node = nkey_node(tmp_path / "nats", port, users)
    relay = start_relay(tmp_path, [nats_url], "--nkey-seed-file", str(tmp_path / "relay.nk"), port=relay_port)
    with stopping(node, relay, hub):
        wait_for(
            lambda: registered(relay, hub.hub_id), 60, "the hub registered with the relay under its nkey"
        )

        # The whole relayed flow under the hub's narrow permissions (the hub pulls nothing until both its
        # consumers, queue and area, are made): the queue (pull, ack), a live call
        # (the decision) and a streamed delivery (credit on the hub's own inbox).
        start, end = hub.t0 + 10, hub.t0 + 30
        asked = agency_cli(
            "request", "--relay", relay.url, "--hub", hub.hub_id, "--key", str(hub.agency.directory),
            "--camera", CAMERA, "--start", wire_time(start), "--end", wire_time(end),
            "--case-id", "2026-000778", "--reason", "parcel taken", "--contact", "desk@pd.example",
        )  # fmt: skip
        request_id = asked["id"]
        wait_for(lambda: hub.poll(request_id).status == 200, 60, "the hub pulled the request from its queue")
        hub_url = f"{relay.url}/hubs/{hub.hub_id}"
        decide_through_relay(hub_url, hub.sign(hub.approval(request_id, asked["request_sha256"], start, end)))
        fetched = agency_cli(
            "fetch", "--relay", relay.url, "--hub", hub.hub_id, "--key", str(hub.agency.directory),
            "--out", str(tmp_path / "fetched"), "--", request_id,
        )  # fmt: skip
        assert len(fetched) == 1 and Path(fetched[0]["encrypted"]).stat().st_size > 0
        assert "ermissions Violation" not in hub.daemon.log(), hub.daemon.log()[-3000:]

        # The same seed, used by anyone holding it, reaches nothing of another hub.
        own = wire.call_subject(hub.hub_id)
        assert asyncio.run(_can_subscribe(nats_url, tmp_path / "hub.nk", own)), (
            "the check itself must see a yes"
        )
        for subject in (wire.call_subject(OTHER_HUB), wire.queue_subject(OTHER_HUB), "_RELAY.>", "camhub.>",
                        f"{wire.hub_inbox_prefix(OTHER_HUB)}.>"):  # fmt: skip
            assert not asyncio.run(_can_subscribe(nats_url, tmp_path / "hub.nk", subject)), subject
        own_inbox = wire.hub_inbox_prefix(hub.hub_id)
        queue, durable = wire.QUEUE_STREAM, wire.consumer_name(hub.hub_id)
        assert asyncio.run(_can_pull(nats_url, tmp_path / "hub.nk", queue, durable, own_inbox))
        assert not asyncio.run(
            _can_pull(nats_url, tmp_path / "hub.nk", queue, wire.consumer_name(OTHER_HUB), own_inbox)
        )

        # A hub whose seed the server does not know is refused; it says so and keeps recording.
        hub.stop()
        new_user(tmp_path / "hub.nk")  # the file now holds a key the operator never allowed
        hub.restart()
        wait_for(lambda: "uthorization" in hub.daemon.log(), 30, "the refusal in the hub's log")
        assert hub.poll(request_id).status == 200  # the hub itself answers on the LAN as before


def wire_time(t: float) -> str:
    from camhub_protocol import rfc3339

    return rfc3339.format(t)


def test_hub_user_refuses_what_is_not_a_hub_id_nkey_or_cell() -> None:
    for args in (["--hub-id", "short", "--nkey", "U" + "A" * 55], ["--hub-id=" + "A" * 43, "--nkey", "S" + "A" * 55],
                 ["--hub-id=" + "A" * 43, "--nkey", "U" + "A" * 55, "--area", "aaaaa"]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "relay.cli", "hub-user", *args], capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
        assert proc.returncode == 2 and "must be" in proc.stderr, (args, proc.stderr)
