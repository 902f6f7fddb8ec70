"""The local HTTPS CA and server certificate (hub/tls.py), checked with an independent X.509 verifier."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
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


def test_same_names_keep_the_cert_and_a_new_address_gets_a_new_ca(tmp_path: Path) -> None:
    first = tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    first_pem = first.cert.read_bytes()
    again = tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    assert again.cert.read_bytes() == first_pem  # nothing changed, nothing re-issued
    assert again.ca_sha256 == first.ca_sha256
    # The CA permits this hub's addresses only (issue 12), so a new DHCP address needs a new CA.
    moved = tls.ensure(tmp_path, "front-porch", ["192.168.1.77"])
    assert moved.ca_sha256 != first.ca_sha256
    _verify(moved, x509.IPAddress(ipaddress.ip_address("192.168.1.77")))


def _leaf_signed_by_ca(keys_dir: Path, name: x509.GeneralName) -> x509.Certificate:
    """What a thief holding the CA's private key would sign for another device on the LAN."""
    ca_key = serialization.load_pem_private_key((keys_dir / "web-ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((keys_dir / "web-ca.crt").read_bytes())
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def test_a_leaked_ca_key_cannot_vouch_for_other_lan_devices(tmp_path: Path) -> None:
    """Name constraints name the hub's own addresses, not every private range (issue 12)."""
    tls.ensure(tmp_path, "front-porch", ["192.168.1.10"])
    ca = x509.load_pem_x509_certificate((tmp_path / "web-ca.crt").read_bytes())
    nets = {
        n.value
        for n in ca.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees
        if isinstance(n, x509.IPAddress)
    }
    assert nets == {ipaddress.ip_network(a) for a in ("192.168.1.10/32", "127.0.0.1/32", "::1/128")}
    verifier_store = Store([ca])
    for other in ("192.168.1.1", "10.0.0.1", "fd00::1", "169.254.1.1"):
        ip = x509.IPAddress(ipaddress.ip_address(other))
        leaf = _leaf_signed_by_ca(tmp_path, ip)
        with pytest.raises(VerificationError):
            PolicyBuilder().store(verifier_store).build_server_verifier(ip).verify(leaf, [])
    # The same forgery for the hub's own address verifies: the refusals above are the constraints'.
    own = x509.IPAddress(ipaddress.ip_address("192.168.1.10"))
    PolicyBuilder().store(verifier_store).build_server_verifier(own).verify(
        _leaf_signed_by_ca(tmp_path, own), []
    )


def test_a_ca_that_permits_private_ranges_is_replaced(tmp_path: Path) -> None:
    """A hub made before issue 12 has a CA permitting all of 10/8, 172.16/12, 192.168/16, ...:
    the next start makes a constrained one."""
    files = tls.ensure(tmp_path, "hub", ["192.168.1.10"])
    ca_key = serialization.load_pem_private_key((tmp_path / "web-ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old camhub CA")])
    broad = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[
                    x509.DNSName("hub.local"),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_network("192.168.0.0/16")),
                    x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
                    x509.IPAddress(ipaddress.ip_network("::1/128")),
                ],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "web-ca.crt").write_bytes(broad.public_bytes(serialization.Encoding.PEM))
    again = tls.ensure(tmp_path, "hub", ["192.168.1.10"])
    assert again.ca_sha256 not in (files.ca_sha256, tls.fingerprint(broad))
    _verify(again, x509.IPAddress(ipaddress.ip_address("192.168.1.10")))


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
