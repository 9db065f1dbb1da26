"""Owner accounts in the Cognito user pool: find one by email (sharing and transfer name the other
account by its email).

A stand-in until the accounts work lands `lambdas/adapters/cognito.py`; callers use only
`user_id_by_email`, so swapping the module is one import.
"""

from __future__ import annotations

import os
from typing import Any

from lambdas import constants as c

# ListUsers filters by exact attribute value; quotes and backslashes would break out of the filter string.
_UNSAFE = ('"', "\\", "\n", "\r")


def user_id_by_email(email: str) -> str | None:
    """The `sub` (the owner id the API uses) of the enabled, confirmed-or-not account with this email;
    None if there is none. ListUsers matches case-sensitively: the address is tried as typed and lower-cased.
    """
    from lambdas.aws_clients import client

    pool = os.environ.get(c.ENV_USER_POOL_ID)
    if not pool:
        raise RuntimeError(f"{c.ENV_USER_POOL_ID} is not set: cannot look up accounts")
    if any(ch in email for ch in _UNSAFE):
        return None
    idp = client("cognito-idp")
    for candidate in dict.fromkeys((email, email.lower())):
        users: list[dict[str, Any]] = idp.list_users(
            UserPoolId=pool, Filter=f'email = "{candidate}"', Limit=2
        ).get("Users", [])
        for user in users:
            if not user.get("Enabled", True):
                continue
            attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
            return str(attributes.get("sub") or user["Username"])
    return None


def email_of(user_id: str) -> str | None:
    """The account's email from the user pool (not from a token's claims, which may lack it); None if
    the account is gone."""
    from lambdas.aws_clients import client

    pool = os.environ.get(c.ENV_USER_POOL_ID)
    if not pool or any(ch in user_id for ch in _UNSAFE):
        return None
    users: list[dict[str, Any]] = (
        client("cognito-idp")
        .list_users(UserPoolId=pool, Filter=f'sub = "{user_id}"', Limit=1)
        .get("Users", [])
    )
    for user in users:
        attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
        return attributes.get("email")
    return None
