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
    status_interval: float = 30.0
    http_timeout: float = 10.0
    mqtt_keepalive: int = 60
    log_level: str = "INFO"


_PATHS = {"identity_file", "state_dir"}
_NUMBERS = {"backoff_initial", "backoff_cap", "jitter", "status_interval", "http_timeout"}


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
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if config.status_interval < 1:
        raise ConfigError("status_interval must be at least 1 second")
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
