"""The local HTTPS CA and server certificate (hub/tls.py), checked with an independent X.509 verifier."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from hub import tls


def _verify(files: tls.TlsFiles, name: x509.DNSName | x509.IPAddress) -> None:
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificates(files.cert.read_bytes())[0]
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
    verifier.verify(leaf, [])


def test_first_start_makes_a_constrained_ca_and_a_server_cert(tmp_path: Path) -> None:
    files = tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    for path in (tmp_path / "web-ca.key", files.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _verify(files, x509.DNSName("front-porch.local"))
    _verify(files, x509.IPAddress(ipaddress.ip_address("192.168.1.10")))
    _verify(files, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    with pytest.raises(VerificationError):
        _verify(files, x509.DNSName("example.com"))
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert files.ca_sha256 == tls.fingerprint(ca)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert x509.DNSName("front-porch.local") in constraints.value.permitted_subtrees


def test_new_address_reissues_the_server_cert_under_the_same_ca(tmp_path: Path) -> None:
    first = tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    first_pem = first.cert.read_bytes()
    again = tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    assert again.cert.read_bytes() == first_pem  # nothing changed, nothing re-issued
    moved = tls.ensure(tmp_path, "front-porch", ["192.168.1.77"])
    assert moved.ca_sha256 == first.ca_sha256  # devices keep trusting the same CA
    _verify(moved, x509.IPAddress(ipaddress.ip_address("192.168.1.77")))


def test_expiring_server_cert_is_renewed(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = tls.ensure(tmp_path, "hub", [], now=now - tls.SERVER_LIFETIME + dt.timedelta(days=5))
    old_pem = old.cert.read_bytes()
    renewed = tls.ensure(tmp_path, "hub", [], now=now)
    assert renewed.cert.read_bytes() != old_pem
    leaf = x509.load_pem_x509_certificates(renewed.cert.read_bytes())[0]
    assert leaf.not_valid_after_utc > now + dt.timedelta(days=300)


def test_renamed_hub_gets_a_new_ca(tmp_path: Path) -> None:
    first = tls.ensure(tmp_path, "porch", [])
    renamed = tls.ensure(tmp_path, "garage", [])
    assert renamed.ca_sha256 != first.ca_sha256
    _verify(renamed, x509.DNSName("garage.local"))


def test_interface_addresses_for_a_hub_on_every_interface(tmp_path: Path) -> None:
    addresses = tls.interface_addresses()
    assert "127.0.0.1" in addresses
    files = tls.ensure(tmp_path, "hub", ["0.0.0.0", *addresses])
    for a in addresses:
        _verify(files, x509.IPAddress(ipaddress.ip_address(a)))


def test_a_public_address_outside_the_constraints_gets_a_new_ca(tmp_path: Path) -> None:
    first = tls.ensure(tmp_path, "hub", ["192.168.1.10"])
    moved = tls.ensure(tmp_path, "hub", ["203.0.113.7"])  # not a private range: not permitted before
    assert moved.ca_sha256 != first.ca_sha256
    _verify(moved, x509.IPAddress(ipaddress.ip_address("203.0.113.7")))
