"""Throwaway certificates for TLS tests: a CA, and a server certificate it signs for 127.0.0.1 / localhost.

Made with ``cryptography`` at test time (nothing is fetched, nothing is kept): EC P-256 keys, valid from an
hour ago for a day, written as PEM files.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_DNS_NAMES = ("localhost",)
SERVER_IP_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    cert_file: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return builder.not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_ca(directory: Path, name: str = "etl-test-ca") -> CertificateAuthority:
    """A self-signed CA; its certificate is written to ``directory/<name>.crt`` (the key stays in memory)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    certificate = builder.sign(key, hashes.SHA256())
    cert_file = _write(directory / f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(name, cert_file, certificate, key)


def make_server_certificate(
    ca: CertificateAuthority,
    directory: Path,
    name: str = "server",
    dns_names: tuple[str, ...] = SERVER_DNS_NAMES,
    ip_addresses: tuple[str, ...] = SERVER_IP_ADDRESSES,
) -> ServerCertificate:
    """A server certificate signed by ``ca`` with SubjectAltName DNS ``dns_names`` and IP ``ip_addresses``."""
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name(dns_names[0] if dns_names else ip_addresses[0]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    certificate = builder.sign(ca.key, hashes.SHA256())
    cert_file = _write(directory / f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM))
    key_file = _write(
        directory / f"{name}.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    )
    key_file.chmod(0o600)
    return ServerCertificate(cert_file, key_file)
