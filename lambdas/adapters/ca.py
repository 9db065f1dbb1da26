"""Own-CA mode: sign a device CSR with the service CA from the secret (caCertPem, caKeyPem).

The certificate's subject is CN=<thing name> whatever the CSR asked for (mosquitto maps the CN to the
MQTT identity locally, and a device cannot choose another device's name). Only the CSR's public key is
taken; the caller has already checked that it is the device's registered key.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

VALIDITY = dt.timedelta(days=3650)  # the longest a certificate may be made for, whatever is configured
BACKDATE = dt.timedelta(minutes=5)  # tolerate devices and brokers whose clocks run a little behind


@cache
def _ca() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from lambdas.adapters.secrets import service_secret

    secret = service_secret()
    if not secret.get("caCertPem") or not secret.get("caKeyPem"):
        raise RuntimeError("own-CA mode needs caCertPem and caKeyPem in the service secret")
    cert = x509.load_pem_x509_certificate(str(secret["caCertPem"]).encode())
    key = serialization.load_pem_private_key(str(secret["caKeyPem"]).encode(), password=None)
    return cert, key


def ca_certificate_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    cert, _ = _ca()
    return str(cert.public_bytes(serialization.Encoding.PEM).decode())


def validity() -> dt.timedelta:
    """The lifetime the stack configures (LATCHKEY_CERT_VALIDITY_DAYS, default one year), at most VALIDITY."""
    from lambdas import config

    return min(dt.timedelta(days=config.cert_validity_days()), VALIDITY)


def sign_csr(csr_pem: str, thing_name: str, now: dt.datetime | None = None) -> str:
    """A client certificate for the CSR's public key, CN=thing_name, signed by the service CA for
    `validity()` (never past the CA's own end)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = _ca()
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    public_key = csr.public_key()
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = min(start + validity(), ca_cert.not_valid_after_utc)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return str(cert.public_bytes(serialization.Encoding.PEM).decode())


def reset() -> None:
    _ca.cache_clear()


def self_signed_ca(key: Any, common_name: str, not_before: dt.datetime, not_after: dt.datetime) -> Any:
    """A self-signed CA certificate for `key` that signs client certificates and CRLs only (path length
    0). One builder for the service's own CA (handlers/service_setup.py) and the local one (local/pki.py)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
