"""The HTTP API JWT authorizer for a Cognito user pool, on joserfc.

joserfc does the JOSE part (compact JWS parsing, RSA signature, `exp`/`nbf`/`iat`/`iss`). What is API
Gateway's own is kept here, as its documentation states it
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html):

- the token comes from `Authorization`, bare or prefixed with `Bearer `;
- only RSA algorithms; `kid` must name a key of the issuer's JWKS (cached, refetched for an unknown kid);
- `aud`, or `client_id` only when there is no `aud`, must be one of the configured audiences
  (so a token with a foreign `aud` fails even if its `client_id` is ours);
- `token_use` is not looked at: a Cognito ID token (`aud`) and an access token (`client_id`) both pass.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, KeySet, RSAKey

RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
JWKS_REFETCH_SECONDS = 5.0  # at most one JWKS download per this, however many unknown kids arrive


class Unauthorized(Exception):
    """401; the message is the `error_description` API Gateway puts in `www-authenticate`."""


def fetch_jwks(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback moto)
        jwks: dict[str, Any] = json.load(answer)
    return jwks


def bearer_token(authorization: str | None) -> str:
    value = (authorization or "").strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else value


class JwtAuthorizer:
    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audiences: list[str],
        *,
        fetch: Callable[[str], dict[str, Any]] = fetch_jwks,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audiences = list(audiences)
        self._fetch = fetch
        self._now = now
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        keys = KeySet.import_key_set(self._fetch(self.jwks_url))  # type: ignore[arg-type]
        self._keys = {
            key.kid: key for key in keys.keys if isinstance(key, RSAKey) and key.kid and not key.is_private
        }
        self._fetched_at = time.monotonic()

    def _key(self, token: GuestProtocol) -> RSAKey:
        kid = token.headers().get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token has no kid")
        with self._lock:
            stale = self._fetched_at is None or time.monotonic() - self._fetched_at > JWKS_REFETCH_SECONDS
            if kid not in self._keys and stale:
                try:
                    self._refresh()
                except (OSError, ValueError, JoseError) as exc:
                    raise Unauthorized("the issuer's key set could not be read") from exc
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("the token's kid is not in the issuer's key set")
        return key

    def authorize(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or Unauthorized."""
        token = bearer_token(authorization)
        if not token:
            raise Unauthorized("no token")
        try:
            decoded = jwt.decode(token, self._key, algorithms=list(RSA_ALGORITHMS))
            claims = dict(decoded.claims)
            audience = "aud" if "aud" in claims else "client_id"
            jwt.JWTClaimsRegistry(
                now=lambda: int(self._now()),
                iss={"essential": True, "value": self.issuer},
                exp={"essential": True},
                **{audience: {"essential": True, "values": self.audiences}},  # type: ignore[arg-type]
            ).validate(claims)
        except JoseError as exc:
            raise Unauthorized(exc.description or exc.error) from exc
        except ValueError as exc:  # not a compact JWS at all, or a payload that is not JSON
            raise Unauthorized("the token is malformed") from exc
        return claims
