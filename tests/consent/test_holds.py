"""Retention holds follow consent writes at once, without re-reading every pending request.

In-process hub (`running_hub`) so the test can read `ConsentService.holds()`, the snapshot retention
consults; requests and decisions go over HTTP, signed, as an agency and the owner send them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pyrage import x25519

from bench.consent_flow_bench import Bench
from camhub_protocol.keys import okp_public_jwk
from hub import config as config_mod
from hub.consent import pairing
from hub.daemon import running_hub
from hub.services import Services


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[Services, Bench]]:
    cfg = config_mod.parse(
        {"hub": {"data_dir": str(tmp_path), "port": 0, "log_level": "warning"},
         "consent": {"trust_system_clock": True}, "discovery": {"enabled": False}}
    )  # fmt: skip
    async with running_hub(cfg) as s, aiohttp.ClientSession() as http:
        b = Bench(s.base_url, s.hub_key.hub_id, http)
        code = await s.store.run(pairing.issue)
        async with http.post(
            b.url + "/api/v1/owner/enroll",
            json={"pairing_code": code, "public_jwk": okp_public_jwk(b.owner.public_key()), "name": "o"},
        ) as r:
            assert r.status == 201
        recipient = str(x25519.Identity.generate().to_public())
        await b.decide(
            {
                "decision": "add-agency",
                "subject": {"name": "A", "sig_jwk": b.agency_jwk, "recipient": recipient},
            }
        )
        yield s, b


async def test_a_new_request_is_held_at_once_and_once(hub: tuple[Services, Bench]) -> None:
    s, b = hub
    now = float(int(time.time()))
    start, end = now - 600, now - 300
    assert s.consent.holds() == []
    first, sha = await b.submit(["front-door", "garden"], start, end)
    assert sorted(s.consent.holds()) == [("front-door", start, end), ("garden", start, end)]
    await b.submit(["front-door"], start, end)  # another agency's view of the same incident
    assert sorted(s.consent.holds()) == [("front-door", start, end), ("garden", start, end)]
    # A full refresh (as after any decision) agrees with the incremental snapshot.
    await s.consent.refresh_holds()
    assert sorted(s.consent.holds()) == [("front-door", start, end), ("garden", start, end)]
    # Declining the first leaves only the second request's camera held.
    await b.decide({"decision": "decline", "request_id": first, "request_sha256": sha, "recipient": b.keyid})
    assert s.consent.holds() == [("front-door", start, end)]


async def test_a_hold_added_during_a_refresh_survives_it(hub: tuple[Services, Bench]) -> None:
    """The refresh's query may have run before the new request's row was inserted."""
    s, _ = hub
    refresh = asyncio.create_task(s.consent.refresh_holds())
    await asyncio.sleep(0)  # the refresh has queued its query on the DB thread
    s.consent.add_holds(["porch"], 100.0, 200.0)
    await refresh
    assert ("porch", 100.0, 200.0) in s.consent.holds()
