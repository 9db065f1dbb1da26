"""The local API Gateway (HTTP API), CloudFront and Cognito endpoint, on one loopback port.

- Routes from `lambdas.definitions.ROUTES` become API Gateway HTTP API **payload 2.0** events for the
  handler named in `definitions.FUNCTIONS`, called in this process with a Lambda-like context. Owner
  routes (`auth=True`) check the Cognito JWT like the HTTP API JWT authorizer (RS256 against the pool's
  JWKS, issuer, expiry, `aud`/`client_id`), and put the claims at `requestContext.authorizer.jwt`.
  Errors the gateway itself produces look like API Gateway's: 401/404/413/500 `{"message": ...}`.
- `GET /config.json`: the page's runtime configuration (same keys as the one the CDK stack writes).
- `POST /cognito/`: a same-origin pass-through to moto's cognito-idp for the unauthenticated (user)
  operations, so the page signs in exactly as against `https://cognito-idp.<region>.amazonaws.com/`.
- Everything else: the static claim page from `web/` (what CloudFront serves from S3 on AWS).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import mimetypes
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lambdas import definitions as d
from local.lambda_runtime import LambdaContext, function, load_handler
from local.seed import ACCOUNT_ID

LOG = logging.getLogger("latchkey.local.gateway")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload limit
API_ID = "local"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".h": "text/plain; charset=utf-8",
}
# Cognito operations a browser may call without AWS credentials (everything else needs SigV4 on AWS).
PUBLIC_COGNITO_OPERATIONS = frozenset(
    {
        "InitiateAuth",
        "RespondToAuthChallenge",
        "GetUser",
        "GlobalSignOut",
        "RevokeToken",
        "ChangePassword",
        "ForgotPassword",
        "ConfirmForgotPassword",
        "SignUp",
        "ConfirmSignUp",
        "ResendConfirmationCode",
        "UpdateUserAttributes",
        "VerifyUserAttribute",
        "GetUserAttributeVerificationCode",
        "DeleteUser",
    }
)
COGNITO_TARGET_PREFIX = "AWSCognitoIdentityProviderService."


class Unauthorized(Exception):
    pass


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _b64url_int(data: str) -> int:
    return int.from_bytes(_b64url(data), "big")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog (5) refuses bursts of concurrent devices


_FUNCTION_LOCKS = {fn.logical_id: threading.Lock() for fn in d.FUNCTIONS}


class JwtVerifier:
    """What the HTTP API JWT authorizer checks for a Cognito issuer."""

    def __init__(self, jwks_url: str, issuer: str, audiences: list[str]) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audiences = audiences
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        with urllib.request.urlopen(self.jwks_url, timeout=5) as answer:  # noqa: S310 (loopback moto)
            jwks = json.load(answer)
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA":
                keys[jwk["kid"]] = rsa.RSAPublicNumbers(
                    _b64url_int(jwk["e"]), _b64url_int(jwk["n"])
                ).public_key()
        self._keys = keys
        self._fetched = time.monotonic()

    def _key(self, kid: str) -> rsa.RSAPublicKey:
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched > 5:
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown key id")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(payload_b64))
            signature = _b64url(signature_b64)
        except ValueError as exc:
            raise Unauthorized("malformed token") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
            raise Unauthorized("unsupported token")
        try:
            self._key(str(header.get("kid"))).verify(
                signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise Unauthorized("bad signature") from exc
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise Unauthorized("wrong issuer")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise Unauthorized("expired")
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now:
            raise Unauthorized("not yet valid")
        audience = claims.get("aud", claims.get("client_id"))
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in self.audiences for a in audiences) and claims.get("client_id") not in self.audiences:
            raise Unauthorized("wrong audience")
        return claims


def _claim_value(value: Any) -> str:
    """HTTP API hands JWT claims to the function as strings (numbers too; arrays as "[a b]")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class _CompiledRoute:
    route: d.Route
    pattern: re.Pattern[str]
    params: tuple[str, ...]


def _compile(route: d.Route) -> _CompiledRoute:
    params: list[str] = []
    parts = []
    for segment in route.path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            params.append(segment[1:-1])
            parts.append("([^/]+)")
        else:
            parts.append(re.escape(segment))
    return _CompiledRoute(route, re.compile("^/" + "/".join(parts) + "$"), tuple(params))


@dataclass
class GatewayConfig:
    moto_url: str
    region: str
    user_pool_id: str
    user_pool_client_id: str
    web_root: Path
    product_name: str = "Latchkey"
    logo_url: str = "/logo.svg"


