import base64
import hashlib
import json
import stat

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from firmware.api import DeviceApi, Response
from firmware.identity import (
    DeviceKey,
    Identity,
    IdentityError,
    load_identity_file,
    load_or_create_key,
    save_identity_file,
    sign_request,
    signing_string,
)
from tests.unit.firmware.firmware_fakes import DEVICE_ID


def test_signing_string_is_method_path_timestamp_and_body_hash():
    body = b'{"attempt":0}'
    expected = f"POST\n/v1/device/poll\n1767225600\n{hashlib.sha256(body).hexdigest()}".encode()
    assert signing_string("post", "/v1/device/poll", 1767225600, body) == expected


def test_ecdsa_signature_verifies_with_the_public_key():
    key = DeviceKey.generate()
    body = b'{"certificateId":"abc"}'

    signature = base64.b64decode(sign_request(key, "POST", "/v1/device/ack", 1700000000, body))

    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        signature, signing_string("POST", "/v1/device/ack", 1700000000, body), ec.ECDSA(hashes.SHA256())
    )


def test_rsa_signature_is_pkcs1v15_sha256():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = DeviceKey(private)
    body = b"{}"

    signature = base64.b64decode(sign_request(key, "POST", "/v1/device/poll", 1700000000, body))

    private.public_key().verify(
        signature,
        signing_string("POST", "/v1/device/poll", 1700000000, body),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_tampered_body_does_not_verify():
    key = DeviceKey.generate()
    signature = base64.b64decode(sign_request(key, "POST", "/v1/device/poll", 1, b'{"a":1}'))
    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    with pytest.raises(InvalidSignature):
        public.verify(
            signature, signing_string("POST", "/v1/device/poll", 1, b'{"a":2}'), ec.ECDSA(hashes.SHA256())
        )


def test_csr_carries_the_device_id_and_the_device_public_key():
    key = DeviceKey.generate()

    csr = x509.load_pem_x509_csr(key.csr_pem(DEVICE_ID).encode())

    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == DEVICE_ID
    assert (
        csr.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == key.public_pem()
    )


@pytest.mark.parametrize(
    "private",
    [
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 (it must be refused)
    ],
    ids=["p384", "rsa1024"],
)
def test_weak_or_unexpected_keys_are_refused(private):
    with pytest.raises(IdentityError):
        DeviceKey(private)


def test_generated_key_is_saved_private_and_kept_across_restarts(tmp_path):
    path = tmp_path / "state" / "device_key.pem"

    first = load_or_create_key(path)
    second = load_or_create_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.public_pem() == second.public_pem()


def test_identity_file_round_trip_and_no_key_in_repr(tmp_path):
    key = DeviceKey.generate()
    path = tmp_path / "identity.json"

    save_identity_file(path, Identity(DEVICE_ID, key, "https://api.example"))
    loaded = load_identity_file(path)

    assert (loaded.device_id, loaded.api_url) == (DEVICE_ID, "https://api.example")
    assert loaded.key.public_pem() == key.public_pem()
    assert "PRIVATE" not in repr(loaded) and "PRIVATE" not in repr(loaded.key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content", ["not json", "{}", json.dumps({"deviceId": "x", "privateKeyPem": "nope"})]
)
def test_broken_identity_files_give_a_clear_error(tmp_path, content):
    path = tmp_path / "identity.json"
    path.write_text(content)
    with pytest.raises(IdentityError, match=r"identity|key"):
        load_identity_file(path)


class RecordingHttp:
    def __init__(self):
        self.calls = []

    def post(self, url, body, headers, timeout):
        self.calls.append((url, body, dict(headers), timeout))
        return Response(200, {"status": "unclaimed"})


def test_api_signs_exactly_the_bytes_it_sends_including_a_path_prefix():
    key = DeviceKey.generate()
    http = RecordingHttp()
    api = DeviceApi("https://api.example/prod/", http)

    api.poll(Identity(DEVICE_ID, key), {"attempt": 3, "agent": {"board": "pi"}}, 1767225600)

    url, body, headers, timeout = http.calls[0]
    assert url == "https://api.example/prod/v1/device/poll"
    assert timeout == 10
    assert headers["X-Device-Id"] == DEVICE_ID and headers["X-Timestamp"] == "1767225600"
    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(headers["X-Signature"]),
        signing_string("POST", "/prod/v1/device/poll", 1767225600, body),
        ec.ECDSA(hashes.SHA256()),
    )
    assert json.loads(body) == {"attempt": 3, "agent": {"board": "pi"}}
