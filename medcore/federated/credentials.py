"""Keys made for one federated run: the server proves who it is with TLS, each hospital with its own signing key.

Flower's legacy gRPC transport (the one a single machine can run without a SuperLink) offers server-side TLS but
neither client certificates nor node authentication, so MedCore adds the missing half itself:

- a certificate authority made for this run only signs the server's certificate (for 127.0.0.1); clients trust
  that authority alone, so a process that grabs the port cannot pose as the server, and the traffic is encrypted;
- every expected site gets an Ed25519 key pair. Before a connected client is used in any round, the server sends
  it a random challenge (Flower's get_properties) and accepts it only if it answers with its site id and a valid
  signature of the challenge, for a site that is expected and not already connected.

Private keys are written readable by their owner only (0600, in a 0700 folder) and each client process is given
only its own. The site id is a pseudonym (`site-1`, ...): the site's folder name never travels.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

SERVER_HOST = "127.0.0.1"
CHALLENGE_PREFIX = b"medcore-federated-join|"


@dataclass(frozen=True)
class RunCredentials:
    """Where one run's keys lie: what the server reads, and what each site's client reads."""

    folder: Path
    site_ids: tuple[str, ...]

    @property
    def ca_certificate(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_certificate(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def site_key(self, site_id: str) -> Path:
        return self.folder / f"{site_id}.key"

    def site_public_key(self, site_id: str) -> Path:
        return self.folder / f"{site_id}.pub"


def _write_private(path: Path, data: bytes) -> None:
    """Created with mode 0600 from the start: never readable by anyone else, not even for a moment."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create(folder: Path, n_sites: int, days: int = 7) -> RunCredentials:
    """A new CA, a server certificate for 127.0.0.1 and one key pair per site, in a new owner-only folder."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MedCore federated run CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_HOST)]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(SERVER_HOST)),
                                                          x509.DNSName("localhost")]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    credentials = RunCredentials(folder, tuple(f"site-{i + 1}" for i in range(n_sites)))
    credentials.ca_certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    credentials.server_certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_private(credentials.server_key, _pem(server_key))
    for site_id in credentials.site_ids:
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(credentials.site_key(site_id), _pem(key))
        credentials.site_public_key(site_id).write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return credentials


def new_challenge() -> str:
    return secrets.token_hex(32)


def sign_challenge(key_file: Path, site_id: str, challenge: str) -> bytes:
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    return key.sign(CHALLENGE_PREFIX + f"{site_id}|{challenge}".encode())


def load_public_keys(credentials_folder: Path, site_ids: list[str]) -> dict[str, ed25519.Ed25519PublicKey]:
    folder = RunCredentials(Path(credentials_folder), tuple(site_ids))
    return {site: serialization.load_pem_public_key(folder.site_public_key(site).read_bytes()) for site in site_ids}


def verify_answer(public_keys: dict[str, ed25519.Ed25519PublicKey], challenge: str, site_id: object,
                  signature: object) -> str | None:
    """Why a join answer is refused (unknown site, bad signature), or None when it proves the site's key."""
    if not isinstance(site_id, str) or site_id not in public_keys:
        return f"unknown site {str(site_id)[:40]!r}"
    if not isinstance(signature, bytes):
        return f"{site_id}: no signature"
    try:
        public_keys[site_id].verify(signature, CHALLENGE_PREFIX + f"{site_id}|{challenge}".encode())
    except InvalidSignature:
        return f"{site_id}: the signature does not match the site's key"
    return None
