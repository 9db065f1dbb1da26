"""`make run`: the whole of Latchkey on this machine, until Ctrl-C.

State (CA, keys, broker config and logs, agent files) lives in `.run/`, wiped at every start, except
`.run/instance.lock`: an instance holds a lock on it (released by the kernel when the process ends,
however it ends) and writes its pid and URL there, so a second `make run` in the same checkout names
the running one and exits before it changes anything.

Ports: gateway 8080, broker 8883, moto 5000 when free, otherwise free ones; `LATCHKEY_HTTP_PORT`,
`LATCHKEY_MQTT_PORT`, `LATCHKEY_MOTO_PORT` set them explicitly (then they must be free, or `make run`
says which one is taken and exits).

The console shows the banner, warnings and errors, and each message the local mailbox receives; `--verbose` (or `LATCHKEY_VERBOSE=1`) adds every
request the gateway serves and the functions' own log lines. Everything at debug level also goes to
`.run/local.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from local.cloud import REPO_ROOT, EmbeddedCloud
from local.demo import create_demo_device
from local.gateway import PortInUse
from local.mailbox import LOG as MAILBOX_LOG
from local.moto_server import free_port

LOG = logging.getLogger("latchkey.local")
DEMO_EMAIL = os.environ.get("LATCHKEY_DEMO_EMAIL", "demo@latchkey.local")
DEMO_PASSWORD = os.environ.get("LATCHKEY_DEMO_PASSWORD", "Latchkey-demo-1")
DEFAULT_PORTS = {"LATCHKEY_HTTP_PORT": 8080, "LATCHKEY_MQTT_PORT": 8883, "LATCHKEY_MOTO_PORT": 5000}
LOCK_FILE = "instance.lock"
LOG_FILE = "local.log"
# Logged for every request or every boto3 call: only in the log file, or on the console with --verbose.
CHATTY = ("botocore", "boto3", "urllib3", "werkzeug", "paho")


class StartupError(Exception):
    """What keeps `make run` from starting, in one sentence for the console."""


# -- one instance per state directory ------------------------------------------------------------------
def acquire_instance_lock(state_dir: Path) -> int:
    """The locked lock file's descriptor (held until exit), or StartupError naming the running instance.
    Only the lock file is created; nothing else in `state_dir` is touched."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            running = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            running = {}
        os.close(fd)
        pid = running.get("pid", "unknown")
        where = running.get("url") or "still starting"
        raise StartupError(
            f"Latchkey is already running from {state_dir} (pid {pid}, {where}). "
            f"Stop it first (Ctrl-C in its terminal, or kill {pid})."
        ) from None
    _write_instance(fd, {"pid": os.getpid()})
    return fd


