"""HTTP client for the device API: signed JSON requests over urllib (no third-party dependency)."""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from firmware.identity import Identity, sign_request

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
POLL_PATH = "/v1/device/poll"
ACK_PATH = "/v1/device/ack"
REGISTER_PATH = "/v1/device/register"
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME; the ssl module has no name for it.
_NO_CHECK_TIME = 0x200000


class NetworkError(Exception):
    """The request got no HTTP answer at all (DNS, refused, reset, timeout, TLS failure)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None  # parsed JSON, or None
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def value(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    def retry_after(self, now: float | None = None) -> float | None:
        """Seconds the server asked us to wait: the `Retry-After` header, else the body's `retryAfter`."""
        header = self.header("Retry-After")
        if header:
            seconds = parse_retry_after(header, time.time() if now is None else now)
            if seconds is not None:
                return seconds
        value = self.value("retryAfter")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    def server_time(self) -> float | None:
        value = self.value("serverTime")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None


def parse_retry_after(value: str, now: float) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP date."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class Http(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response: ...


def tls_context(skip_time_check: bool = False) -> ssl.SSLContext:
    """Default verification; `skip_time_check` is for devices whose clock is known to be wrong.

    A device that boots at 1970 cannot check certificate dates, but it can still check the chain.
    """
    context = ssl.create_default_context()
    if skip_time_check:
        context.verify_flags |= _NO_CHECK_TIME
    return context


class UrllibHttp:
    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._context = context

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._context) as reply:  # noqa: S310
                return Response(reply.status, _json(reply.read()), dict(reply.headers.items()))
        except urllib.error.HTTPError as error:
            try:
                raw = error.read()
            except OSError:
                raw = b""
            return Response(error.code, _json(raw), dict(error.headers.items()) if error.headers else {})
        except (TimeoutError, urllib.error.URLError, OSError, ssl.SSLError) as error:
            reason = getattr(error, "reason", error)
            raise NetworkError(f"{url}: {reason}") from error


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


class DeviceApi:
    def __init__(self, base_url: str, http: Http | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"api_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.http: Http = http or UrllibHttp()
        self.timeout = timeout

    def _url(self, path: str) -> str:
        return self.base_url + path

    def signed_post(self, identity: Identity, path: str, payload: Any, timestamp: int) -> Response:
        url = self._url(path)
        body = json.dumps(payload, separators=(",", ":")).encode()
        # The server verifies the path it received, which includes any prefix in api_url.
        signed_path = urlsplit(url).path
        headers = {
            "Content-Type": "application/json",
            "X-Device-Id": identity.device_id,
            "X-Timestamp": str(timestamp),
            "X-Signature": sign_request(identity.key, "POST", signed_path, timestamp, body),
        }
        return self.http.post(url, body, headers, self.timeout)

    def poll(self, identity: Identity, payload: Mapping[str, Any], timestamp: int) -> Response:
        return self.signed_post(identity, POLL_PATH, dict(payload), timestamp)

    def ack(self, identity: Identity, certificate_id: str, timestamp: int) -> Response:
        return self.signed_post(identity, ACK_PATH, {"certificateId": certificate_id}, timestamp)

    def register(self, token: str, mac: str, csr_pem: str, board: str) -> Response:
        body = json.dumps({"registrationToken": token, "mac": mac, "csr": csr_pem, "board": board}).encode()
        return self.http.post(
            self._url(REGISTER_PATH), body, {"Content-Type": "application/json"}, self.timeout
        )
