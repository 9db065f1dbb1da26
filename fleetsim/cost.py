"""The whole monthly bill: every metered quantity a fleet causes, priced per component.

Usage is counted per month in the units AWS meters (`Usage`); `price()` turns a fleet's usage into
dollars per component at the list prices of prices.toml (tiers applied to the fleet's total, as AWS
bills them). Three kinds of device make a fleet (prices.toml [fleet_mix]):

- unclaimed devices poll the device API (the simulation's requests and lastPollAt writes);
- online idle devices are connected (one connection-minute a minute; keepalive pings are not metered)
  and send what [presence.<design>] says: status messages and lifecycle events through a topic rule
  (one registry read in its WHERE, one Lambda action, a consistent DynamoDB read and maybe a write),
  shadow updates and gets, and a CONNECT with its SUBSCRIBEs per reconnect;
- toggling devices are online devices whose owner also toggles a relay N times a day ([toggle]).

The connectivity floor of an online device is its connection-minutes alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fleetsim.prices import Workload, tiered

MINUTES_PER_MONTH = 30 * 24 * 60
DAYS_PER_MONTH = 30
COMPONENTS = (
    "api_gateway",
    "lambda",
    "dynamodb",
    "iot_connectivity",
    "iot_messaging",
    "iot_rules",
    "iot_shadow",
    "iot_registry",
)
LABELS = {
    "api_gateway": "API Gateway (HTTP API requests)",
    "lambda": "Lambda (requests + GB-s)",
    "dynamodb": "DynamoDB (on-demand reads + writes)",
    "iot_connectivity": "IoT Core connectivity (minutes)",
    "iot_messaging": "IoT Core messaging (per 5 KB)",
    "iot_rules": "IoT rules triggered + actions",
    "iot_shadow": "Device shadow operations",
    "iot_registry": "Registry reads (rule WHERE)",
}


@dataclass(frozen=True)
class Usage:
    """Metered quantities in one month."""

    api_requests: float = 0.0
    lambda_requests: float = 0.0
    lambda_gb_seconds: float = 0.0
    read_units: float = 0.0
    write_units: float = 0.0
    connection_minutes: float = 0.0
    messages: float = 0.0
    rules: float = 0.0
    actions: float = 0.0
    shadow_operations: float = 0.0
    registry_operations: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __mul__(self, k: float) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    __rmul__ = __mul__


def _gb_seconds(requests: float, memory_mb: float, billed_ms: float) -> float:
    return requests * memory_mb / 1024 * billed_ms / 1000


def _assumption(prices: dict[str, Any], name: str, key: str, default: float) -> float:
    return float(prices.get("assumptions", {}).get(name, {}).get(key, default))


def poll_usage(requests: float, writes: float, workload: Workload) -> Usage:
    """Device API polls: each an API request, a Lambda invocation and an eventually consistent read."""
    return Usage(
        api_requests=requests,
        lambda_requests=requests,
        lambda_gb_seconds=_gb_seconds(requests, workload.memory_mb, workload.billed_ms),
        read_units=requests * workload.read_units_per_poll,
        write_units=writes * workload.write_units_per_touch,
    )


def online_usage(profile: dict[str, Any], prices: dict[str, Any]) -> Usage:
    """One device online for a month under a presence design (prices.toml [presence.<design>])."""
    days = DAYS_PER_MONTH
    connects = float(profile["connects_per_day"]) * days
    status = float(profile["status_messages_per_day"]) * days
    lifecycle = float(profile["lifecycle_events_per_day"]) * days
    updates = float(profile["shadow_updates_per_day"]) * days
    gets = float(profile["shadow_gets_per_day"]) * days
    ruled = status + lifecycle  # each through a rule with one action: the Presence function
    memory = _assumption(prices, "presence", "memory_mb", 256)
    billed = _assumption(prices, "presence", "billed_ms", 20)
    return Usage(
        connection_minutes=MINUTES_PER_MONTH,
        # CONNECT + SUBSCRIBEs, status publishes, shadow update and get requests, the get/accepted answers;
        # lifecycle events are published by the service to the rule only (no subscriber: not metered).
        messages=connects * (1 + float(profile["subscribes_per_connect"])) + status + updates + 2 * gets,
        rules=ruled,
        actions=ruled,
        registry_operations=ruled,
        shadow_operations=updates + gets,
        lambda_requests=ruled,
        lambda_gb_seconds=_gb_seconds(ruled, memory, billed),
        read_units=ruled,  # strongly consistent GetItem of an item <= 4 KB: 1 read unit
        write_units=ruled * float(profile["writes_per_rule_message"]),
    )


def presence_usage(design: str, prices: dict[str, Any]) -> Usage:
    """One online idle device for a month under presence `design` ("floor": what the agent does now,
    "today": the 30 s status and shadow of before), from the rates the agent's code states
    (firmware.config PRESENCE_*), with prices.toml's reconnects a day; prices.toml [presence.<design>]
    when the agent has no such rates."""
    from firmware import config as agent_config

    idle = getattr(
        agent_config, "PRESENCE_PER_IDLE_DAY" if design == "floor" else "PRESENCE_BEFORE_PER_IDLE_DAY", None
    )
    per_connection = getattr(agent_config, "PRESENCE_PER_CONNECTION", None)
    profile = prices["presence"][design]
    if idle is None or per_connection is None:
        return online_usage(profile, prices)
    days, connects = DAYS_PER_MONTH, float(profile["connects_per_day"])
    daily = {
        name: getattr(idle, name) + connects * getattr(per_connection, name)
        for name in ("messages", "rules", "invocations", "strong_reads", "writes", "shadow_operations")
    }
    memory = _assumption(prices, "presence", "memory_mb", 256)
    billed = _assumption(prices, "presence", "billed_ms", 20)
    invocations = daily["invocations"] * days
    return Usage(
        connection_minutes=MINUTES_PER_MONTH,
        # + the CONNECT and its SUBSCRIBEs, metered too
        messages=(daily["messages"] + connects * (1 + float(profile["subscribes_per_connect"]))) * days,
        rules=daily["rules"] * days,
        actions=daily["rules"] * days,
        registry_operations=daily["rules"] * days,  # the rule's WHERE reads the registry
        shadow_operations=daily["shadow_operations"] * days,
        lambda_requests=invocations,
        lambda_gb_seconds=_gb_seconds(invocations, memory, billed),
        read_units=daily["strong_reads"] * days,
        write_units=daily["writes"] * days,
    )


def toggle_usage(toggles_per_day: float, prices: dict[str, Any]) -> Usage:
    """An owner toggling a relay `toggles_per_day` times a day, for a month ([toggle])."""
    t = prices["toggle"]
    n = toggles_per_day * DAYS_PER_MONTH
    requests = n * float(t["api_requests"])
    return Usage(
        api_requests=requests,
        lambda_requests=requests,
        lambda_gb_seconds=_gb_seconds(
            requests,
            _assumption(prices, "owner", "memory_mb", 512),
            _assumption(prices, "owner", "billed_ms", 40),
        ),
        read_units=n * float(t["dynamodb_reads"]) * 0.5,
        shadow_operations=n * float(t["shadow_operations"]),
        messages=n * float(t["messages"]),
    )


def price(usage: Usage, prices: dict[str, Any]) -> dict[str, float]:
    """Dollars per component (COMPONENTS) and their `total`, tiers applied to these totals."""
    p, iot = prices, prices["iot_core"]
    cost = {
        "api_gateway": tiered(usage.api_requests, p["api_gateway"]["requests"], 1e6),
        "lambda": usage.lambda_requests / 1e6 * p["lambda"]["per_million_requests"]
        + tiered(usage.lambda_gb_seconds, p["lambda"]["gb_seconds"]),
        "dynamodb": usage.read_units / 1e6 * p["dynamodb"]["per_million_read_request_units"]
        + usage.write_units / 1e6 * p["dynamodb"]["per_million_write_request_units"],
        "iot_connectivity": usage.connection_minutes / 1e6 * iot["per_million_connection_minutes"],
        "iot_messaging": tiered(usage.messages, iot["messages"], 1e6),
        "iot_rules": usage.rules / 1e6 * iot["per_million_rules_triggered"]
        + usage.actions / 1e6 * iot["per_million_actions"],
        "iot_shadow": usage.shadow_operations / 1e6 * iot["per_million_shadow_operations"],
        "iot_registry": usage.registry_operations / 1e6 * iot["per_million_registry_operations"],
    }
    cost["total"] = sum(cost[c] for c in COMPONENTS)
    return cost


def connectivity_floor(prices: dict[str, Any]) -> float:
    """A month of one device connected and nothing else: the least an online device can cost."""
    return price(Usage(connection_minutes=MINUTES_PER_MONTH), prices)["total"]


@dataclass
class FleetBill:
    design: str
    devices: int
    shares: dict[str, float]  # unclaimed, online idle, toggling
    usage: dict[str, Usage]  # per kind of device, the whole fleet's
    cost: dict[str, float]  # per component and total, the whole fleet
    by_kind: dict[str, dict[str, float]]  # per kind of device, priced alone at first-tier rates


def fleet_bill(
    devices: int,
    poll_requests: float,
    poll_writes: float,
    prices: dict[str, Any],
    workload: Workload,
    design: str = "floor",
    unclaimed: float | None = None,
) -> FleetBill:
    """A month of a fleet: `poll_requests`/`poll_writes` from the simulation (its unclaimed devices),
    every other device online under presence `design`, a share of them toggled ([fleet_mix])."""
    mix = prices["fleet_mix"]
    unclaimed = float(mix["unclaimed"]) if unclaimed is None else unclaimed
    toggling = min(float(mix["toggling"]), 1.0 - unclaimed)
    idle = max(0.0, 1.0 - unclaimed - toggling)
    online = presence_usage(design, prices)
    usage = {
        "unclaimed": poll_usage(poll_requests, poll_writes, workload),
        "online_idle": online * (devices * idle),
        "toggling": (online + toggle_usage(float(mix["toggles_per_day"]), prices)) * (devices * toggling),
    }
    total = Usage()
    for part in usage.values():
        total = total + part
    return FleetBill(
        design,
        devices,
        {"unclaimed": unclaimed, "online_idle": idle, "toggling": toggling},
        usage,
        price(total, prices),
        {kind: price(part, prices) for kind, part in usage.items()},
    )