class Gateway:
    def __init__(self, config: GatewayConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.requested_port = port
        self.routes = [_compile(route) for route in d.ROUTES]
        self.verifier = JwtVerifier(
            f"{config.moto_url}/{config.user_pool_id}/.well-known/jwks.json",
            f"https://cognito-idp.{config.region}.amazonaws.com/{config.user_pool_id}",
            [config.user_pool_client_id],
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Gateway:
        handler = type("BoundHandler", (_RequestHandler,), {"gateway": self})
        server = None
        for port in dict.fromkeys([self.requested_port, 0]):
            try:
                server = _Server((self.host, port), handler)
                break
            except OSError:
                if port == 0:
                    raise
        assert server is not None
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def match(self, method: str, path: str) -> tuple[_CompiledRoute | None, dict[str, str]]:
        for compiled in self.routes:
            if compiled.route.method == method and (m := compiled.pattern.match(path)):
                params = {
                    name: urllib.parse.unquote(value)
                    for name, value in zip(compiled.params, m.groups(), strict=True)
                }
                return compiled, params
        return None, {}


class _RequestHandler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"
    server_version = "latchkey-local-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- plumbing -------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, cookies: list[str] = ()
    ) -> None:
        headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(body))
        headers.setdefault("apigw-requestid", getattr(self, "_request_id", "") or secrets.token_hex(8))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        for cookie in cookies:
            self.send_header("set-cookie", cookie)
        self.end_headers()
        if self.command != "HEAD" and body:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    def _message(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"message": message}).encode(), headers)

    def _read_body(self) -> bytes | None:
        """The request body, or None when it exceeds the API Gateway limit (413 already sent)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_REQUEST_BYTES:
                    self.close_connection = True
                    self._message(413, "Request Entity Too Large")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._message(413, "Request Entity Too Large")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        self._request_id = base64.b64encode(secrets.token_bytes(6)).decode().rstrip("=") + "="
        try:
            split = urllib.parse.urlsplit(self.path)
            path = split.path or "/"
            body = self._read_body()
            if body is None:
                return
            method = self.command
            if path == "/config.json" and method in ("GET", "HEAD"):
                return self._config()
            if path in ("/cognito", "/cognito/"):
                return self._cognito(body)
            route, params = self.gateway.match(method, path)
            if route is not None:
                return self._invoke(route, params, path, split.query, body)
            if method in ("GET", "HEAD") and not path.startswith("/v1/"):
                return self._static(path)
            return self._message(404, "Not Found")
        except Exception:
            LOG.exception("gateway error on %s %s", self.command, self.path)
            with contextlib.suppress(Exception):
                self._message(500, "Internal Server Error")

    # -- API ------------------------------------------------------------------------------------
    def _event(
        self, compiled: _CompiledRoute, params: dict[str, str], path: str, query: str, body: bytes
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        cookie_header = headers.pop("cookie", None)
        client_ip = self.client_address[0]
        headers.setdefault("x-forwarded-for", client_ip)
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", str(self.gateway.port))
        headers.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}")
        host = headers.get("host", f"{self.gateway.host}:{self.gateway.port}")
        now = dt.datetime.now(dt.UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": compiled.route.route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": host,
                "domainPrefix": host.split(".")[0].split(":")[0],
                "http": {
                    "method": self.command,
                    "path": path,
                    "protocol": self.request_version,
                    "sourceIp": client_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": self._request_id,
                "routeKey": compiled.route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookie_header:
            event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
        if query:
            qs: dict[str, str] = {}
            for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
                qs[key] = f"{qs[key]},{value}" if key in qs else value
            event["queryStringParameters"] = qs
        if params:
            event["pathParameters"] = params
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
        return event

    def _authorize(self) -> dict[str, Any] | None:
        """JWT authorizer: the claims, or None after sending 401 like API Gateway does."""
        value = self.headers.get("authorization", "").strip()
        token = value[7:].strip() if value[:7].lower() == "bearer " else value
        if not token:
            self._message(401, "Unauthorized", {"www-authenticate": "Bearer"})
            return None
        try:
            return self.gateway.verifier.verify(token)
        except Unauthorized as exc:
            self._message(
                401,
                "Unauthorized",
                {"www-authenticate": f'Bearer error="invalid_token" error_description="{exc}"'},
            )
            return None

    def _invoke(
        self, compiled: _CompiledRoute, params: dict[str, str], path: str, query: str, body: bytes
    ) -> None:
        claims = None
        if compiled.route.auth:
            claims = self._authorize()
            if claims is None:
                return
        event = self._event(compiled, params, path, query, body)
        if claims is not None:
            scope = claims.get("scope")
            event["requestContext"]["authorizer"] = {
                "jwt": {
                    "claims": {k: _claim_value(v) for k, v in claims.items()},
                    "scopes": scope.split() if isinstance(scope, str) else None,
                }
            }
        fn = function(compiled.route.function)
        try:
            handler = load_handler(fn.handler)
        except Exception:
            LOG.exception("cannot load %s for %s", fn.handler, compiled.route.route_key)
            return self._message(500, "Internal Server Error")
        started = time.monotonic()
        try:
            # A Lambda container runs one invocation at a time; handlers (Powertools' resolver) keep
            # per-request state in module globals, so each function is entered by one thread at a time.
            with _FUNCTION_LOCKS[fn.logical_id]:
                result = handler(event, LambdaContext(fn))
        except Exception:
            LOG.exception("%s raised on %s", fn.handler, compiled.route.route_key)
            return self._message(500, "Internal Server Error")
        LOG.debug("%s %s -> %.0f ms", self.command, path, (time.monotonic() - started) * 1000)
        self._respond(result, fn.handler)

    def _respond(self, result: Any, handler_name: str) -> None:
        """Payload 2.0 response rules: a dict with statusCode is taken as is; anything else is JSON."""
        if isinstance(result, dict) and "statusCode" in result:
            body = result.get("body")
            if body is None:
                body = ""
            if not isinstance(body, str):
                LOG.error("%s returned a non-string body (%s)", handler_name, type(body).__name__)
                return self._message(500, "Internal Server Error")
            raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
            headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers[str(name)] = ",".join(str(v) for v in values)
            return self._send(int(result["statusCode"]), raw, headers, list(result.get("cookies") or []))
        return self._send(200, json.dumps(result).encode(), {"content-type": "application/json"})

    # -- config, Cognito, static ----------------------------------------------------------------
    def _config(self) -> None:
        cfg = self.gateway.config
        host = self.headers.get("host") or f"{self.gateway.host}:{self.gateway.port}"
        body = {
            "apiUrl": "",
            "cognitoEndpoint": f"http://{host}/cognito/",
            "region": cfg.region,
            "userPoolId": cfg.user_pool_id,
            "userPoolClientId": cfg.user_pool_client_id,
            "productName": cfg.product_name,
            "logoUrl": cfg.logo_url,
        }
        self._send(200, json.dumps(body).encode(), {"cache-control": "no-store"})

    def _cognito(self, body: bytes) -> None:
        if self.command == "OPTIONS":
            return self._send(204, b"", {"allow": "POST, OPTIONS"})
        if self.command != "POST":
            return self._message(404, "Not Found")
        target = self.headers.get("x-amz-target", "")
        operation = target.removeprefix(COGNITO_TARGET_PREFIX)
        if not target.startswith(COGNITO_TARGET_PREFIX) or operation not in PUBLIC_COGNITO_OPERATIONS:
            payload = {
                "__type": "MissingAuthenticationTokenException",
                "message": "Missing Authentication Token",
            }
            return self._send(
                400,
                json.dumps(payload).encode(),
                {"content-type": "application/x-amz-json-1.1", "x-amzn-errortype": payload["__type"]},
            )
        request = urllib.request.Request(  # noqa: S310 (loopback moto)
            self.gateway.config.moto_url + "/",
            data=body,
            method="POST",
            headers={
                "X-Amz-Target": target,
                "Content-Type": self.headers.get("content-type") or "application/x-amz-json-1.1",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback moto)
                status, headers, data = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            status, headers, data = exc.code, exc.headers, exc.read()
        out = {"content-type": headers.get("content-type") or "application/x-amz-json-1.1"}
        for name in ("x-amzn-errortype", "x-amzn-requestid"):
            if headers.get(name):
                out[name] = headers[name]
        self._send(status, data, out)

    def _static(self, path: str) -> None:
        root = self.gateway.config.web_root.resolve()
        rel = urllib.parse.unquote(path).lstrip("/")
        if "\x00" in rel or "\\" in rel or any(part == ".." for part in rel.split("/")):
            return self._message(404, "Not Found")
        candidate = (root / rel).resolve() if rel else root
        if not candidate.is_relative_to(root):
            return self._message(404, "Not Found")
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_file():
            return self._message(404, "Not Found")
        ctype = CONTENT_TYPES.get(candidate.suffix.lower()) or (
            mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        )
        self._send(
            200,
            candidate.read_bytes(),
            {"content-type": ctype, "cache-control": "no-cache", "x-content-type-options": "nosniff"},
        )
