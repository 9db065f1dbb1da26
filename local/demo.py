"""The demo device for `make run` (design.md "Locally": one demo device whose claim code is printed).

To be filled in by whoever owns the CLI/agent: mint one device identity in the embedded cloud (same code
path as `latchkey devices mint`), write an agent config (TOML, see docs/architecture.md "Files on the
device") under `cloud.state_dir`, and return `DemoDevice(device_id, claim_code, agent_config_path)`.
`python -m local` then prints the claim code and runs `python -m firmware --config <path>` as a child
process that is terminated when the cloud stops. Returning None prints "demo device: pending".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from local.cloud import EmbeddedCloud


class DemoDevice(NamedTuple):
    device_id: str
    claim_code: str  # as printed on the label: XXXXX-XXXXX
    agent_config_path: Path | None  # None: do not start an agent


def create_demo_device(cloud: EmbeddedCloud) -> DemoDevice | None:
    """Mint the demo device; None until implemented."""
    return None
