"""The local Cognito endpoint the page calls (`POST /cognito/`): moto's cognito-idp, made as strict as
Cognito where the page's account flows depend on it.

moto accepts any confirmation code, sends no mail, hands every user the same TOTP secret and accepts
any TOTP code, does not implement RevokeToken (a 500 on every sign-out) and lets SignUp through a pool
that allows administrators only. This front, in the gateway's process, does what Cognito does instead
and forwards the rest unchanged:

- **Codes** (SignUp, ResendConfirmationCode, ForgotPassword): six random digits, delivered to the local
  mailbox (`local/mailbox.py`), one outstanding per account and purpose (a new one replaces the old),
  single use, valid 24 h for sign-up and 1 h for a password reset, refused after `MAX_ATTEMPTS` wrong
  tries (then only a new code helps). ConfirmSignUp also marks the email verified, as Cognito does for
  an auto-verified attribute; ConfirmForgotPassword checks the password policy (moto does not).
- **RevokeToken**: a refresh token is revoked (REFRESH_TOKEN_AUTH then answers "Refresh Token has been
  revoked"), and so are the access tokens issued with it, for every Cognito operation that takes one.
  API Gateway's JWT authorizer does not consult Cognito, so such a token still reaches the API until it
  expires, as on AWS.
- **TOTP** (AssociateSoftwareToken, VerifySoftwareToken, the SOFTWARE_TOKEN_MFA challenge): a secret of
  its own per account, RFC 6238 codes (30 s steps, one step of clock skew either way), each code
  accepted once.
- **Challenge sessions** (new password, TOTP at sign-in) end after 3 minutes, as the app client's
  default; moto's never do.

Code lifetimes: a Cognito maintainer's answer (github.com/amazon-archives/amazon-cognito-identity-js
issue 189: "Confirmation and verification codes are valid for 24 hours. Forgot password codes are valid
for 1 hour only."), and the quotas page https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html.

Error answers have Cognito's shape: 400, `x-amzn-errortype`, `{"__type", "message"}`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdas import definitions as d
from local.mailbox import Mailbox

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
SIGN_UP_CODE_SECONDS = 24 * 3600
RESET_CODE_SECONDS = 3600
MAX_ATTEMPTS = 5  # wrong codes before a code is dead
CHALLENGE_SECONDS = 180  # a sign-in challenge's session (the app client's default AuthSessionValidity)
TOTP_STEP = 30
TOTP_SKEW_STEPS = 1
# Operations that take an access token (refused once the token is revoked).
_ACCESS_TOKEN_OPERATIONS = frozenset(
    {
        "GetUser",
        "ChangePassword",
        "GlobalSignOut",
        "UpdateUserAttributes",
        "VerifyUserAttribute",
        "GetUserAttributeVerificationCode",
        "DeleteUser",
        "AssociateSoftwareToken",
        "VerifySoftwareToken",
        "SetUserMFAPreference",
    }
)

Answer = tuple[int, dict[str, str], bytes]
# The operations this front answers itself (forwarding to moto where moto's part is right), by method.
_OWN_OPERATIONS = {
    "SignUp": "_sign_up",
    "ResendConfirmationCode": "_resend_confirmation_code",
    "ConfirmSignUp": "_confirm_sign_up",
    "ForgotPassword": "_forgot_password",
    "ConfirmForgotPassword": "_confirm_forgot_password",
    "InitiateAuth": "_initiate_auth",
    "RevokeToken": "_revoke_token",
    "AssociateSoftwareToken": "_associate_software_token",
    "VerifySoftwareToken": "_verify_software_token",
    "RespondToAuthChallenge": "_respond_to_auth_challenge",
}


class CognitoError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def answer(self) -> Answer:
        body = json.dumps({"__type": self.kind, "message": self.message}).encode()
        return 400, {"content-type": "application/x-amz-json-1.1", "x-amzn-errortype": f"{self.kind}:"}, body


@dataclass
class _Code:
    code: str
    expires_at: float
    upstream: str = ""  # moto's own code for the same reset (what moto's ConfirmForgotPassword wants)
    attempts: int = 0


@dataclass
class _Totp:
    pending: dict[str, str] = field(default_factory=dict)  # sub -> secret, until VerifySoftwareToken
    active: dict[str, str] = field(default_factory=dict)  # sub -> secret
    used: dict[str, set[int]] = field(default_factory=dict)  # sub -> time steps already accepted


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def totp(secret: str, at: float) -> str:
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at a time."""
    from cryptography.hazmat.primitives.hashes import SHA1
    from cryptography.hazmat.primitives.twofactor.totp import TOTP

    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return TOTP(key, 6, SHA1(), TOTP_STEP, enforce_key_length=False).generate(int(at)).decode()  # noqa: S303


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (moto checks the token itself when the call is forwarded)."""
    try:
        part = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))
    except (IndexError, ValueError):
        return {}


def password_problem(password: str) -> str | None:
    """Cognito's sentence for a password the pool's policy refuses (definitions.USER_POOL and the
    classes local/seed.py configures), or None."""
    if len(password) < d.USER_POOL.password_min_length:
        return "Password not long enough"
    if not any(ch.islower() for ch in password):
        return "Password must have lowercase characters"
    if not any(ch.isupper() for ch in password):
        return "Password must have uppercase characters"
    if not any(ch.isdigit() for ch in password):
        return "Password must have numeric characters"
    if all(ch.isalnum() for ch in password):
        return "Password must have symbol characters"
    return None


def _masked(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain[:1]}***"


class CognitoFront:
    def __init__(
        self,
        moto_url: str,
        user_pool_id: str,
        mailbox: Mailbox,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.moto_url = moto_url
        self.user_pool_id = user_pool_id
        self.mailbox = mailbox
        self.clock = clock
        self._codes: dict[tuple[str, str], _Code] = {}  # (purpose, sub) -> the outstanding code
        self._totp = _Totp()
        self._revoked_refresh: set[str] = set()
        self._revoked_access: set[str] = set()
        self._refresh_of: dict[str, str] = {}  # access token -> the refresh token it came with
        self._sessions: dict[str, float] = {}  # challenge session -> when it was issued
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------------------
    def _admin(self) -> Any:
        from local.seed import aws_client

        return aws_client("cognito-idp", self.moto_url)

    def _forward(self, operation: str, payload: dict[str, Any]) -> Answer:
        request = urllib.request.Request(  # noqa: S310 (loopback moto)
            self.moto_url + "/",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"X-Amz-Target": TARGET_PREFIX + operation, "Content-Type": "application/x-amz-json-1.1"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback moto)
                status, headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            status, headers, data = exc.code, exc.headers, exc.read()
        out = {"content-type": headers.get("content-type") or "application/x-amz-json-1.1"}
        for name in ("x-amzn-errortype", "x-amzn-requestid", "x-moto-forgot-password-confirmation-code"):
            if headers.get(name):
                out[name] = headers[name]
        return status, out, data

    @staticmethod
    def _ok(body: dict[str, Any]) -> Answer:
        return 200, {"content-type": "application/x-amz-json-1.1"}, json.dumps(body).encode()

    def _user(self, username: str) -> tuple[str, str, str] | None:
        """(sub, email, status) of the account a user name or email names, or None."""
        if not username:
            return None
        idp = self._admin()
        try:
            user = idp.admin_get_user(UserPoolId=self.user_pool_id, Username=username)
        except idp.exceptions.UserNotFoundException:
            return None
        attrs = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
        return attrs.get("sub") or user["Username"], attrs.get("email", ""), user.get("UserStatus", "")

    def _issue(self, purpose: str, sub: str, email: str, seconds: int, upstream: str = "") -> None:
        code = new_code()
        with self._lock:
            self._codes[(purpose, sub)] = _Code(code, self.clock() + seconds, upstream)
        if purpose == "signup":
            subject, text = "Your verification code", f"Your confirmation code is {code}"
        else:
            subject, text = "Your password reset code", f"Your password reset code is {code}"
        self.mailbox.deliver(email, subject, text, code)

    def _check_code(self, purpose: str, sub: str | None, typed: str) -> _Code:
        """The outstanding code if `typed` is it (then it is used up); CognitoError otherwise."""
        with self._lock:
            key = (purpose, sub or "")
            pending = self._codes.get(key) if sub else None
            if pending is None:
                raise CognitoError(
                    "CodeMismatchException", "Invalid verification code provided, please try again."
                )
            if pending.attempts >= MAX_ATTEMPTS:
                raise CognitoError(
                    "LimitExceededException", "Attempt limit exceeded, please try after some time."
                )
            if self.clock() >= pending.expires_at:
                raise CognitoError(
                    "ExpiredCodeException", "Invalid code provided, please request a code again."
                )
            if not secrets.compare_digest(pending.code, typed.strip()):
                pending.attempts += 1
                raise CognitoError(
                    "CodeMismatchException", "Invalid verification code provided, please try again."
                )
            del self._codes[key]
            return pending

    def _remember_tokens(self, answer: Answer, refresh_token: str | None = None) -> None:
        status, _, data = answer
        if status != 200:
            return
        result = json.loads(data or b"{}").get("AuthenticationResult") or {}
        refresh = result.get("RefreshToken") or refresh_token
        if result.get("AccessToken") and refresh:
            with self._lock:
                self._refresh_of[result["AccessToken"]] = refresh

    # -- the entry ----------------------------------------------------------------------------------------
    def handle(self, operation: str, body: bytes) -> Answer:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self._forward_raw(operation, body)
        try:
            token = payload.get("AccessToken")
            if operation in _ACCESS_TOKEN_OPERATIONS and isinstance(token, str):
                with self._lock:
                    if token in self._revoked_access:
                        raise CognitoError("NotAuthorizedException", "Access Token has been revoked")
            own = _OWN_OPERATIONS.get(operation)
            if own is None:
                return self._forward(operation, payload)
            answer: Answer = getattr(self, own)(payload)
            return answer
        except CognitoError as exc:
            return exc.answer()

    def _forward_raw(self, operation: str, body: bytes) -> Answer:
        request = urllib.request.Request(  # noqa: S310 (loopback moto)
            self.moto_url + "/",
            data=body,
            method="POST",
            headers={"X-Amz-Target": TARGET_PREFIX + operation, "Content-Type": "application/x-amz-json-1.1"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback moto)
                return answer.status, {"content-type": "application/x-amz-json-1.1"}, answer.read()
        except urllib.error.HTTPError as exc:
            headers = {"content-type": "application/x-amz-json-1.1"}
            if exc.headers.get("x-amzn-errortype"):
                headers["x-amzn-errortype"] = exc.headers["x-amzn-errortype"]
            return exc.code, headers, exc.read()

    # -- sign-up --------------------------------------------------------------------------------------------
    def _sign_up(self, payload: dict[str, Any]) -> Answer:
        config = self._admin().describe_user_pool(UserPoolId=self.user_pool_id)["UserPool"]
        if config.get("AdminCreateUserConfig", {}).get("AllowAdminCreateUserOnly"):
            raise CognitoError("NotAuthorizedException", "SignUp is not permitted for this user pool")
        answer = self._forward("SignUp", payload)
        if answer[0] != 200:
            return answer
        result = json.loads(answer[2])
        user = self._user(str(payload.get("Username", "")))
        if user is None:
            return answer
        sub, email, _ = user
        self._issue("signup", sub, email, SIGN_UP_CODE_SECONDS)
        result["UserConfirmed"] = False
        result["CodeDeliveryDetails"] = {
            "Destination": _masked(email),
            "DeliveryMedium": "EMAIL",
            "AttributeName": "email",
        }
        return self._ok(result)

    def _resend_confirmation_code(self, payload: dict[str, Any]) -> Answer:
        user = self._user(str(payload.get("Username", "")))
        details = {"DeliveryMedium": "EMAIL", "AttributeName": "email"}
        if user is None:  # PreventUserExistenceErrors: an answer like any other
            return self._ok(
                {"CodeDeliveryDetails": {**details, "Destination": _masked(str(payload.get("Username", "")))}}
            )
        sub, email, status = user
        if status != "UNCONFIRMED":
            raise CognitoError("InvalidParameterException", "User is already confirmed.")
        self._issue("signup", sub, email, SIGN_UP_CODE_SECONDS)
        return self._ok({"CodeDeliveryDetails": {**details, "Destination": _masked(email)}})

    def _confirm_sign_up(self, payload: dict[str, Any]) -> Answer:
        user = self._user(str(payload.get("Username", "")))
        if user is not None and user[2] != "UNCONFIRMED":
            raise CognitoError(
                "NotAuthorizedException", f"User cannot be confirmed. Current status is {user[2]}"
            )
        self._check_code("signup", user[0] if user else None, str(payload.get("ConfirmationCode", "")))
        answer = self._forward("ConfirmSignUp", payload)
        if answer[0] == 200 and user is not None:
            self._admin().admin_update_user_attributes(
                UserPoolId=self.user_pool_id,
                Username=str(payload["Username"]),
                UserAttributes=[{"Name": "email_verified", "Value": "true"}],
            )
        return answer

    # -- password reset -------------------------------------------------------------------------------------
    def _forgot_password(self, payload: dict[str, Any]) -> Answer:
        user = self._user(str(payload.get("Username", "")))
        status, headers, data = self._forward("ForgotPassword", payload)
        upstream = headers.pop("x-moto-forgot-password-confirmation-code", "")
        if status == 200 and user is not None:
            sub, email, _ = user
            self._issue("reset", sub, email, RESET_CODE_SECONDS, upstream)
        return status, headers, data

    def _confirm_forgot_password(self, payload: dict[str, Any]) -> Answer:
        user = self._user(str(payload.get("Username", "")))
        password = str(payload.get("Password", ""))
        problem = password_problem(password)
        if problem:
            raise CognitoError("InvalidPasswordException", f"Password does not conform to policy: {problem}")
        pending = self._check_code(
            "reset", user[0] if user else None, str(payload.get("ConfirmationCode", ""))
        )
        return self._forward("ConfirmForgotPassword", {**payload, "ConfirmationCode": pending.upstream})

    # -- tokens ---------------------------------------------------------------------------------------------
    def _initiate_auth(self, payload: dict[str, Any]) -> Answer:
        refresh = None
        if payload.get("AuthFlow") in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
            refresh = str((payload.get("AuthParameters") or {}).get("REFRESH_TOKEN", ""))
            with self._lock:
                if refresh in self._revoked_refresh:
                    raise CognitoError("NotAuthorizedException", "Refresh Token has been revoked")
        answer = self._forward("InitiateAuth", payload)
        self._remember_tokens(answer, refresh)
        self._remember_session(answer)
        return answer

    def _remember_session(self, answer: Answer) -> None:
        if answer[0] == 200 and (session := json.loads(answer[2] or b"{}").get("Session")):
            with self._lock:
                now = self.clock()
                for old in [k for k, at in self._sessions.items() if now - at > CHALLENGE_SECONDS]:
                    del self._sessions[old]
                self._sessions[session] = now

    def _revoke_token(self, payload: dict[str, Any]) -> Answer:
        token = str(payload.get("Token", ""))
        if not token or not payload.get("ClientId"):
            raise CognitoError("InvalidParameterException", "Token and ClientId are required.")
        if token.count(".") == 2:  # a JWT: an access or ID token, which RevokeToken does not take
            raise CognitoError("UnsupportedTokenTypeException", "Unsupported token type")
        with self._lock:
            self._revoked_refresh.add(token)
            self._revoked_access.update(a for a, r in self._refresh_of.items() if r == token)
        return self._ok({})

    # -- TOTP -------------------------------------------------------------------------------------------------
    def _associate_software_token(self, payload: dict[str, Any]) -> Answer:
        answer = self._forward("AssociateSoftwareToken", payload)  # moto checks the token
        sub = jwt_claims(str(payload.get("AccessToken", ""))).get("username")
        if answer[0] != 200 or not sub:
            return answer
        secret = base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")
        with self._lock:
            self._totp.pending[str(sub)] = secret
        result = json.loads(answer[2])
        result["SecretCode"] = secret
        return self._ok(result)

    def _totp_matches(self, secret: str, typed: str, sub: str) -> bool:
        now = self.clock()
        step = int(now // TOTP_STEP)
        for offset in range(-TOTP_SKEW_STEPS, TOTP_SKEW_STEPS + 1):
            if secrets.compare_digest(totp(secret, now + offset * TOTP_STEP), typed.strip()):
                used = self._totp.used.setdefault(sub, set())
                if step + offset in used:
                    raise CognitoError(
                        "ExpiredCodeException", "Your software token has already been used once."
                    )
                used.add(step + offset)
                return True
        return False

    def _verify_software_token(self, payload: dict[str, Any]) -> Answer:
        sub = str(jwt_claims(str(payload.get("AccessToken", ""))).get("username", ""))
        with self._lock:
            secret = self._totp.pending.get(sub)
            ok = bool(secret) and self._totp_matches(str(secret), str(payload.get("UserCode", "")), sub)
        if not ok:
            raise CognitoError(
                "EnableSoftwareTokenMFAException", "Code mismatch and fail enable Software Token MFA"
            )
        answer = self._forward("VerifySoftwareToken", payload)
        if answer[0] == 200:
            with self._lock:
                self._totp.active[sub] = self._totp.pending.pop(sub)
        return answer

    def _respond_to_auth_challenge(self, payload: dict[str, Any]) -> Answer:
        with self._lock:
            issued = self._sessions.get(str(payload.get("Session", "")))
        if issued is None or self.clock() - issued > CHALLENGE_SECONDS:
            raise CognitoError("NotAuthorizedException", "Invalid session for the user, session is expired.")
        if payload.get("ChallengeName") == "SOFTWARE_TOKEN_MFA":
            responses = payload.get("ChallengeResponses") or {}
            user = self._user(str(responses.get("USERNAME", "")))
            with self._lock:
                secret = self._totp.active.get(user[0]) if user else None
                typed = str(responses.get("SOFTWARE_TOKEN_MFA_CODE", ""))
                ok = bool(secret and user) and self._totp_matches(str(secret), typed, user[0])  # type: ignore[index]
            if not ok:
                raise CognitoError("CodeMismatchException", "Invalid code or auth state for the user.")
        answer = self._forward("RespondToAuthChallenge", payload)
        self._remember_tokens(answer)
        self._remember_session(answer)
        return answer
