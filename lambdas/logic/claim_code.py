"""Claim codes: 10 Crockford base32 characters (50 bits), shown XXXXX-XXXXX, stored as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
_SUBSTITUTIONS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_IGNORED = str.maketrans("", "", " -_\t\n\r")


def generate() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(text: str) -> str | None:
    """The canonical code for whatever the owner typed, or None if it cannot be a claim code."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    code = text.upper().translate(_IGNORED).translate(_SUBSTITUTIONS)
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def display(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def keyed_hash(code: str, key: bytes) -> str:
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()
