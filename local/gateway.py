"""The local API Gateway (HTTP API), CloudFront and Cognito endpoint, on one loopback port.

HTTP itself is werkzeug's threaded WSGI server: request line and header parsing and their limits,
chunked bodies, one request per connection (it answers `Connection: close` and discards whatever the
client sent past its request), conditional GETs of static files. On top of it, what an edge in front
of a Lambda adds:

- framing refused as RFC 9112 section 6.3 asks of a proxy: an invalid, negative or conflicting
  `Content-Length`, `Transfer-Encoding` other than `chunked`, or both headers: 400 and close;
- a timeout per read and a deadline for receiving the whole request, so a client that sends slowly
  (or not at all) holds its thread for a bounded time: 408, or the connection closed;
- API Gateway's 10 MB request limit (413) and its error shapes (`{"message": ...}`).

Then, by path:
- `/v1/*`: CloudFront's origin request headers (`local/cloudfront.py`), the route from
  `definitions.ROUTES`, the JWT authorizer for owner routes (`local/jwt_authorizer.py`), the payload 2.0
  event (`local/apigw.py`), the handler called in this process (one invocation at a time per function,
  as in one Lambda container), and its result mapped back.
- `GET /config.json`: the page's runtime configuration (the keys the CDK stack writes).
- `POST /cognito/`: a same-origin pass-through to moto's cognito-idp for the operations a browser may
  call without AWS credentials, so the page signs in as against `https://cognito-idp.<region>.amazonaws.com/`;
  `local/cognito_front.py` makes it as strict as Cognito (codes, token revocation, TOTP).
- `GET /_local/mailbox` (a page) and `/_local/mailbox.json?to=<email>`: what Cognito would have emailed.
- Everything else: the claim page from `web/` (what CloudFront serves from S3 on AWS).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import errno
import json
import logging
import re
import secrets
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from werkzeug.exceptions import ClientDisconnected, NotFound, RequestEntityTooLarge
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Response
from werkzeug.wsgi import LimitedStream

from lambdas import definitions as d
from local import apigw
from local.cloudfront import origin_request_headers, static_file
from local.cognito_front import CognitoFront
from local.jwt_authorizer import JwtAuthorizer, Unauthorized, bearer_token
from local.lambda_runtime import LambdaContext, function, load_handler
from local.mailbox import Mailbox
from local.seed import ACCOUNT_ID

LOG = logging.getLogger("latchkey.local.gateway")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload limit
READ_TIMEOUT_SECONDS = 10.0  # silence allowed between two reads of one request
REQUEST_TIMEOUT_SECONDS = 30.0  # the whole request (line, headers, body) must arrive within this
LISTEN_BACKLOG = 256  # the default (5) refuses bursts of concurrent devices

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
        "AssociateSoftwareToken",
        "VerifySoftwareToken",
        "SetUserMFAPreference",
    }
)
COGNITO_TARGET_PREFIX = "AWSCognitoIdentityProviderService."
MAILBOX_PATHS = ("/_local/mailbox", "/_local/mailbox.json")  # what Cognito would have emailed
# Framing is the server's business: a function's answer does not set these.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

# What the request handler passes to the WSGI application beside the standard keys.
_ENV_HEADERS = "latchkey.headers"  # every header as received: werkzeug's environ drops names with "_"
_ENV_PEER = "latchkey.peer"
_ENV_TIMED_OUT = "latchkey.timed_out"

_FUNCTION_LOCKS = {fn.logical_id: threading.Lock() for fn in d.FUNCTIONS}


class PortInUse(OSError):
    """The gateway's port is taken (the message names it)."""


class BadFraming(ValueError):
    pass


_DIGITS = re.compile(r"[0-9]+", re.ASCII)  # str.isdigit() also accepts "²" and other Unicode digits


def body_framing(headers: Iterable[tuple[str, str]]) -> tuple[int, bool]:
    """(Content-Length, chunked) of a request, or BadFraming where RFC 9112 section 6.3 says the
    length cannot be determined reliably (answer 400 and close the connection)."""
    lengths: list[str] = []
    codings: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "content-length":
            lengths += [v.strip() for v in value.split(",")]
        elif key == "transfer-encoding":
            codings += [v.strip().lower() for v in value.split(",") if v.strip()]
    if codings:
        if lengths:
            raise BadFraming("both Transfer-Encoding and Content-Length")
        if codings != ["chunked"]:
            raise BadFraming(f"Transfer-Encoding {', '.join(codings)!r}")
        return 0, True
    if not lengths:
        return 0, False
    if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
        raise BadFraming(f"Content-Length {', '.join(lengths)!r}")
    return int(lengths[0]), False


