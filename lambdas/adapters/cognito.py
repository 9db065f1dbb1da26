"""The owners' user pool (Cognito): whose email a caller has, and which account an email belongs to.

The page sends the access token to the API (API Gateway recommends access tokens for API authorization:
docs/web.md, "Tokens"), and a Cognito access token carries no `email` claim: its `username`
is the account's user name, which in this email-alias pool is the `sub`. So the email is read from the
pool (AdminGetUser) and kept per container for a short while; an ID token's `email` claim is used as is.

Only verified emails of accounts that can sign in count: an email someone typed at sign-up but never
confirmed must not receive a share or a transfer meant for its real owner.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from lambdas import constants as c
from lambdas.errors import BadRequest

CACHE_SECONDS = 300.0  # an email change reaches the stored claims within this
_CACHE_LIMIT = 10_000  # entries per container; cleared whole when full (a container serves few owners)
# Statuses of accounts that exist for real (UNCONFIRMED: sign-up not confirmed by the emailed code).
_LIVE_STATUSES = frozenset({"CONFIRMED", "FORCE_CHANGE_PASSWORD", "RESET_REQUIRED", "EXTERNAL_PROVIDER"})

_cache: dict[str, tuple[float, str | None]] = {}
_lock = threading.Lock()


def _pool() -> str:
    pool = os.environ.get(c.ENV_USER_POOL_ID)
    if not pool:
        raise RuntimeError(f"{c.ENV_USER_POOL_ID} is not set: cannot look up owner accounts")
    return pool


def _idp() -> Any:
    from lambdas.aws_clients import client

    return client("cognito-idp")


def _attributes(user: Mapping[str, Any], key: str) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user.get(key, [])}


def normalize_email(email: str) -> str:
    """The email as the pool matches it (sign-in is case-insensitive); BadRequest if it is not one."""
    value = email.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or len(value) > 254:
        raise BadRequest(f"{email!r} is not an email address")
    if any(ch in value for ch in '"\\') or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise BadRequest(f"{email!r} is not an email address")
    return value.lower()


def _live(user: Mapping[str, Any], attrs: Mapping[str, str]) -> bool:
    return (
        bool(user.get("Enabled", True))
        and user.get("UserStatus") in _LIVE_STATUSES
        and attrs.get("email_verified", "").lower() == "true"
    )


def find_user_by_email(email: str) -> str | None:
    """The user id (`sub`, what devices store as their owner) of the enabled account whose verified
    email this is, or None. BadRequest when `email` is not an email address."""
    wanted = normalize_email(email)
    idp = _idp()
    # ListUsers' "=" filter is exact; the page lowercases emails at sign-up, an operator may not have.
    for candidate in dict.fromkeys((email.strip(), wanted)):
        found = idp.list_users(UserPoolId=_pool(), Filter=f'email = "{candidate}"', Limit=10)
        for user in found.get("Users", []):
            attrs = _attributes(user, "Attributes")
            if attrs.get("email", "").lower() == wanted and _live(user, attrs):
                return attrs.get("sub") or str(user["Username"])
    return None


def email_of(user_id: str) -> str | None:
    """The email of the account with this user id (`sub` or user name), or None if there is none."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(user_id)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    idp = _idp()
    try:
        user = idp.admin_get_user(UserPoolId=_pool(), Username=user_id)
    except idp.exceptions.UserNotFoundException:
        email = None
    else:
        email = _attributes(user, "UserAttributes").get("email") or None
    with _lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[user_id] = (now, email)
    return email


def caller_email(claims: Mapping[str, Any]) -> str | None:
    """The caller's email from the claims API Gateway verified: an ID token's `email`, else the pool's
    record of the access token's `username` (in this pool the `sub`)."""
    if claims.get("email"):
        return str(claims["email"])
    user = claims.get("username") or claims.get("cognito:username") or claims.get("sub")
    return email_of(str(user)) if user else None


def forget_cache() -> None:
    """Tests: start without remembered emails."""
    with _lock:
        _cache.clear()
