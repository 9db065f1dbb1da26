"""The device key: load or generate it, build CSRs, and sign device API requests."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from firmware.credentials import atomic_write


class IdentityError(Exception):
    pass


class DeviceKey:
    """An EC P-256 or RSA (>= 2048 bit) private key. Its repr never shows key material."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            if not isinstance(private_key.curve, ec.SECP256R1):
                raise IdentityError(f"EC keys must use P-256, not {private_key.curve.name}")
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise IdentityError(f"RSA keys must have at least 2048 bits, not {private_key.key_size}")
        else:
            raise IdentityError("the device key must be EC P-256 or RSA")
        self._key = private_key

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> DeviceKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError("the device private key is not a readable unencrypted PEM key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise IdentityError("the device key must be EC P-256 or RSA")
        return cls(key)

    @property
    def algorithm(self) -> str:
        return (
            "ECDSA-P256-SHA256"
            if isinstance(self._key, ec.EllipticCurvePrivateKey)
            else "RSA-PKCS1v15-SHA256"
        )

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(message, ec.ECDSA(hashes.SHA256()))
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def csr_pem(self, common_name: str) -> str:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(self._key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def __repr__(self) -> str:
        return f"DeviceKey({self.algorithm})"


def signing_string(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    """`METHOD\\nPATH\\nTIMESTAMP\\nhex(sha256(body))` as UTF-8: what the device API verifies."""
    return f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign_request(key: DeviceKey, method: str, path: str, timestamp: int, body: bytes) -> str:
    return base64.b64encode(key.sign(signing_string(method, path, timestamp, body))).decode()


@dataclass(frozen=True)
class Identity:
    device_id: str
    key: DeviceKey = field(repr=False)
    api_url: str = ""


def load_identity_file(path: Path) -> Identity:
    """Read the identity JSON written by `latchkey devices mint`: {"deviceId","privateKeyPem","apiUrl"}."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IdentityError(f"identity file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise IdentityError(f"identity file {path} is not readable JSON: {exc.__class__.__name__}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("deviceId"), str) or not data["deviceId"]:
        raise IdentityError(f"identity file {path} has no deviceId")
    if not isinstance(data.get("privateKeyPem"), str):
        raise IdentityError(f"identity file {path} has no privateKeyPem")
    api_url = data.get("apiUrl") if isinstance(data.get("apiUrl"), str) else ""
    return Identity(data["deviceId"], DeviceKey.from_pem(data["privateKeyPem"]), api_url or "")


def save_identity_file(path: Path, identity: Identity) -> None:
    document = {
        "deviceId": identity.device_id,
        "privateKeyPem": identity.key.private_pem().decode(),
        "apiUrl": identity.api_url,
    }
    atomic_write(path, json.dumps(document, indent=2).encode())


def load_or_create_key(path: Path) -> DeviceKey:
    """The key this device keeps for life: read it, or generate it once and save it 0600."""
    if path.exists():
        return DeviceKey.from_pem(path.read_bytes())
    key = DeviceKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, key.private_pem())
    return key
