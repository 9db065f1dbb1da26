"""`EmbeddedCloud`: the AWS side of Latchkey on this machine, on loopback, with no account.

    with EmbeddedCloud(tmp_path) as cloud:
        cloud.gateway_url, cloud.mqtt_port, cloud.login(...)

Start order: the stand-in for Amazon's CA -> moto server (a child process, strict IoT) -> local CA ->
mosquitto (a child process) and its front door -> seed moto from `lambdas.definitions` -> set
`os.environ` to the functions' environment (the handlers run in this process) -> IoT directory (who may
connect) -> presence bridge -> gateway -> `<state_dir>/cloud.env.json`.
`stop()` undoes all of it (idempotent), terminates adopted child processes and restores `os.environ`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from local.broker import Broker, socket_dir
from local.gateway import Gateway, GatewayConfig
from local.iot_sync import REVALIDATE_EVERY, IotDirectory
from local.lambda_runtime import reset_function_caches
from local.moto_server import MotoServer
from local.pki import IssuedCert, LocalCA
from local.presence_bridge import PresenceBridge
from local.processes import stop_process
from local.seed import PRODUCT_NAME, REGION, UNSET_VARS, Seeded, aws_client, seed, warm_clients
from local.shadow_service import ShadowService
from local.strict_iot import DEFAULT_DETACH_DELAY, ENV_AWS_CA_DIR, ENV_BROKER_CONTROL, ENV_DETACH_DELAY

LOG = logging.getLogger("latchkey.local")
REPO_ROOT = Path(__file__).resolve().parent.parent
WEB_ROOT = REPO_ROOT / "web"
AWS_CA_CN = "Latchkey Local stand-in for Amazon's IoT CA"

ENV_FILE_NAME = "cloud.env.json"  # the environment as JSON, for the CLI (cli/env.py) and other processes
ENV_API_URL = "LATCHKEY_API_URL"
ENV_WEB_URL = "LATCHKEY_WEB_URL"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class EmbeddedCloud:
    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        http_port: int = 0,
        mqtt_port: int = 0,
        moto_port: int = 0,
        web_root: str | os.PathLike[str] = WEB_ROOT,
        wipe: bool = False,
        set_environ: bool = True,
        presence: bool = True,
        cert_mode: str = "aws",
        detach_delay: float = DEFAULT_DETACH_DELAY,
        revalidate_every: float | None = REVALIDATE_EVERY,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.http_port = http_port
        self.mqtt_port_requested = mqtt_port
        self.moto_port = moto_port
        self.web_root = Path(web_root)
        self.wipe = wipe
        self.set_environ = set_environ
        self.presence_enabled = presence
        self.cert_mode = cert_mode  # "aws" (CreateCertificateFromCsr) or "own-ca" (RegisterCertificate)
        self.detach_delay = detach_delay  # DetachThingPrincipal's propagation time (local.strict_iot)
        self.revalidate_every = revalidate_every  # the eventual drop of certificates no longer ACTIVE
        self.aws_ca: LocalCA | None = None
        self.region = REGION
        self.env: dict[str, str] = {}
        self.moto: MotoServer | None = None
        self.ca: LocalCA | None = None
        self.broker: Broker | None = None
        self.seeded: Seeded | None = None
        self.iot_sync: IotDirectory | None = None
        self.presence: PresenceBridge | None = None
        self.shadows: ShadowService | None = None
        self.gateway: Gateway | None = None
        self.startup_seconds = 0.0
        self.env_file: Path | None = None
        self._saved_environ: dict[str, str | None] | None = None
        self._processes: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._started = False

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> EmbeddedCloud:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> EmbeddedCloud:
        if self._started:
            return self
        began = time.monotonic()
        if self.wipe and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self._started = True
        try:
            # moto's import dominates startup: it loads in its own process while we make the CA and broker.
            self.aws_ca = LocalCA(self.state_dir / "pki-aws", AWS_CA_CN)  # the moto child signs with it
            sockets = socket_dir(self.state_dir / "broker")
            moto = self.moto = MotoServer(
                port=self.moto_port,
                log_file=self.state_dir / "moto.log",
                env={
                    ENV_AWS_CA_DIR: str(self.aws_ca.directory),
                    ENV_BROKER_CONTROL: str(sockets / "control.sock"),
                    ENV_DETACH_DELAY: str(self.detach_delay),
                },
            )
            moto.launch()
            clients = threading.Thread(
                target=warm_clients, args=(moto.url,), name="boto3-warm-up", daemon=True
            )
            clients.start()  # boto3 loads its service models meanwhile (~1 s)
            self.ca = LocalCA(self.state_dir / "pki")
            self.broker = Broker(
                self.state_dir / "broker",
                self.ca,
                port=self.mqtt_port_requested,
                trusted_cas=[self.aws_ca.cert_file],
                sockets=sockets,
            ).start()
            moto.wait_ready()
            clients.join(timeout=30)

            self.seeded = seed(
                moto.url,
                ca=self.ca,
                mqtt_host=self.broker.host,
                mqtt_port=self.broker.port,
                service_cert=self.broker.service,
                cert_mode=self.cert_mode,
            )
            self.env = dict(self.seeded.env)
            if self.set_environ:
                self._apply_environ()

            self.iot_sync = IotDirectory(
                self.aws("iot"), self.broker, self.broker.service, self.revalidate_every
            ).start()
            if self.presence_enabled:
                self.presence = PresenceBridge(self.broker).start()
            self.shadows = ShadowService(self.broker, self.aws("iot"), self.aws("iot-data")).start()
            self.gateway = Gateway(
                GatewayConfig(
                    moto_url=moto.url,
                    region=self.region,
                    user_pool_id=self.seeded.user_pool_id,
                    user_pool_client_id=self.seeded.user_pool_client_id,
                    web_root=self.web_root,
                    product_name=PRODUCT_NAME,
                    origin_verify=self.seeded.origin_verify,
                ),
                port=self.http_port,
            ).start()
            # Where devices and labels point (the CLI's LATCHKEY_API_URL / LATCHKEY_WEB_URL).
            urls = {ENV_API_URL: self.gateway.url, ENV_WEB_URL: self.gateway.url + "/"}
            self.env.update(urls)
            if self._saved_environ is not None:
                self._saved_environ.update({k: os.environ.get(k) for k in urls})
                os.environ.update(urls)
            self.env_file = self.state_dir / ENV_FILE_NAME
            _write_private(self.env_file, json.dumps(self.env, indent=2, sort_keys=True) + "\n")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        LOG.info("embedded cloud up in %.2fs under %s", self.startup_seconds, self.state_dir)
        return self

    def _apply_environ(self) -> None:
        keys = set(self.env) | set(UNSET_VARS)
        self._saved_environ = {key: os.environ.get(key) for key in keys}
        for key in UNSET_VARS:
            os.environ.pop(key, None)
        os.environ.update(self.env)
        reset_function_caches()

    def refresh_environ(self) -> None:
        """Re-apply the functions' environment and forget the Lambda code's caches (a test that ran
        in between may have changed either)."""
        if self._saved_environ is None:
            return
        for key in UNSET_VARS:
            os.environ.pop(key, None)
        os.environ.update(self.env)
        reset_function_caches()

    def _restore_environ(self) -> None:
        saved, self._saved_environ = self._saved_environ, None
        if saved is None:
            return
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_function_caches()

    def stop(self) -> None:
        """Stop everything that was started (in reverse order); safe to call more than once."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        for proc in self._processes:
            stop_process(proc)
        self._processes.clear()
        for part in (self.gateway, self.shadows, self.presence, self.iot_sync, self.broker):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    LOG.exception("stopping %s failed", type(part).__name__)
        if self.moto is not None:
            self.moto.stop()
        self._restore_environ()

    # -- what callers use ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started

    @property
    def gateway_url(self) -> str:
        assert self.gateway is not None, "cloud not started"
        return self.gateway.url

    @property
    def moto_url(self) -> str:
        assert self.moto is not None, "cloud not started"
        return self.moto.url

    @property
    def mqtt_host(self) -> str:
        assert self.broker is not None, "cloud not started"
        return self.broker.host

    @property
    def mqtt_port(self) -> int:
        assert self.broker is not None, "cloud not started"
        return self.broker.port

    @property
    def ca_pem(self) -> str:
        assert self.ca is not None, "cloud not started"
        return self.ca.cert_pem

    @property
    def ca_file(self) -> Path:
        assert self.ca is not None, "cloud not started"
        return self.ca.cert_file

    @property
    def user_pool_id(self) -> str:
        assert self.seeded is not None, "cloud not started"
        return self.seeded.user_pool_id

    @property
    def user_pool_client_id(self) -> str:
        assert self.seeded is not None, "cloud not started"
        return self.seeded.user_pool_client_id

    def set_detach_delay(self, seconds: float) -> None:
        """How long DetachThingPrincipal takes to propagate from now on (tests)."""
        assert self.moto is not None, "cloud not started"
        self.moto.configure_iot(detachDelaySeconds=seconds)
        self.detach_delay = seconds

    def aws(self, service: str) -> Any:
        """A boto3 client for the embedded moto (dummy credentials, us-east-1)."""
        return aws_client(service, self.moto_url)

    def create_user(self, email: str, password: str) -> str:
        """A Cognito owner with a verified email and a permanent password; returns its `sub`."""
        assert self.seeded is not None, "cloud not started"
        return self.seeded.create_user(email, password)

    def login(self, email: str, password: str) -> dict[str, Any]:
        """USER_PASSWORD_AUTH; the AuthenticationResult (`IdToken`, `AccessToken`, ...)."""
        assert self.seeded is not None, "cloud not started"
        return self.seeded.login(email, password)

    def issue_client_cert(self, common_name: str) -> IssuedCert:
        """A client certificate from the local CA, written under the state dir (tests, simulations)."""
        assert self.ca is not None, "cloud not started"
        directory = self.state_dir / "clients"
        directory.mkdir(mode=0o700, exist_ok=True)
        stem = f"{common_name}-{os.urandom(4).hex()}"
        issued = self.ca.issue_client_cert(common_name)
        cert_file = directory / f"{stem}.pem"
        key_file = directory / f"{stem}.key"
        cert_file.write_text(issued.cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(issued.key_pem or "")
        return IssuedCert(
            issued.common_name, issued.serial, issued.cert_pem, issued.key_pem, cert_file, key_file
        )

    def adopt_process(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        """Terminate this child (an agent, a simulator) when the cloud stops."""
        self._processes.append(proc)
        return proc
