"""ICE host candidates follow `[hub] ice_addresses` (hub/egress/ice.py patches one aioice function)."""

from __future__ import annotations

import aioice
import aioice.ice
import pytest

from hub.config import HubConfig
from hub.egress import ice


async def gathered_hosts() -> set[str]:
    conn = aioice.Connection(ice_controlling=True, components=1, use_ipv6=True)
    try:
        await conn.gather_candidates()
        return {c.host for c in conn.local_candidates}
    finally:
        await conn.close()


async def test_only_configured_addresses_become_candidates() -> None:
    original = aioice.ice.get_host_addresses
    with ice.host_addresses(["127.0.0.1"]):
        assert ice.current_host_addresses() == ("127.0.0.1",)
        assert await gathered_hosts() == {"127.0.0.1"}
        # Families ICE did not ask for are left out.
        with ice.host_addresses(["127.0.0.1", "::1"]):
            assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]
            assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert ice.current_host_addresses() == ("127.0.0.1",)
    # Restored to what was in force before (the autouse loopback fixture's setting).
    assert aioice.ice.get_host_addresses is original
    assert ice.current_host_addresses() == ("127.0.0.1",)


def test_empty_means_aioice_default_and_bad_addresses_are_refused() -> None:
    with ice.host_addresses([]):
        assert ice.current_host_addresses() == ()
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    with pytest.raises(ValueError), ice.host_addresses(["eth0"]):
        pass


def test_no_stun_or_turn_servers() -> None:
    assert ice.rtc_configuration().iceServers == []


def test_addresses_for_config() -> None:
    assert ice.addresses_for(HubConfig(ice_addresses=("192.0.2.2",))) == ("192.0.2.2",)
    # A hub reachable only on loopback must offer loopback (aioice's default never does).
    assert ice.addresses_for(HubConfig(bind="127.0.0.1")) == ("127.0.0.1",)
    assert ice.addresses_for(HubConfig(bind="::1")) == ("::1",)
    assert ice.addresses_for(HubConfig(bind="0.0.0.0")) == ()
