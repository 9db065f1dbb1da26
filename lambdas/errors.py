"""Domain errors. Each knows its HTTP status and machine code; handlers map them to JSON once."""

from __future__ import annotations

from typing import Any


class LatchkeyError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra  # additional JSON fields (e.g. serverTime) and "headers"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        out.update({k: v for k, v in self.extra.items() if k != "headers"})
        return out

    def headers(self) -> dict[str, str]:
        return dict(self.extra.get("headers") or {})


class BadRequest(LatchkeyError):
    status = 400
    code = "bad_request"


class Unauthorized(LatchkeyError):
    status = 401
    code = "unauthorized"


class Forbidden(LatchkeyError):
    status = 403
    code = "forbidden"


class NotFound(LatchkeyError):
    status = 404
    code = "not_found"


class Conflict(LatchkeyError):
    status = 409
    code = "conflict"


class Gone(LatchkeyError):
    status = 410
    code = "gone"


class PayloadTooLarge(LatchkeyError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(LatchkeyError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retryAfter=retry_after, headers={"Retry-After": str(retry_after)}, **extra)
        self.retry_after = retry_after


class ServiceUnavailable(LatchkeyError):
    status = 503
    code = "service_unavailable"
