"""The demo device for `make run` (design.md "Locally": one demo device whose claim code is printed).

Minted through the same code path as `latchkey devices mint`, with an agent config whose backoff cap is
short so that a person who claims it sees it online within seconds, not at the agent's production cap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from local.cloud import EmbeddedCloud

DEMO_BACKOFF_CAP_SECONDS = 10


class DemoDevice(NamedTuple):
    device_id: str
    claim_code: str  # as printed on the label: XXXXX-XXXXX
    agent_config_path: Path | None  # None: do not start an agent


def create_demo_device(cloud: EmbeddedCloud, board: str = "demo-board") -> DemoDevice:
    from cli.files import write_exclusive
    from lambdas.logic.device_config import agent_toml
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, board, "make-run")
    home = cloud.state_dir / "demo-device"
    home.mkdir(mode=0o700, exist_ok=True)
    identity = {
        "deviceId": minted.device_id,
        "privateKeyPem": minted.private_key_pem,
        "apiUrl": cloud.gateway_url,
    }
    write_exclusive(home / "identity.json", json.dumps(identity, indent=2) + "\n", 0o600, sync=True)
    config = home / "agent.toml"
    write_exclusive(
        config,
        agent_toml(
            minted.device_id,
            cloud.gateway_url,
            board,
            "identity.json",
            extra={"backoff_cap": DEMO_BACKOFF_CAP_SECONDS, "status_interval": 10},
        ),
        0o644,
    )
    return DemoDevice(minted.device_id, minted.display_code, config)
