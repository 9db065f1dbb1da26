"""The fleet figures of `make bench`: the whole bill, the schedule against its goals, the storm.

One `fleetsim.study` run (the agent's schedule and today's 60 s cap, a 1,000,000-device fleet over 30
days, the reconnect storm) flattened into the `cost.*`, `schedule.*` and `storm.*` keys of
test-artifacts/bench.json; `coldstart_keys` adds the `coldstart.*` ratios from the cold-start bench.
"""

from __future__ import annotations

import math
from typing import Any


def run(
    devices: int = 1_000_000, days: float = 30.0, samples: int = 3000, storm: bool = True
) -> dict[str, float]:
    from cli.simulate import service_facts
    from fleetsim import fleet, study

    spec = study.StudySpec(
        fleet=fleet.Fleet(devices=devices, days=days),
        schedules=("agent", "cap60"),
        samples=samples,
        sweep=False,
        storm=storm,
        service=service_facts(),
    )
    print(
        f"6. Fleet economics: {devices:,} devices over {days:g} days (fleetsim; `make bench` then prints the full tables)"
    )
    result = study.run(spec)
    keys = study.key_figures(result)
    for key, value in keys.items():
        print(f"  {key:48} {value:14,.6g}")
    print()
    return keys


def coldstart_keys(cold: dict[str, Any]) -> dict[str, float]:
    """The cold-start ratios over a bare `import boto3`, as numbers (nan when a row is missing)."""

    def ratio(name: str) -> float:
        value = cold.get(name, {}).get("ratio_to_boto3")
        return float(value) if isinstance(value, int | float) else math.nan

    return {
        "coldstart.owner_api_ratio": ratio("owner API"),
        "coldstart.device_poll_ratio": ratio("device API (poll)"),
    }
