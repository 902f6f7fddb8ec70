"""§5 audit routes: the latest signed checkpoint covers the whole log, and the inclusion and
consistency proofs the hub serves verify (RFC 9162) against the roots it signed. Owner session only,
from the box itself too."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import aiohttp

from camhub_protocol.checkpoint import origin_for, parse_checkpoint
from camhub_protocol.merkle import verify_consistency, verify_inclusion
from hub import config as config_mod
from hub.api.session import hash_password
from hub.daemon import running_hub
from hub.store import web as web_q

PASSWORD = "correct horse battery"


async def test_checkpoint_and_proofs_verify(tmp_path: Path) -> None:
    cfg = config_mod.parse(
        {"hub": {"data_dir": str(tmp_path / "d"), "port": 0}, "consent": {"trust_system_clock": True},
         "discovery": {"enabled": False}}
    )  # fmt: skip
    # unsafe=True: the jar keeps cookies from an IP-address host (127.0.0.1), as a browser does.
    async with (
        running_hub(cfg) as s,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        assert s.consent is not None
        for path in ("/api/v1/audit/checkpoint", "/api/v1/audit/proof?seq=0&size=1",
                     "/api/v1/audit/consistency?from=1&to=1"):  # fmt: skip
            async with http.get(s.base_url + path) as r:  # no session, even from loopback
                assert r.status == 401 and (await r.json())["error"] == "no_session", path
        await s.store.run(web_q.set_password_if_unset, hash_password(PASSWORD, log_n=12), time.time())
        async with http.post(s.base_url + "/api/v1/session/login", json={"password": PASSWORD}) as r:
            assert r.status == 200
        for i in range(6):
            await s.consent.record("test.entry", "hub", {"i": i})
        size = s.consent.audit.size
        async with http.get(s.base_url + "/api/v1/audit/checkpoint") as r:
            assert r.status == 200
            cp = parse_checkpoint(await r.text(), s.hub_key.public_key, origin_for(s.hub_key.hub_id))
        assert cp.size == size  # the latest checkpoint covers every entry, not a stale one

        async with http.get(s.base_url + f"/api/v1/audit/proof?seq=3&size={size}") as r:
            proof = await r.json()
        leaf = hashlib.sha256(b"\x00" + proof["entry"].encode()).digest()  # RFC 9162 §2.1.1
        path = [base64.b64decode(h) for h in proof["inclusion_proof"]]
        assert verify_inclusion(3, size, leaf, path, cp.root)

        async with http.get(s.base_url + "/api/v1/audit/checkpoint") as r:
            old = parse_checkpoint(await r.text(), s.hub_key.public_key, origin_for(s.hub_key.hub_id))
        await s.consent.record("test.entry", "hub", {"i": 99})
        async with http.get(s.base_url + "/api/v1/audit/checkpoint") as r:
            new = parse_checkpoint(await r.text(), s.hub_key.public_key, origin_for(s.hub_key.hub_id))
        async with http.get(s.base_url + f"/api/v1/audit/consistency?from={old.size}&to={new.size}") as r:
            body = await r.json()
        proof_hashes = [base64.b64decode(h) for h in body["consistency_proof"]]
        assert verify_consistency(old.size, new.size, old.root, new.root, proof_hashes)

        for bad in ("seq=5&size=5", f"seq=0&size={size + 100}", "seq=-1&size=2", "seq=x&size=2"):
            async with http.get(s.base_url + "/api/v1/audit/proof?" + bad) as r:
                assert r.status == 400 and (await r.json())["error"] == "bad_request"
