"""Device request signatures (design.md "Device API").

A device signs the UTF-8 string ``METHOD\\nPATH\\nTIMESTAMP\\nhex(sha256(body))`` with its private key:
ECDSA P-256/SHA-256 (DER signature) or RSA-2048 PKCS#1 v1.5/SHA-256, and sends it base64-encoded in
``X-Signature`` with ``X-Device-Id`` and ``X-Timestamp`` (unix seconds).

Header checks and the clock window run before the device is read, so a device with a wrong clock or a
malformed request costs no DynamoDB read. `cryptography` is imported only when a signature is verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lambdas import constants as c
from lambdas.errors import Unauthorized

# Thing names allow [a-zA-Z0-9:_-]{1,128}; the device id is the thing name.
_DEVICE_ID = re.compile(r"[A-Za-z0-9:_-]{1,128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also accepts "¹²³"
_MAX_SIGNATURE_CHARS = 1024  # RSA-2048 is 344 base64 characters, ECDSA P-256 at most 96


@dataclass(frozen=True)
class SignedHeaders:
    device_id: str
    timestamp: int
    signature: bytes


def string_to_sign(method: str, path: str, timestamp: int | str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def parse_headers(
    device_id: str | None, timestamp: str | None, signature: str | None, now: float | None = None
) -> SignedHeaders:
    """Validate the three headers and the clock window; raises Unauthorized with a clear message."""
    now_s = int(time.time() if now is None else now)
    missing = [
        name
        for name, value in (
            ("X-Device-Id", device_id),
            ("X-Timestamp", timestamp),
            ("X-Signature", signature),
        )
        if not value
    ]
    if missing:
        raise Unauthorized(f"Missing request header(s): {', '.join(missing)}.")
    if not all(isinstance(v, str) for v in (device_id, timestamp, signature)):
        raise Unauthorized("The signature headers must be text.")
    assert device_id is not None and timestamp is not None and signature is not None
    device_id = device_id.strip()
    if not _DEVICE_ID.fullmatch(device_id):
        raise Unauthorized("X-Device-Id is not a valid device id.")
    stamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise Unauthorized("X-Timestamp must be unix time in whole seconds.", serverTime=now_s)
    when = int(stamp)
    if abs(when - now_s) > c.SIGNATURE_WINDOW_SECONDS:
        raise Unauthorized(
            f"X-Timestamp is more than {c.SIGNATURE_WINDOW_SECONDS} s away from the server time; "
            "correct the clock with serverTime and sign again.",
            serverTime=now_s,
        )
    if len(signature) > _MAX_SIGNATURE_CHARS:
        raise Unauthorized("X-Signature is too long.")
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("X-Signature is not valid base64.") from None
    if not raw:
        raise Unauthorized("X-Signature is empty.")
    return SignedHeaders(device_id, when, raw)


@lru_cache(maxsize=512)
def load_public_key(pem: str) -> Any:
    """The device's public key object, cached by PEM (a warm container verifies without re-parsing)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(pem.encode())


def verify(public_key_pem: str, message: bytes, signature: bytes) -> bool:
    """True if `signature` over `message` verifies with the key (ECDSA P-256 or RSA, SHA-256)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        key = load_public_key(public_key_pem)
    except (ValueError, TypeError):
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def check(headers: SignedHeaders, public_key_pem: str | None, method: str, path: str, body: bytes) -> None:
    """Raise Unauthorized unless the request is signed by the device's registered key."""
    if not public_key_pem:
        raise Unauthorized("The device has no registered public key.")
    message = string_to_sign(method, path, headers.timestamp, body)
    if not verify(public_key_pem, message, headers.signature):
        raise Unauthorized(
            "X-Signature does not verify with the device's key over METHOD\\nPATH\\nTIMESTAMP\\nsha256(body)."
        )
