"""moto in server mode on loopback: the local AWS APIs (DynamoDB, IoT, Cognito, Secrets Manager, ...).

It runs in a child process (`python -m local.moto_server`), not in a thread of this one: moto keeps its
state in process-wide globals that every `mock_aws()` start/stop resets, so a unit test using
`mock_aws` in the same pytest worker would wipe the embedded cloud's tables and user pool (and two
clouds in one process would share one state). The child is moto's own WSGI app served by werkzeug,
with two differences: requests are handled one at a time, so a DynamoDB condition check and its write
are atomic, as on AWS (moto takes no locks of its own); and IoT is made as strict as AWS where the Lambda
code depends on it (`local.strict_iot`: CSRs honoured, eventually consistent detach, DeleteConnection).

The child exits when told to (SIGTERM), when its stdin closes (the parent died, even by SIGKILL), and
prints `READY <port>` once it listens (port 0 picks a free port, so there is no race for it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from local.processes import stop_process

LOG = logging.getLogger("latchkey.local.moto")
CONFIG_PATH = "/_latchkey/iot"  # local.strict_iot's settings (also there: the parent never imports moto)
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """`preferred` when it can be bound right now, else a port the kernel picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")  # unreachable: port 0 always binds


class MotoServer:
    """A moto server child process bound to `host` (a free port unless one is given)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.host = host
        self.env = dict(env or {})  # extra environment for the child (local.strict_iot's settings)
        self.requested_port = port
        self.port = 0
        self.log_file = Path(log_file) if log_file else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the child and return at once (`wait_ready()` waits for it to listen). The port is
        known from here on (picked now when none was asked for), so clients can be made meanwhile."""
        self.port = self.requested_port or free_port(self.host)
        log: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file:
            log = open(self.log_file, "ab")  # noqa: SIM115 (handed to the child)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "local.moto_server", self.host, str(self.port)],
                cwd=REPO_ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.PIPE,  # our end closes when we die: the child's signal to exit
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the child in order
            )
        finally:
            if not isinstance(log, int):
                log.close()

    def wait_ready(self, timeout: float = 30.0) -> MotoServer:
        try:
            port = self._read_port(timeout)
        except RuntimeError:
            if self.requested_port:
                raise
            # the port we picked was taken before the child could bind it: once more with another
            self.launch()
            port = self._read_port(timeout)
        assert port == self.port, (port, self.port)
        LOG.debug("moto server on %s (pid %s)", self.url, self.pid)
        return self

    def _read_port(self, timeout: float) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    self._kill()
                    raise RuntimeError(f"moto server did not start (see {self.log_file or 'its stderr'})")
                if selector.select(min(left, 0.2)):
                    chunk = os.read(self._proc.stdout.fileno(), 256)
                    if not chunk:
                        continue
                    buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith("READY "):
            self._kill()
            raise RuntimeError(f"moto server said {line!r}")
        return int(line.split()[1])

    def reset(self) -> None:
        """Wipe every backend (moto's own reset API)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 (loopback)
            pass

    def configure_iot(self, **settings: float) -> dict[str, Any]:
        """Read or change the strict IoT's settings (`detachDelaySeconds`); returns them."""
        import json

        req = urllib.request.Request(  # noqa: S310 (loopback)
            f"{self.url}{CONFIG_PATH}",
            data=json.dumps(settings).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310 (loopback)
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_process(proc)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# -- the child ---------------------------------------------------------------------------------------
# One cheap call per service the cloud uses: moto builds a service's backend and URL map on its first
# request (0.1-0.3 s each), better done before we say READY than during the seeding.
_WARM_UP = (
    ("dynamodb", "POST", "/", "DynamoDB_20120810.ListTables", "{}"),
    ("cognito-idp", "POST", "/", "AWSCognitoIdentityProviderService.ListUserPools", '{"MaxResults": 1}'),
    ("iot", "GET", "/certificates?pageSize=1", None, None),
    ("secretsmanager", "POST", "/", "secretsmanager.ListSecrets", "{}"),
)


def _warm_up(app: Any) -> None:
    from werkzeug.test import Client

    client = Client(app)
    for service, method, path, target, body in _WARM_UP:
        headers = {
            "Authorization": f"AWS4-HMAC-SHA256 Credential=warmup/20200101/us-east-1/{service}/aws4_request, "
            "SignedHeaders=host, Signature=0"
        }
        if target:
            headers |= {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
        try:
            client.open(path, method=method, headers=headers, data=body)
        except Exception as exc:  # only an optimisation
            print(f"warm-up of {service} failed: {exc}", file=sys.stderr)


def _serve(host: str, port: int) -> None:
    import signal

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from local import strict_iot

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    strict_iot.install()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:  # one request at a time: conditional writes are atomic, as on AWS
            strict_iot.apply_due_detaches()
            path = environ.get("PATH_INFO", "")
            if path == CONFIG_PATH:
                return strict_iot.handle_config(environ, start_response)
            if path == "/moto-api/reset":
                strict_iot.forget_pending()
            return list(app(environ, start_response))

    server = make_server(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
    _warm_up(app)

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"READY {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0)
