"""The local cluster's certificate authority, certificates and keys, and the kubeconfig files that use them.

Every file is created owner-only (mode 0600, O_EXCL) before its first byte is written, inside a state
directory that is itself 0700: no other local user can read a key, not even for an instant.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONTEXT = "pgpool-k8s-local"


def write_private(path: Path, data: bytes) -> None:
    """Creates `path` with mode 0600 (refusing one that exists) and writes `data` to it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organization: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    def entry(name: str):
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            return x509.DNSName(name)
    return x509.SubjectAlternativeName([entry(name) for name in names])


def _certificate(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
                 server_names: tuple[str, ...] = (), client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    if server_names:
        builder = builder.add_extension(_san(server_names), critical=False)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """DIR/ca.crt and, per identity, DIR/<identity>.crt and .key; DIR/service-account.{key,pub}."""

    def __init__(self, directory: Path):
        self.dir = directory

    def cert(self, identity: str) -> Path:
        return self.dir / f"{identity}.crt"

    def key(self, identity: str) -> Path:
        return self.dir / f"{identity}.key"

    @property
    def ca(self) -> Path:
        return self.cert("ca")

    def create(self, identities: dict[str, tuple[x509.Name, tuple[str, ...], bool]]) -> None:
        """The CA, then one certificate per identity: (subject, server names, client use)."""
        self.dir.mkdir(mode=0o700)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("pgpool-k8s local cluster CA")
        ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        write_private(self.key("ca"), _pem_key(ca_key))
        for identity, (subject, server_names, client) in identities.items():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(subject, key, ca_name, ca_key, server_names=server_names, client=client)
            self.cert(identity).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            write_private(self.key(identity), _pem_key(key))
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(self.dir / "service-account.key", _pem_key(signing))
        (self.dir / "service-account.pub").write_bytes(signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def write_kubeconfig(self, path: Path, server: str, identity: str) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": identity, "user": {
                "client-certificate": str(self.cert(identity)), "client-key": str(self.key(identity))}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": identity}}],
        }
        write_private(path, yaml.safe_dump(config).encode())


def client(common_name: str, organization: str = "") -> tuple[x509.Name, tuple[str, ...], bool]:
    """An identity that authenticates to a server by its certificate."""
    return _name(common_name, organization), (), True


def server(common_name: str, names: tuple[str, ...], *, also_client: bool = False) -> tuple[x509.Name, tuple[str, ...], bool]:
    """An identity that serves TLS under `names` (IP addresses or DNS names)."""
    return _name(common_name), names, also_client
