"""List prices (`prices.toml`, shipped with this package) and the monthly bill of the device API."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fleetsim.fleet import FleetResult

PRICES_RESOURCE = "prices.toml"


def prices_text() -> str:
    """The shipped price list as TOML text (package data: works from a checkout and from a wheel)."""
    return resources.files(__package__ or "fleetsim").joinpath(PRICES_RESOURCE).read_text(encoding="utf-8")


def load_prices(text: str | None = None) -> dict[str, Any]:
    """The price list: `text` if given, else the shipped one. Raises ValueError on bad TOML."""
    return tomllib.loads(prices_text() if text is None else text)


def tiered(quantity: float, tiers: Sequence[dict[str, float]], unit: float = 1.0) -> float:
    """Cost of `quantity` under cumulative tiers [{"up_to": q, "price": p per `unit`}, ...]."""
    cost, floor = 0.0, 0.0
    for tier in tiers:
        ceiling = float(tier["up_to"])
        if quantity <= floor:
            break
        cost += (min(quantity, ceiling) - floor) / unit * float(tier["price"])
        floor = ceiling
    return cost


@dataclass(frozen=True)
class Workload:
    """What one device API request costs in resources (prices.toml [assumptions]; memory from definitions)."""

    memory_mb: float = 512.0
    billed_ms: float = 10.0
    read_units_per_poll: float = 0.5  # one eventually consistent GetItem of an item <= 4 KB
    write_units_per_touch: float = 1.0  # one UpdateItem of an item <= 1 KB, no index touched
    log_bytes_per_request: float = 800.0
    traced_share: float = 0.05

    @classmethod
    def from_prices(cls, prices: dict[str, Any], memory_mb: float | None = None) -> Workload:
        a = prices.get("assumptions", {})
        return cls(
            memory_mb=float(memory_mb if memory_mb is not None else a.get("memory_mb", 512)),
            billed_ms=float(a.get("billed_ms", 10)),
            read_units_per_poll=float(a.get("read_units_per_poll", 0.5)),
            write_units_per_touch=float(a.get("write_units_per_touch", 1.0)),
            log_bytes_per_request=float(a.get("log_bytes_per_request", 800)),
            traced_share=float(a.get("traced_share", 0.05)),
        )


def monthly_bill(
    requests: float, writes: float, prices: dict[str, Any], workload: Workload | None = None
) -> dict[str, float]:
    """One month of the device API: `requests` polls (each one Lambda invocation and one DynamoDB read)
    and `writes` lastPollAt writes, at the list prices of `prices` (prices.toml).

    `total` = API Gateway + Lambda + DynamoDB (what the design asks for); `observability` = CloudWatch
    Logs ingestion and X-Ray traces that the stack also turns on, reported apart."""
    w = workload or Workload()
    p = prices
    gb_seconds = requests * w.memory_mb / 1024 * w.billed_ms / 1000
    read_units = requests * w.read_units_per_poll
    write_units = writes * w.write_units_per_touch
    cost = {
        "api_gateway": tiered(requests, p["api_gateway"]["requests"], 1e6),
        "lambda_requests": requests / 1e6 * p["lambda"]["per_million_requests"],
        "lambda_duration": tiered(gb_seconds, p["lambda"]["gb_seconds"]),
        "dynamodb_reads": read_units / 1e6 * p["dynamodb"]["per_million_read_request_units"],
        "dynamodb_writes": write_units / 1e6 * p["dynamodb"]["per_million_write_request_units"],
    }
    cost["lambda"] = cost["lambda_requests"] + cost["lambda_duration"]
    cost["dynamodb"] = cost["dynamodb_reads"] + cost["dynamodb_writes"]
    cost["total"] = cost["api_gateway"] + cost["lambda"] + cost["dynamodb"]
    cost["logs"] = requests * w.log_bytes_per_request / 1e9 * p["cloudwatch_logs"]["per_gb_ingested"]
    cost["xray"] = requests * w.traced_share / 1e6 * p["xray"]["per_million_traces"]
    cost["observability"] = cost["logs"] + cost["xray"]
    cost["gb_seconds"] = gb_seconds
    cost["read_units"] = read_units
    cost["write_units"] = write_units
    return cost


def bills(
    result: FleetResult, prices: dict[str, Any], workload: Workload | None = None
) -> dict[str, dict[str, float]]:
    """The bill of the simulated horizon scaled to 30 days ("first"), and of a later month at the rate
    of the horizon's last day ("later")."""
    per_month = 1.0 / result.months
    return {
        "first": monthly_bill(result.requests * per_month, result.writes * per_month, prices, workload),
        "later": monthly_bill(result.last_day_requests * 30, result.last_day_writes * 30, prices, workload),
    }
