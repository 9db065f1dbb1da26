"""Local certificate authorities: the stand-ins for the AWS IoT CA chain, Amazon's device CA and own-CA mode.

The embedded cloud makes two EC P-256 CAs, each in its own directory (private keys mode 0600):

- the local CA (`pki/`) signs the broker's server certificate (SAN 127.0.0.1 and localhost), the
  service client certificate (CN `latchkey-service`, the embedded cloud's own MQTT identity) and, in
  own-CA mode, every device certificate (through the Lambda code's own-CA adapter: the CA pair is in
  the secret);
- the stand-in for Amazon's CA (`pki-aws/`) signs what `CreateCertificateFromCsr` issues in the moto
  child (`local.strict_iot`); the Lambda code never sees its key, as on AWS.

Whether a certificate may connect is IoT's certificate status, checked by the broker's front door at
every connect (`local.iot_sync`), not a CRL.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_CN = "latchkey-service"
CA_CN = "Latchkey Local CA"

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
SERVICE_CERT_FILE = "service.pem"
SERVICE_KEY_FILE = "service.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write atomically with the given mode (the file never exists with looser permissions)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


@dataclass(frozen=True)
class IssuedCert:
    common_name: str
    serial: int
    cert_pem: str
    key_pem: str | None  # None when issued from a CSR (the key stays with its owner)
    cert_file: Path | None = None
    key_file: Path | None = None


class LocalCA:
    """A CA whose files live in `directory` (created 0700 if missing; reused if already there).

    `create=False` only loads an existing CA (the moto child reads the one its parent made)."""

    def __init__(
        self, directory: str | os.PathLike[str], common_name: str = CA_CN, *, create: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.cert_file = self.directory / CA_CERT_FILE
        self.key_file = self.directory / CA_KEY_FILE
        if not create and not (self.cert_file.exists() and self.key_file.exists()):
            raise FileNotFoundError(f"no CA in {self.directory}")
        self.directory.mkdir(parents=True, exist_ok=True)
        if create:
            os.chmod(self.directory, 0o700)
        if self.cert_file.exists() and self.key_file.exists():
            self.cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.key = key
        else:
            self.key = new_key()
            self.cert = self._self_signed(common_name)
            _write(self.key_file, key_pem(self.key), 0o600)
            _write(self.cert_file, cert_pem(self.cert))

    # -- the CA itself --------------------------------------------------------------------------
    def _self_signed(self, cn: str) -> x509.Certificate:
        from lambdas.adapters.ca import self_signed_ca

        now = _now()
        cert: x509.Certificate = self_signed_ca(
            self.key, cn, now - dt.timedelta(days=1), now + dt.timedelta(days=3650)
        )
        return cert

    @property
    def cert_pem(self) -> str:
        return cert_pem(self.cert).decode()

    @property
    def key_pem(self) -> str:
        return key_pem(self.key).decode()

    # -- issuing --------------------------------------------------------------------------------
    def _issue(
        self,
        subject: str | x509.Name,
        public_key: ec.EllipticCurvePublicKey | object,
        *,
        server: bool,
        hosts: Iterable[str] = (),
        days: int = 825,
    ) -> x509.Certificate:
        now = _now()
        if isinstance(subject, str):
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server_cert(
        self, hosts: Iterable[str] = ("127.0.0.1", "localhost"), name: str = "server"
    ) -> IssuedCert:
        hosts = list(hosts)
        key = new_key()
        cert = self._issue(hosts[0] if hosts else name, key.public_key(), server=True, hosts=hosts)
        return self._save(name, cert, key)

    def issue_client_cert(self, cn: str, *, save_as: str | None = None, days: int = 825) -> IssuedCert:
        """A client certificate with a fresh key; written to `<save_as>.pem/.key` when `save_as` is given."""
        key = new_key()
        cert = self._issue(cn, key.public_key(), server=False, days=days)
        if save_as:
            return self._save(save_as, cert, key)
        return IssuedCert(cn, cert.serial_number, cert_pem(cert).decode(), key_pem(key).decode())

    def sign_csr(
        self, csr_pem: str | bytes, cn: str | None = None, days: int = 825, *, keep_subject: bool = False
    ) -> IssuedCert:
        """Sign a CSR's public key: with CN `cn` (what the own-CA adapter does in the Lambda code), or
        with the CSR's own subject (`keep_subject`, what CreateCertificateFromCsr does)."""
        csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
        subject_cn = cn or common_name_of_csr(csr) or "device"
        subject: str | x509.Name = csr.subject if keep_subject else subject_cn
        cert = self._issue(subject, csr.public_key(), server=False, days=days)
        return IssuedCert(common_name(cert) or "", cert.serial_number, cert_pem(cert).decode(), None)

    def service_cert(self) -> IssuedCert:
        """The embedded cloud's own MQTT identity (full access in the broker ACL); created once."""
        cert_file = self.directory / SERVICE_CERT_FILE
        key_file = self.directory / SERVICE_KEY_FILE
        if cert_file.exists() and key_file.exists():
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            return IssuedCert(
                SERVICE_CN,
                cert.serial_number,
                cert_file.read_text(),
                key_file.read_text(),
                cert_file,
                key_file,
            )
        key = new_key()
        return self._save("service", self._issue(SERVICE_CN, key.public_key(), server=False), key)

    def _save(self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> IssuedCert:
        cert_file = _write(self.directory / f"{stem}.pem", cert_pem(cert))
        key_file = _write(self.directory / f"{stem}.key", key_pem(key), 0o600)
        return IssuedCert(
            common_name(cert) or stem,
            cert.serial_number,
            cert_pem(cert).decode(),
            key_pem(key).decode(),
            cert_file,
            key_file,
        )

    # -- what it signed -------------------------------------------------------------------------
    def issued_by_me(self, cert: x509.Certificate | str | bytes) -> bool:
        if not isinstance(cert, x509.Certificate):
            cert = x509.load_pem_x509_certificate(cert.encode() if isinstance(cert, str) else cert)
        if cert.issuer != self.cert.subject:
            return False
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, Exception):
            return False
        return True


def common_name_of_csr(csr: x509.CertificateSigningRequest) -> str | None:
    attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def serial_and_cn(pem: str | bytes) -> tuple[int, str | None]:
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return cert.serial_number, common_name(cert)