def read_body(environ: dict[str, Any], length: int, chunked: bool) -> bytes:
    """The whole body; RequestEntityTooLarge over the limit, ClientDisconnected if it ends early."""
    if chunked:
        # werkzeug's environ already decodes chunks; one byte over the limit proves the body too big
        data = LimitedStream(environ["wsgi.input"], MAX_REQUEST_BYTES + 1, is_max=True).read()
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestEntityTooLarge()
        return data
    if length > MAX_REQUEST_BYTES:
        raise RequestEntityTooLarge()
    return LimitedStream(environ["wsgi.input"], length).read() if length else b""


def split_target(target: str) -> tuple[str, str]:
    """(raw path, raw query) of a request target, origin form ("/p?q") or absolute form."""
    if not target.startswith("/"):
        parts = urllib.parse.urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query


def new_request_id() -> str:
    return base64.b64encode(secrets.token_bytes(6)).decode().rstrip("=") + "="


# -- the HTTP server ---------------------------------------------------------------------------------
class _Deadlines:
    """Closes the reading side of connections whose request has not fully arrived in time: a per-read
    timeout alone lets a client that sends one byte at a time keep a thread for as long as it likes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._watched: dict[int, tuple[float, _Handler]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-deadlines", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, handler: _Handler) -> None:
        with self._lock:
            self._watched[id(handler)] = (time.monotonic() + self.seconds, handler)

    def forget(self, handler: _Handler) -> None:
        with self._lock:
            self._watched.pop(id(handler), None)

    def _run(self) -> None:
        interval = min(0.25, self.seconds / 4)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._lock:
                expired = [handler for at, handler in self._watched.values() if at <= now]
                for handler in expired:
                    del self._watched[id(handler)]
            for handler in expired:
                handler.expire()


class _Handler(WSGIRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # so that errors before the version is known get a status line
    sys_version = ""
    # Errors the HTTP layer answers itself (bad request line, too many or too long headers, 408).
    error_content_type = "application/json"
    error_message_format = '{"message": "%(message)s"}'
    timed_out = False

    @property
    def server_version(self) -> str:  # type: ignore[override]
        return "latchkey-local-gateway"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()  # applies `timeout` (set per server) to the socket
        self.server.deadlines.watch(self)

    def finish(self) -> None:
        self.server.deadlines.forget(self)
        with contextlib.suppress(OSError):
            super().finish()

    def expire(self) -> None:
        """Called by the deadline thread: further reads see end of file; the answer can still go out."""
        self.timed_out = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def handle_expect_100(self) -> bool:
        return True  # werkzeug's run_wsgi sends the one "100 Continue"

    def parse_request(self) -> bool:
        # The deadline may cut off the request line (read before this) or the headers (read in here).
        if self.timed_out:
            self.send_error(HTTPStatus.REQUEST_TIMEOUT)
            return False
        if not super().parse_request():
            return False  # answered already
        if self.timed_out:
            self.send_error(HTTPStatus.REQUEST_TIMEOUT)
            return False
        if len(self.requestline.split()) != 3:  # an HTTP/0.9 request: API Gateway speaks 1.x and 2 only
            self.send_error(HTTPStatus.BAD_REQUEST)
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        LOG.debug("%s: %s %s", self.address_string(), code, message or "")
        super().send_error(code)  # the standard phrase only: the details may quote the client's bytes

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[_ENV_HEADERS] = list(self.headers.items())
        environ[_ENV_PEER] = self.client_address[:2]
        environ[_ENV_TIMED_OUT] = lambda: self.timed_out
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # Gateway.__call__ logs each request once, with its duration

    def log_error(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadedWSGIServer):
    def __init__(
        self, sock: socket.socket, app: Gateway, read_timeout: float, request_timeout: float
    ) -> None:
        self.deadlines = _Deadlines(request_timeout)
        handler = type("_TimedHandler", (_Handler,), {"timeout": read_timeout})
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler=handler, fd=sock.fileno())  # werkzeug dups the fd

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):  # the client went away: nothing to report
            LOG.debug("connection from %s ended: %r", client_address, error)
        else:
            LOG.exception("connection from %s failed", client_address)


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(exc.errno, f"port {port} on {host} is in use") from exc
        raise
    return sock


# -- the gateway ---------------------------------------------------------------------------------------
@dataclass
class GatewayConfig:
    moto_url: str
    region: str
    user_pool_id: str
    user_pool_client_id: str
    web_root: Path
    product_name: str = "Latchkey"
    logo_url: str = "/logo.svg"
    origin_verify: str = ""  # the secret origin header's value CloudFront adds ("" adds none)


class Gateway:
    """`start()` serves on `host:port` (port 0: a free one) until `stop()`; also a WSGI application."""

    def __init__(
        self,
        config: GatewayConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.host = host
        self.requested_port = port
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout
        self.routes = [apigw.compile_route(route) for route in d.ROUTES]
        self.authorizer = JwtAuthorizer(
            f"{config.moto_url}/{config.user_pool_id}/.well-known/jwks.json",
            f"https://cognito-idp.{config.region}.amazonaws.com/{config.user_pool_id}",
            [config.user_pool_client_id],
        )
        self.mailbox = Mailbox()
        self.cognito = CognitoFront(config.moto_url, config.user_pool_id, self.mailbox)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Gateway:
        """Raises PortInUse when the requested port is taken."""
        sock = listening_socket(self.host, self.requested_port)
        try:
            server = _Server(sock, self, self.read_timeout, self.request_timeout)
        finally:
            sock.close()
        server.deadlines.start()
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
            server.deadlines.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def match(self, method: str, path: str) -> tuple[apigw.CompiledRoute | None, dict[str, str]]:
        return apigw.match(self.routes, method, path)

    # -- WSGI ---------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request_id = new_request_id()
        started = time.monotonic()
        try:
            response = self._dispatch(environ, request_id)
        except NotFound:
            response = _wsgi(apigw.message(404, "Not Found"), request_id)
        except Exception:
            LOG.exception("gateway error on %s %s", environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
            response = _wsgi(apigw.message(500, "Internal Server Error"), request_id)
        LOG.debug(
            "%s %s -> %d in %.0f ms",
            environ.get("REQUEST_METHOD"),
            environ.get("RAW_URI"),
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        answer: Iterable[bytes] = response(environ, start_response)
        return answer

    def _dispatch(self, environ: dict[str, Any], request_id: str) -> Response:
        method = environ["REQUEST_METHOD"]
        headers: list[tuple[str, str]] = environ[_ENV_HEADERS]
        raw_path, raw_query = split_target(environ.get("RAW_URI") or "/")
        try:
            body = read_body(environ, *body_framing(headers))
        except BadFraming as exc:
            LOG.debug("refused %s %s: %s", method, raw_path, exc)
            return _wsgi(apigw.message(400, "Bad Request"), request_id)
        except RequestEntityTooLarge:
            return _wsgi(apigw.message(413, "Request Entity Too Large"), request_id)
        except ClientDisconnected as exc:  # the body ended early, a chunk was malformed, or time ran out
            if environ[_ENV_TIMED_OUT]() or isinstance(exc.__context__, TimeoutError):
                return _wsgi(apigw.message(408, "Request Timeout"), request_id)
            return _wsgi(apigw.message(400, "Bad Request"), request_id)

        if raw_path == "/config.json" and method in ("GET", "HEAD"):
            return _wsgi(self._config(environ), request_id)
        if raw_path in ("/cognito", "/cognito/"):
            return _wsgi(self._cognito(method, headers, body), request_id)
        if raw_path in MAILBOX_PATHS and method in ("GET", "HEAD"):
            return _wsgi(self._mailbox(raw_path, raw_query), request_id)
        compiled, params = self.match(method, raw_path)
        if compiled is not None:
            peer: tuple[str, int] = environ[_ENV_PEER]
            request = apigw.Request(
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=origin_request_headers(headers, peer, self.config.origin_verify),
                body=body,
                source_ip=peer[0],
                protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            )
            return _wsgi(self._invoke(compiled, params, request, request_id), request_id)
        if method in ("GET", "HEAD") and not raw_path.startswith("/v1/"):
            return static_file(self.config.web_root, urllib.parse.unquote(raw_path), environ)
        return _wsgi(apigw.message(404, "Not Found"), request_id)

    # -- API ----------------------------------------------------------------------------------------
    def _invoke(
        self, compiled: apigw.CompiledRoute, params: dict[str, str], request: apigw.Request, request_id: str
    ) -> apigw.Response:
        claims = None
        if compiled.route.auth:
            authorization = apigw.joined_headers(request.headers).get("authorization")
            try:
                claims = self.authorizer.authorize(authorization)
            except Unauthorized as exc:
                challenge = "Bearer"
                if bearer_token(authorization):
                    reason = str(exc).replace('"', "'")
                    challenge = f'Bearer scope="" error="invalid_token" error_description="{reason}"'
                return apigw.message(401, "Unauthorized", {"www-authenticate": challenge})
        now = dt.datetime.now(dt.UTC)
        event = apigw.build_event(
            compiled,
            params,
            request,
            request_id=request_id,
            domain_name=f"{self.host}:{self.port}",
            port=self.port,
            now=now,
            trace_id=f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}",
            account_id=ACCOUNT_ID,
            claims=claims,
        )
        fn = function(compiled.route.function)
        try:
            handler = load_handler(fn.handler)
        except Exception:
            LOG.exception("cannot load %s for %s", fn.handler, compiled.route.route_key)
            return apigw.message(500, "Internal Server Error")
        try:
            # A Lambda container runs one invocation at a time; handlers (Powertools' resolver) keep
            # per-request state in module globals, so each function is entered by one thread at a time.
            with _FUNCTION_LOCKS[fn.logical_id]:
                result = handler(event, LambdaContext(fn))
        except Exception:
            LOG.exception("%s raised on %s", fn.handler, compiled.route.route_key)
            return apigw.message(500, "Internal Server Error")
        try:
            return apigw.response_from_result(result)
        except apigw.InvalidResult as exc:
            LOG.error("%s returned an invalid result on %s: %s", fn.handler, compiled.route.route_key, exc)
            return apigw.message(500, "Internal Server Error")

    # -- config, Cognito ----------------------------------------------------------------------------
    def _config(self, environ: dict[str, Any]) -> apigw.Response:
        cfg = self.config
        host = environ.get("HTTP_HOST") or f"{self.host}:{self.port}"
        body = {
            "apiUrl": "",
            "cognitoEndpoint": f"http://{host}/cognito/",
            "region": cfg.region,
            "userPoolId": cfg.user_pool_id,
            "userPoolClientId": cfg.user_pool_client_id,
            "productName": cfg.product_name,
            "logoUrl": cfg.logo_url,
        }
        headers = {"content-type": "application/json", "cache-control": "no-store"}
        return apigw.Response(200, headers, body=json.dumps(body).encode())

    def _cognito(self, method: str, headers: list[tuple[str, str]], body: bytes) -> apigw.Response:
        if method == "OPTIONS":
            return apigw.Response(204, {"allow": "POST, OPTIONS"})
        if method != "POST":
            return apigw.message(404, "Not Found")
        sent = apigw.joined_headers(headers)
        target = sent.get("x-amz-target", "")
        operation = target.removeprefix(COGNITO_TARGET_PREFIX)
        if not target.startswith(COGNITO_TARGET_PREFIX) or operation not in PUBLIC_COGNITO_OPERATIONS:
            error = "MissingAuthenticationTokenException"
            return apigw.Response(
                400,
                {"content-type": "application/x-amz-json-1.1", "x-amzn-errortype": error},
                body=json.dumps({"__type": error, "message": "Missing Authentication Token"}).encode(),
            )
        status, out, data = self.cognito.handle(operation, body)
        return apigw.Response(status, out, body=data)

    def _mailbox(self, raw_path: str, raw_query: str) -> apigw.Response:
        to = urllib.parse.parse_qs(raw_query).get("to", [""])[0] or None
        if raw_path.endswith(".json"):
            headers = {"content-type": "application/json", "cache-control": "no-store"}
            return apigw.Response(200, headers, body=self.mailbox.as_json(to))
        headers = {
            "content-type": "text/html; charset=utf-8",
            "cache-control": "no-store",
            "content-security-policy": "default-src 'none'",
        }
        return apigw.Response(200, headers, body=self.mailbox.as_html(to))


def _wsgi(answer: apigw.Response, request_id: str) -> Response:
    headers = [(k, v) for k, v in answer.headers.items() if k not in _HOP_BY_HOP]
    headers += [("set-cookie", cookie) for cookie in answer.cookies]
    if "apigw-requestid" not in answer.headers:
        headers.append(("apigw-requestid", request_id))
    status = f"{answer.status} {_phrase(answer.status)}"  # werkzeug's own phrases are upper case
    return Response(answer.body, status=status, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
