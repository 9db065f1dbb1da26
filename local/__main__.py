"""`make run`: the whole of Latchkey on this machine, until Ctrl-C.

State (CA, keys, broker config and logs, agent files) lives in `.run/`, wiped at every start.
Ports: gateway 8080, broker 8883, moto 5000 when free, otherwise free ones; `LATCHKEY_HTTP_PORT`,
`LATCHKEY_MQTT_PORT`, `LATCHKEY_MOTO_PORT` set them explicitly (then they must be free).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from local.cloud import REPO_ROOT, EmbeddedCloud
from local.demo import create_demo_device
from local.moto_server import free_port

LOG = logging.getLogger("latchkey.local")
DEMO_EMAIL = os.environ.get("LATCHKEY_DEMO_EMAIL", "demo@latchkey.local")
DEMO_PASSWORD = os.environ.get("LATCHKEY_DEMO_PASSWORD", "Latchkey-demo-1")
DEFAULT_PORTS = {"LATCHKEY_HTTP_PORT": 8080, "LATCHKEY_MQTT_PORT": 8883, "LATCHKEY_MOTO_PORT": 5000}


def _port(var: str) -> int:
    explicit = os.environ.get(var)
    if explicit:
        return int(explicit)  # the user asked for this one: fail loudly if it is taken
    return free_port(preferred=DEFAULT_PORTS[var])


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


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    cloud = EmbeddedCloud(
        REPO_ROOT / ".run",
        wipe=True,
        http_port=_port("LATCHKEY_HTTP_PORT"),
        mqtt_port=_port("LATCHKEY_MQTT_PORT"),
        moto_port=_port("LATCHKEY_MOTO_PORT"),
    )
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

        lines = [
            "",
            "  Latchkey is running locally.",
            f"  Claim page     {cloud.gateway_url}/",
            f"  Sign in        {DEMO_EMAIL} / {DEMO_PASSWORD}",
        ]
        if demo is not None:
            lines.append(f"  Demo device    {demo.device_id}   claim code  {demo.claim_code}")
            if agent is not None:
                lines.append(f"  Demo agent     pid {agent.pid}, log {cloud.state_dir / 'agent.log'}")
        else:
            lines.append("  Demo device    pending")
        lines += [
            f"  MQTT broker    {cloud.mqtt_host}:{cloud.mqtt_port} (mutual TLS, CA {cloud.ca_file})",
            f"  AWS (moto)     {cloud.moto_url}",
            f"  State, logs    {cloud.state_dir}  (broker log: {cloud.broker.log_file if cloud.broker else ''})",
            f"  Started in     {cloud.startup_seconds:.1f}s.  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)
        while not stop.wait(0.5):
            if agent is not None and agent.poll() is not None:
                LOG.warning(
                    "demo agent exited with %s; see %s", agent.returncode, cloud.state_dir / "agent.log"
                )
                agent = None
        print("Stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
