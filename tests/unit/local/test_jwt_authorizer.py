"""The HTTP API JWT authorizer rules, with keys made here (no moto, no sockets)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from local.jwt_authorizer import JwtAuthorizer, Unauthorized

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_unit"
CLIENT = "unit-client"
NOW = 1_800_000_000
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)  # same kid, not the issuer's


class Jwks:
    def __init__(self, *keys: RSAKey) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def __call__(self, url: str) -> dict[str, Any]:
        assert url == "https://issuer.test/jwks.json"
        self.fetches += 1
        return {"keys": [key.as_dict(private=False) for key in self.keys]}


def authorizer(jwks: Jwks | None = None, now: float = NOW) -> JwtAuthorizer:
    return JwtAuthorizer(
        "https://issuer.test/jwks.json", ISSUER, [CLIENT], fetch=jwks or Jwks(KEY), now=lambda: now
    )


def id_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "sub": "u-1",
        "aud": CLIENT,
        "iss": ISSUER,
        "token_use": "id",
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "email": "a@b.test",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def access_claims(**changes: Any) -> dict[str, Any]:
    claims = id_claims(aud=None, client_id=CLIENT, token_use="access", scope="aws.cognito.signin.user.admin")
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def token(claims: dict[str, Any], key: Any = KEY, alg: str = "RS256", kid: str | None = "k1") -> str:
    header: dict[str, Any] = {"alg": alg}
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(header, claims, key, algorithms=[alg])


def test_an_id_token_and_an_access_token_both_pass():
    auth = authorizer()
    assert auth.authorize("Bearer " + token(id_claims()))["email"] == "a@b.test"
    assert auth.authorize(token(access_claims()))["client_id"] == CLIENT  # bare token: allowed too
    assert auth.authorize("bearer  " + token(id_claims(), alg="RS512")) is not None
    assert auth.authorize(token(id_claims(aud=["other", CLIENT]))) is not None


@pytest.mark.parametrize(
    ("label", "claims"),
    [
        ("aud is not ours, even though client_id is", id_claims(aud="someone-else", client_id=CLIENT)),
        ("client_id is not ours", access_claims(client_id="someone-else")),
        ("neither aud nor client_id", id_claims(aud=None)),
        ("wrong issuer", id_claims(iss=ISSUER + "x")),
        ("no issuer", id_claims(iss=None)),
        ("expired", id_claims(exp=NOW)),
        ("no exp", id_claims(exp=None)),
        ("not yet valid", id_claims(nbf=NOW + 60)),
        ("issued in the future", id_claims(iat=NOW + 60)),
        ("exp is not a number", id_claims(exp="tomorrow")),
    ],
)
def test_claims_api_gateway_refuses(label: str, claims: dict[str, Any]):
    with pytest.raises(Unauthorized):
        authorizer().authorize(token(claims))


def test_signatures_and_algorithms_api_gateway_refuses():
    auth = authorizer()
    good = token(id_claims())
    header, payload, _signature = good.split(".")
    other_signature = token(id_claims(), key=OTHER).split(".")[2]
    ec_key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    hmac_key = OctKey.import_key(KEY.as_dict(private=False)["n"].encode())
    bad = {
        "not a JWT": "not-a-jwt",
        "signed by another key": f"{header}.{payload}.{other_signature}",
        "alg none": "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ." + payload + ".",
        "ES256 (not RSA)": token(id_claims(), key=ec_key, alg="ES256"),
        "HS256 keyed with public material": token(id_claims(), key=hmac_key, alg="HS256"),
        "no kid": token(id_claims(), kid=None),
        "unknown kid": token(id_claims(), kid="nope"),
        "empty": "",
        "only the scheme": "Bearer ",
    }
    accepted = []
    for label, value in bad.items():
        try:
            auth.authorize(value)
            accepted.append(label)
        except Unauthorized:
            pass
    assert accepted == []
    assert auth.authorize(good)["sub"] == "u-1"  # the same authorizer still accepts a good token


def test_the_key_set_is_cached_and_refetched_for_a_new_kid():
    jwks = Jwks(KEY)
    auth = authorizer(jwks)
    for _ in range(3):
        auth.authorize(token(id_claims()))
    assert jwks.fetches == 1
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    jwks.keys.append(rotated)
    auth._fetched_at = time.monotonic() - 60  # the refetch guard has passed
    assert auth.authorize(token(id_claims(), key=rotated, kid="k2"))["sub"] == "u-1"
    assert jwks.fetches == 2
    with pytest.raises(Unauthorized):
        auth.authorize(token(id_claims(), kid="k3"))  # unknown again right away: no second download
    assert jwks.fetches == 2


def test_an_unreadable_key_set_is_401_not_a_crash():
    def broken(_url: str) -> dict[str, Any]:
        raise OSError("connection refused")

    with pytest.raises(Unauthorized):
        JwtAuthorizer("https://issuer.test/jwks.json", ISSUER, [CLIENT], fetch=broken).authorize(
            token(id_claims())
        )
