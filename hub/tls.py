"""HTTPS on the LAN: a small local CA and a server certificate for `<name>.local` and the LAN addresses.

WebCrypto (the owner's non-extractable signing key) exists only in secure contexts, so a browser on
the LAN must reach the hub over HTTPS. No public CA will certify `front-porch.local`, so on first
start the hub makes its own CA (ECDSA P-256), prints the CA's SHA-256 fingerprint on the console
and serves the CA certificate at `GET /ca.crt`; the owner compares the fingerprint once and trusts
it on each device.

The CA carries an RFC 5280 §4.2.1.10 name constraint permitting only the hub's own names and
addresses (each address with a full-length mask, no private range): even if its key leaked, it
could not be used to impersonate any other site or LAN device to a browser that trusts it. The server certificate is re-issued whenever the configured names change or it is
within 30 days of expiry; the CA is kept, so devices need to trust it only once.

Files under `keys/` (private keys mode 0600, written atomically): `web-ca.key`, `web-ca.crt`,
`web.key`, `web.crt`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from camhub_protocol.keys import write_secret

log = logging.getLogger(__name__)

CA_LIFETIME = dt.timedelta(days=3650)
# Browsers refuse server certificates valid for more than 398 days (CA/B Forum; Apple, Chrome).
SERVER_LIFETIME = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path
    ca_sha256: str
    """SHA-256 of the CA certificate's DER, as colon-separated hex (what browsers show)."""

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def server_names(hub_name: str, addresses: list[str]) -> tuple[list[str], list[IPAddress]]:
    """DNS names and IP addresses the server certificate covers: `<name>.local`, localhost, the LAN."""
    dns = [f"{hub_name.lower()}.local", "localhost"]
    ips: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for a in addresses:
        ip = ipaddress.ip_address(a)
        if not ip.is_unspecified and ip not in ips:
            ips.append(ip)
    return dns, ips


def interface_addresses() -> list[str]:
    """Every IPv4/IPv6 unicast address of this box's interfaces (for a hub bound to 0.0.0.0 / ::)."""
    import ifaddr  # zeroconf's own dependency

    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                continue
            if not (addr.is_link_local or addr.is_multicast or addr.is_unspecified):
                out.append(str(addr))
    return out


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _network(ip: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")


def _make_ca(
    hub_name: str, dns: list[str], ips: list[IPAddress], now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"camhub {hub_name} local CA")])
    # Permit exactly the hub's own names and addresses (RFC 5280 §4.2.1.10: an address with a
    # full-length mask). Permitting every private range, as before, would have let a leaked CA key
    # impersonate every router, NAS and printer on any home LAN to the devices that trust it
    # (issue 12). The price: when the hub's LAN address changes, `ensure` makes a new CA and the
    # owner trusts it again (a DHCP reservation for the box avoids that).
    nets = [_network(ip) for ip in ips]
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    permitted += [x509.IPAddress(n) for n in nets]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    dns: list[str],
    ips: list[IPAddress],
    now: dt.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in ips]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _covers(cert: x509.Certificate, dns: list[str], ips: list[IPAddress], now: dt.datetime) -> bool:
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(san.get_values_for_type(x509.DNSName)) == set(dns) and set(
        san.get_values_for_type(x509.IPAddress)
    ) == set(ips)


def _ca_permits(ca_cert: x509.Certificate, dns: list[str], ips: list[IPAddress]) -> bool:
    """Whether the CA's name constraints allow every name and address the server must carry."""
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return True
    subtrees = constraints.permitted_subtrees or []
    names = {n.value for n in subtrees if isinstance(n, x509.DNSName)}
    nets = [n.value for n in subtrees if isinstance(n, x509.IPAddress)]
    return set(dns) <= names and all(any(ip in net for net in nets) for ip in ips)


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ca_too_broad(ca_cert: x509.Certificate) -> bool:
    """A CA from before issue 12, whose constraints permit whole private ranges (see `_make_ca`)."""
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return True
    nets = [n.value for n in constraints.permitted_subtrees or [] if isinstance(n, x509.IPAddress)]
    return any(net.prefixlen != net.max_prefixlen for net in nets)


def ensure(keys_dir: Path, hub_name: str, addresses: list[str], now: dt.datetime | None = None) -> TlsFiles:
    """Load the local CA and server certificate, making or re-issuing what is missing or stale.

    Blocking (key generation, file I/O): call it from a thread.
    """
    now = now or dt.datetime.now(dt.UTC)
    dns, ips = server_names(hub_name, addresses)
    ca_key_path, ca_path = keys_dir / "web-ca.key", keys_dir / "web-ca.crt"
    key_path, cert_path = keys_dir / "web.key", keys_dir / "web.crt"
    ca_key = ca_cert = None
    if ca_key_path.exists() and ca_path.exists():
        ca_key = _load_key(ca_key_path)
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        if not _ca_permits(ca_cert, dns, ips):
            # Renamed, or now on a public address: the CA is constrained to the old names, so devices
            # must trust a new one (a certificate outside the constraints would be rejected anyway).
            log.warning(
                "hub name or address outside the local CA's constraints: making a new CA (trust it again)"
            )
            ca_key = ca_cert = None
        elif _ca_too_broad(ca_cert):
            log.warning(
                "the local CA permits whole private address ranges: making a new CA limited to this"
                " hub's names and addresses (trust it again on each device)"
            )
            ca_key = ca_cert = None
    if ca_key is None or ca_cert is None:
        ca_key, ca_cert = _make_ca(hub_name, dns, ips, now)
        write_secret(ca_key_path, _key_pem(ca_key))
        write_secret(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        ca_path.chmod(0o644)
        log.info("created local HTTPS CA for %s.local", hub_name)
    current = x509.load_pem_x509_certificate(cert_path.read_bytes()) if cert_path.exists() else None
    if (
        current is None
        or not key_path.exists()
        or not _covers(current, dns, ips, now)
        or current.issuer != ca_cert.subject  # the CA was replaced: its old certificate chains to nothing
        or not _signed_by(current, ca_cert)
    ):
        key, cert = _make_server(ca_key, ca_cert, dns, ips, now)
        write_secret(key_path, _key_pem(key))
        write_secret(
            cert_path,
            cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM),
        )
        log.info("issued HTTPS certificate for %s", ", ".join([*dns, *map(str, ips)]))
    return TlsFiles(ca_cert=ca_path, cert=cert_path, key=key_path, ca_sha256=fingerprint(ca_cert))
