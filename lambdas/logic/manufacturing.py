"""Minting device identities at manufacture (design.md "A. Claim code", steps 1 and 5), and operator actions.

A minted device is: an opaque `deviceId`, a key pair (generated here on the factory host, or only the
public key / CSR when the device generated its own), and a 10-character claim code printed on the label.
The service stores the public key and the keyed hash of the code, never the code or the private key.

Used by the `latchkey` CLI (`cli/`) and by the local cloud's demo seeding; no Lambda imports it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from lambdas import constants as c
from lambdas.domain import times
from lambdas.domain.device import Device, State, new_ownership
from lambdas.errors import BadRequest, Conflict, NotFound
from lambdas.logic import claim_code

DEVICE_ID_PREFIX = c.DEVICE_ID_PREFIX
DEVICE_ID_LENGTH = 16  # Crockford characters after the prefix: 80 bits
ACTOR_MANUFACTURER = "manufacturer"
ACTOR_OPERATOR = "operator"
# Never shown by `latchkey devices show`: the claim-code hash is an offline guessing target.
HIDDEN_ATTRIBUTES = frozenset({c.DEVICE_CLAIM_CODE_KEY})
_CLAIM_CODE_ATTEMPTS = 5


@dataclass(frozen=True)
class Owner:
    """An owner account: `owner_id` is the Cognito `sub`, `email` what the owner page shows."""

    owner_id: str
    email: str


@dataclass(frozen=True)
class MintedDevice:
    """One minted identity. `claim_code` and `private_key_pem` exist only here (and on the label/device)."""

    device_id: str
    claim_code: str = field(repr=False)  # canonical 10 characters
    private_key_pem: str | None = field(repr=False)  # None when the device generated its own key
    device: Device = field(repr=False)

    @property
    def display_code(self) -> str:
        return claim_code.display(self.claim_code)

    @property
    def public_key_pem(self) -> str:
        return str(self.device.public_key_pem)

    @property
    def record(self) -> dict[str, Any]:
        """The stored item, as the manifest and operator displays show it."""
        return self.device.to_item()


def new_device_id() -> str:
    """`lk-` + 16 lowercase Crockford base32 characters (80 bits from `secrets`)."""
    alphabet = claim_code.ALPHABET.lower()
    return DEVICE_ID_PREFIX + "".join(secrets.choice(alphabet) for _ in range(DEVICE_ID_LENGTH))


def is_device_id(text: str) -> bool:
    body = text[len(DEVICE_ID_PREFIX) :]
    return (
        text.startswith(DEVICE_ID_PREFIX)
        and len(body) == DEVICE_ID_LENGTH
        and all(ch in claim_code.ALPHABET.lower() for ch in body)
    )


def default_name(device_id: str, board: str | None) -> str:
    """What the owner page shows until the owner renames it, e.g. "esp32 7k2q"."""
    return f"{board or 'Device'} {device_id[-4:]}"


def generate_key_pair() -> tuple[str, str]:
    """A fresh EC P-256 key: (private key PEM, PKCS#8 unencrypted; public key PEM, SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return private_pem, _public_pem(key.public_key())


def _public_pem(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return str(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )


def public_key_from_pem(data: str | bytes) -> str:
    """The SubjectPublicKeyInfo PEM of a device-generated public key or CSR (EC P-256 or RSA >= 2048).

    Raises BadRequest when the text is neither, the CSR's signature is wrong, or the key is too weak.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    raw = data.encode() if isinstance(data, str) else data
    if b"PRIVATE KEY" in raw:
        raise BadRequest(
            "that is a private key; give the device's public key or CSR (the private key stays on the device)"
        )
    public_key: Any
    if b"CERTIFICATE REQUEST" in raw:
        try:
            csr = x509.load_pem_x509_csr(raw)
        except ValueError as exc:
            raise BadRequest("the CSR is not a readable PEM certificate request") from exc
        if not csr.is_signature_valid:
            raise BadRequest("the CSR's signature does not verify (it was not made with its own key)")
        public_key = csr.public_key()
    else:
        try:
            public_key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError) as exc:
            raise BadRequest("not a PEM public key or CSR") from exc
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise BadRequest(f"EC keys must use P-256, not {public_key.curve.name}")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise BadRequest(f"RSA keys must have at least 2048 bits, not {public_key.key_size}")
    else:
        raise BadRequest("the device key must be EC P-256 or RSA (>= 2048 bits)")
    return _public_pem(public_key)


def _unique_claim_code(key: bytes) -> tuple[str, str]:
    """A fresh code whose hash no stored device has (50 bits collide at fleet scale: check, one query)."""
    from lambdas.dal import devices

    for _ in range(_CLAIM_CODE_ATTEMPTS):
        code = claim_code.generate()
        digest = claim_code.keyed_hash(code, key)
        if devices.find_by_claim_code(digest) is None:
            return code, digest
    raise Conflict("could not find an unused claim code")  # astronomically unlikely


def prepare_device(
    owner: Owner | None,
    board: str | None,
    *,
    public_key_pem: str | None = None,
    name: str | None = None,
) -> MintedDevice:
    """Generate an identity (id, key pair unless `public_key_pem` is given, claim code) without storing it.

    Reads the service secret and checks the claim code is unused; writes nothing. `store_device` commits.
    """
    from lambdas.adapters.secrets import claim_code_key

    device_id = new_device_id()
    if public_key_pem is None:
        private_pem, public_pem = generate_key_pair()
    else:
        private_pem, public_pem = None, public_key_from_pem(public_key_pem)
    code, digest = _unique_claim_code(claim_code_key())
    created = times.iso(times.now())
    device = Device(
        device_id=device_id,
        name=name or default_name(device_id, board),
        public_key_pem=public_pem,
        claim_code_hash=digest,
        board=board or None,
        created_at=created,
    )
    if owner is not None:
        device = device.with_changes(
            state=State.CLAIMED,
            owner_id=owner.owner_id,
            owner_email=owner.email,
            ownership=new_ownership(),
            claimed_at=created,
        )
    return MintedDevice(device_id, code, private_pem, device)


def store_device(minted: MintedDevice, actor: str) -> MintedDevice:
    """Create the device record (must not exist) with its audit events, in one transaction."""
    from lambdas.dal import devices

    device = minted.device
    pre_claimed = device.owner_id is not None
    claimed = {"ownerId": device.owner_id, "ownerEmail": device.owner_email}
    try:
        devices.transition(
            device,
            "pre-claim" if pre_claimed else "mint",
            actor=actor,
            detail={"board": device.board, "preClaimed": pre_claimed},
            per_action={"device.claimed": (ACTOR_MANUFACTURER, claimed)},
        )
    except devices.ConditionFailed as exc:
        raise Conflict(f"device {device.device_id} already exists") from exc
    return minted


def mint_device(
    owner: Owner | None,
    board: str | None,
    actor: str,
    *,
    public_key_pem: str | None = None,
    name: str | None = None,
) -> MintedDevice:
    """Mint and store one device: `unclaimed`, or `claimed` by `owner` (pre-claimed at manufacture).

    With `public_key_pem` (a public key or CSR made on the device) no private key is generated and
    `MintedDevice.private_key_pem` is None.
    """
    minted = prepare_device(owner, board, public_key_pem=public_key_pem, name=name)
    try:
        return store_device(minted, actor)
    except Conflict:
        # An 80-bit id collided: take a fresh one (the code stays unused: the write did not happen).
        fresh = new_device_id()
        device = minted.device.with_changes(device_id=fresh, name=name or default_name(fresh, board))
        return store_device(replace(minted, device_id=fresh, device=device), actor)


# --- owners (Cognito) ---------------------------------------------------------------------------------


def _attributes(user: dict[str, Any], key: str) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user.get(key, [])}


def find_owner(email: str, user_pool_id: str | None = None) -> Owner:
    """The owner account with this email in the user pool: its `sub` and email. NotFound if none."""
    import os

    from lambdas.aws_clients import client

    pool = user_pool_id or os.environ.get(c.ENV_USER_POOL_ID)
    if not pool:
        raise BadRequest(f"{c.ENV_USER_POOL_ID} is not set: cannot look up owner accounts")
    email = email.strip()
    if "@" not in email or any(ch in email for ch in '"\\\n'):
        raise BadRequest(f"{email!r} is not an email address")
    idp = client("cognito-idp")
    user: dict[str, Any] | None = None
    attrs: dict[str, str] = {}
    for candidate in dict.fromkeys((email, email.lower())):
        try:
            user = idp.admin_get_user(UserPoolId=pool, Username=candidate)
        except idp.exceptions.UserNotFoundException:
            continue
        attrs = _attributes(user, "UserAttributes")
        break
    if user is None:  # the email may be an attribute rather than the user name
        found = idp.list_users(UserPoolId=pool, Filter=f'email = "{email}"', Limit=2).get("Users", [])
        if not found:
            raise NotFound(f"no owner account with email {email}")
        user = found[0]
        attrs = _attributes(user, "Attributes")
    if not user.get("Enabled", True):
        raise BadRequest(f"the owner account {email} is disabled")
    sub = attrs.get("sub") or str(user["Username"])
    return Owner(owner_id=sub, email=attrs.get("email") or email)


# --- operator actions ---------------------------------------------------------------------------------


def public_record(device: Device) -> dict[str, Any]:
    """The stored record without the attributes an operator display must not show."""
    return {k: v for k, v in device.to_item().items() if k not in HIDDEN_ATTRIBUTES}


def revoke_device(device_id: str, actor: str = ACTOR_OPERATOR) -> tuple[dict[str, Any], bool]:
    """Revoke a device (logic/revocation.py): its certificate REVOKED in IoT, state `revoked`, audited.

    Returns (the record after the change, whether anything changed); revoking twice changes nothing.
    """
    from lambdas.logic import revocation

    device, changed = revocation.revoke(
        device_id, actor=actor, source_ip=None, not_found=f"no device {device_id}"
    )
    return public_record(device), changed
