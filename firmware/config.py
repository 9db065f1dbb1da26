"""The agent's TOML configuration: flat keys, defaults for everything but the identity and the API."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from firmware import schedule
from firmware.sysinfo import normalize_mac

log = logging.getLogger(__name__)


class ConfigError(Exception):
    pass


# --- presence (docs/protocol.md "Presence", docs/performance.md "Presence") --------------------------------
# Online/offline come from IoT's lifecycle events; the agent sends a status message when its facts change
# and a heartbeat this often (lambdas.domain.device.HEARTBEAT_SECONDS must agree: two missed ones -> away).
HEARTBEAT_INTERVAL = 6 * 3600.0
# PINGREQ every keep-alive when idle (not metered); a dropped connection is noticed after 1.5 x this
# (IoT Core and mosquitto), 60 s here, which keeps "offline within 90 s" with room for the event's delivery.
MQTT_KEEPALIVE = 40
DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class PresenceRates:
    """What one online device that stays connected and idle costs per day, counted from the code."""

    messages: float  # metered MQTT publishes (device -> broker, broker -> device)
    rules: float  # topic rules triggered (each with one Lambda action)
    invocations: float  # Presence Lambda invocations
    strong_reads: float  # strongly consistent DynamoDB GetItem (1 read unit each)
    writes: float  # DynamoDB UpdateItem (1 write unit each)
    shadow_operations: float  # Device Shadow service requests
    pings: float  # MQTT PINGREQ (not metered)


# Before (30 s status + shadow report, a write when the last one is 45 s old: every other message).
PRESENCE_BEFORE_PER_IDLE_DAY = PresenceRates(
    messages=2 * DAY_SECONDS / 30,
    rules=DAY_SECONDS / 30,
    invocations=DAY_SECONDS / 30,
    strong_reads=DAY_SECONDS / 30,
    writes=DAY_SECONDS / 60,
    shadow_operations=DAY_SECONDS / 30,
    pings=0.0,  # every 30 s something was sent anyway, so paho sent no PINGREQ
)
# Now: only the heartbeat, each one a confirming write (CONFIRM_INTERVAL_MS < HEARTBEAT_INTERVAL).
PRESENCE_PER_IDLE_DAY = PresenceRates(
    messages=DAY_SECONDS / HEARTBEAT_INTERVAL,
    rules=DAY_SECONDS / HEARTBEAT_INTERVAL,
    invocations=DAY_SECONDS / HEARTBEAT_INTERVAL,
    strong_reads=DAY_SECONDS / HEARTBEAT_INTERVAL,
    writes=DAY_SECONDS / HEARTBEAT_INTERVAL,
    shadow_operations=0.0,
    pings=DAY_SECONDS / MQTT_KEEPALIVE,
)
# Each (re)connection on top: 2 lifecycle events (2 rules, invocations, reads, writes; IoT's own
# messages), 1 status message after a boot, and the shadow get (+ a report only if it differs).
PRESENCE_PER_CONNECTION = PresenceRates(
    messages=3.0,  # status + shadow get + get/accepted delivered
    rules=3.0,
    invocations=3.0,
    strong_reads=3.0,
    writes=2.0,
    shadow_operations=1.0,
    pings=0.0,
)


@dataclass(frozen=True)
class AgentConfig:
    api_url: str = ""  # may come from the identity file's apiUrl instead
    identity_file: Path | None = None  # mode A: the JSON written by `latchkey devices mint`
    registration_token: str = field(default="", repr=False)  # mode B: one-time token; never logged
    name: str = ""
    board: str = ""  # empty: detected
    mac: str = ""  # empty: detected; set it to run several agents on one host
    state_dir: Path = Path("state")
    backoff_initial: float = schedule.INITIAL_DELAY
    backoff_cap: float = schedule.DEFAULT_CAP
    jitter: float = schedule.DEFAULT_JITTER
    # The poll schedule's shape and the storm guards (firmware/schedule.py, docs/performance.md).
    poll_fast_wait: float = schedule.FAST_WAIT
    poll_fast_window: float = schedule.FAST_WINDOW
    poll_growth: float = schedule.GROWTH
    first_poll_spread: float = schedule.FIRST_POLL_SPREAD
    reconnect_initial: float = schedule.RECONNECT_INITIAL
    reconnect_cap: float = schedule.RECONNECT_CAP
    status_interval: float = HEARTBEAT_INTERVAL  # the heartbeat; status on change comes on top
    http_timeout: float = 10.0
    mqtt_keepalive: int = MQTT_KEEPALIVE
    log_level: str = "INFO"
    renew_share: float = 2 / 3  # certificate rotation: renew after this share of the lifetime
    rotate_key: bool = True  # certificate rotation: a new key each time (false: the same key, re-certified)


_PATHS = {"identity_file", "state_dir"}
_NUMBERS = {"backoff_initial", "backoff_cap", "jitter", "status_interval", "http_timeout", "renew_share"}
_NUMBERS |= {
    "poll_fast_wait",
    "poll_fast_window",
    "poll_growth",
    "first_poll_spread",
    "reconnect_initial",
    "reconnect_cap",
}
_BOOLEANS = {"rotate_key"}


def parse_config(data: dict[str, Any], base_dir: Path) -> AgentConfig:
    """Validate a parsed TOML document; relative paths are taken relative to `base_dir`."""
    known = {f.name for f in fields(AgentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        # Warn rather than fail: an older agent must still start with a newer generated config.
        log.warning("ignoring unknown config keys: %s", ", ".join(unknown))
    values: dict[str, Any] = {}
    for key in known & set(data):
        value = data[key]
        if key in _PATHS:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{key} must be a non-empty path string")
            path = Path(value).expanduser()
            values[key] = path if path.is_absolute() else base_dir / path
        elif key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key} must be a number, got {value!r}")
            values[key] = float(value)
        elif key in _BOOLEANS:
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
            values[key] = value
        elif key == "mqtt_keepalive":
            if isinstance(value, bool) or not isinstance(value, int) or not 5 <= value <= 1200:
                raise ConfigError("mqtt_keepalive must be an integer between 5 and 1200 seconds")
            values[key] = value
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string")
            values[key] = value.strip()
    if "state_dir" not in values:
        values["state_dir"] = base_dir / AgentConfig.state_dir
    config = AgentConfig(**values)
    _check(config)
    return config


def _check(config: AgentConfig) -> None:
    try:
        schedule.validate(config.backoff_initial, config.backoff_cap, config.jitter)
        schedule.validate_shape(config.poll_fast_window, config.poll_growth, config.poll_fast_wait)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if config.first_poll_spread < 0:
        raise ConfigError("first_poll_spread must be >= 0")
    if not 0 < config.reconnect_initial <= config.reconnect_cap:
        raise ConfigError("reconnect_initial must be > 0 and <= reconnect_cap")
    if not 1 <= config.status_interval <= HEARTBEAT_INTERVAL:
        raise ConfigError(
            f"status_interval must be between 1 and {HEARTBEAT_INTERVAL:.0f} seconds "
            "(the service shows a device away after two missed heartbeats)"
        )
    if not 0.1 <= config.renew_share <= 0.95:
        raise ConfigError("renew_share must be between 0.1 and 0.95 (a share of the certificate's lifetime)")
    if config.http_timeout <= 0:
        raise ConfigError("http_timeout must be > 0")
    if config.api_url and not config.api_url.startswith(("http://", "https://")):
        raise ConfigError(f"api_url must start with http:// or https://, got {config.api_url!r}")
    if config.mac:
        try:
            normalize_mac(config.mac)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if config.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("log_level must be DEBUG, INFO, WARNING or ERROR")


def load_config(path: Path) -> AgentConfig:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} is not readable: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return parse_config(data, path.resolve().parent)