def _write_instance(fd: int, info: dict[str, object]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def wipe_state(state_dir: Path) -> None:
    """Everything but the lock file (another `make run` must still find the lock while we start)."""
    for child in state_dir.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# -- ports ------------------------------------------------------------------------------------------------
def choose_ports(environ: dict[str, str]) -> dict[str, int]:
    """Each port: the explicit one (it must be free right now), else the default when free, else any."""
    ports = {}
    for var, default in DEFAULT_PORTS.items():
        explicit = environ.get(var)
        if not explicit:
            ports[var] = free_port(preferred=default)
            continue
        try:
            port = int(explicit)
        except ValueError:
            raise StartupError(f"{var}={explicit!r} is not a port number.") from None
        if not 0 <= port <= 65535:
            raise StartupError(f"{var}={port} is not a port number (0-65535).")
        if port and not _bindable(port):
            raise StartupError(
                f"Port {port} ({var}) is in use. Stop what uses it, or choose another: {var}=<port> make run"
            )
        ports[var] = port
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the console --------------------------------------------------------------------------------------------
def configure_logging(verbose: bool) -> None:
    """Console: warnings and errors (everything with --verbose), one line each. The local cloud's own
    logger gets its handler directly, so however the functions set up the "latchkey" logger, it
    stays plain text here."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.addHandler(console)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    local = logging.getLogger(LOG.name)
    local.setLevel(logging.DEBUG)
    local.propagate = False
    local.addHandler(console)
    # What Cognito would have emailed (a sign-up or reset code) is for the person at the console too.
    if not verbose:  # verbose shows it already
        mail_console = logging.StreamHandler(sys.stderr)
        mail_console.setLevel(logging.INFO)
        mail_console.setFormatter(console.formatter)
        MAILBOX_LOG.addHandler(mail_console)
    # The functions read their level from the environment when their logging module loads.
    os.environ.setdefault("LATCHKEY_LOG_LEVEL", "DEBUG" if verbose else "WARNING")


def log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger(LOG.name).addHandler(handler)


def shown(path: Path) -> str:
    """A path as the person typed `make run` from: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def banner(cloud: EmbeddedCloud, demo: object, agent: subprocess.Popen[bytes] | None, seconds: float) -> str:
    lines = [
        "",
        "  Latchkey is running locally.",
        f"  Claim page     {cloud.gateway_url}/",
        f"  Sign in        {DEMO_EMAIL} / {DEMO_PASSWORD}",
        f"  Mailbox        {cloud.gateway_url}/_local/mailbox  (what Cognito would email: codes)",
    ]
    device_id, claim_code = getattr(demo, "device_id", None), getattr(demo, "claim_code", None)
    if device_id:
        lines.append(f"  Demo device    {device_id}   claim code  {claim_code}")
        if agent is not None:
            lines.append(f"  Demo agent     pid {agent.pid}, log {shown(cloud.state_dir / 'agent.log')}")
    else:
        lines.append(f"  Demo device    none (see {shown(cloud.state_dir / LOG_FILE)})")
    broker_log = shown(cloud.broker.log_file) if cloud.broker else ""
    lines += [
        f"  MQTT broker    {cloud.mqtt_host}:{cloud.mqtt_port} (mutual TLS, CA {shown(cloud.ca_file)})",
        f"  AWS (moto)     {cloud.moto_url}",
        f"  State, logs    {shown(cloud.state_dir)}  (broker log: {broker_log})",
        f"  Started in     {seconds:.1f}s.  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _start_agent(cloud: EmbeddedCloud, config: Path) -> subprocess.Popen[bytes]:
    log = open(cloud.state_dir / "agent.log", "ab")  # noqa: SIM115 (lives as long as the child)
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware", "--config", str(config)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return cloud.adopt_process(proc)


# -- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    began = time.monotonic()
    parser = argparse.ArgumentParser(prog="python -m local", description="Run Latchkey locally.")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show every request and the functions' log lines"
    )
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    verbose = args.verbose or os.environ.get("LATCHKEY_VERBOSE", "") not in ("", "0")
    configure_logging(verbose)
    state_dir: Path = args.state_dir.resolve()

    try:
        lock = acquire_instance_lock(state_dir)
        ports = choose_ports(dict(os.environ))
    except StartupError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    wipe_state(state_dir)
    log_to_file(state_dir / LOG_FILE)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    cloud = EmbeddedCloud(
        state_dir,
        http_port=ports["LATCHKEY_HTTP_PORT"],
        mqtt_port=ports["LATCHKEY_MQTT_PORT"],
        moto_port=ports["LATCHKEY_MOTO_PORT"],
    )
    try:
        cloud.start()
    except PortInUse as exc:  # taken between our check and the bind
        print(f"make run: {exc}; choose another with LATCHKEY_HTTP_PORT=<port>.", file=sys.stderr)
        return 1
    except Exception as exc:
        LOG.debug("start failed", exc_info=True)
        print(f"make run: could not start: {exc} (details: {shown(state_dir / LOG_FILE)})", file=sys.stderr)
        return 1
    with cloud:
        cloud.create_user(DEMO_EMAIL, DEMO_PASSWORD)
        demo = None
        try:
            demo = create_demo_device(cloud)
        except Exception:
            LOG.exception("creating the demo device failed")
        agent = None
        if demo is not None and demo.agent_config_path is not None:
            agent = _start_agent(cloud, demo.agent_config_path)
        _write_instance(lock, {"pid": os.getpid(), "url": cloud.gateway_url + "/"})
        print(banner(cloud, demo, agent, time.monotonic() - began), flush=True)
        while not stop.wait(0.5):
            if agent is not None and agent.poll() is not None:
                LOG.warning(
                    "demo agent exited with %s; see %s",
                    agent.returncode,
                    shown(cloud.state_dir / "agent.log"),
                )
                agent = None
        print("Stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
