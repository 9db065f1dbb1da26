"""The downloadable device configuration with a registration token embedded (design.md B).

One source, `settings()`, rendered two ways: a TOML file for the Python agent and a C header for
Arduino-class boards (ESP8266/ESP32). Values are escaped for each syntax; control characters are refused
before they get here (names are validated by the models).
"""

from __future__ import annotations

import json
from typing import Any

ARDUINO_BOARDS = ("esp32", "esp8266")


def settings(api_url: str, token: str, name: str, board: str) -> list[tuple[str, str, str]]:
    """(TOML key, C macro, value) for each setting the device needs."""
    return [
        ("api_url", "LATCHKEY_API_URL", api_url),
        ("registration_token", "LATCHKEY_REGISTRATION_TOKEN", token),
        ("name", "LATCHKEY_DEVICE_NAME", name),
        ("board", "LATCHKEY_BOARD", board),
    ]


def _check(value: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("configuration values must not contain control characters")
    return value


def render_toml(items: list[tuple[str, str, str]]) -> str:
    lines = ["# Latchkey agent configuration. Run: python -m firmware --config agent.toml"]
    lines += ["# The registration token is single-use and expires 24 hours after it was issued."]
    # A JSON string of printable characters is a valid TOML basic string.
    lines += [f"{key} = {json.dumps(_check(value), ensure_ascii=True)}" for key, _, value in items]
    return "\n".join(lines) + "\n"


def _c_string(value: str) -> str:
    out = []
    for ch in _check(value):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "?":
            out.append("\\?")  # no trigraphs
        elif ord(ch) < 0x80:
            out.append(ch)
        else:
            out.extend(f'\\x{byte:02x}""' for byte in ch.encode())  # "" ends the hex escape
    return '"' + "".join(out) + '"'


def render_c_header(items: list[tuple[str, str, str]]) -> str:
    lines = [
        "/* Latchkey device configuration, generated. The registration token is single-use and",
        " * expires 24 hours after it was issued. Include it from your sketch. */",
        "#ifndef LATCHKEY_CONFIG_H",
        "#define LATCHKEY_CONFIG_H",
    ]
    lines += [f"#define {macro} {_c_string(value)}" for _, macro, value in items]
    lines += ["#endif /* LATCHKEY_CONFIG_H */"]
    return "\n".join(lines) + "\n"


def agent_toml(
    device_id: str, api_url: str, board: str | None, identity_file: str, extra: dict[str, Any] | None = None
) -> str:
    """The agent config of a minted device (`latchkey devices mint`): paths relative to the file."""
    lines = [
        f"# Latchkey agent configuration for {device_id}, written by `latchkey devices mint`.",
        "# Run: python -m firmware --config agent.toml   (relative paths are relative to this file)",
        f"api_url = {json.dumps(api_url)}",
        f"identity_file = {json.dumps(identity_file)}",
        f"state_dir = {json.dumps('state')}",
        f"board = {json.dumps(board or '')}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (extra or {}).items()]
    return "\n".join(lines) + "\n"


def render(api_url: str, token: str, name: str, board: str) -> dict[str, object]:
    items = settings(api_url, token, name, board)
    return {
        "agentToml": render_toml(items),
        "arduinoHeader": render_c_header(items),
        "filenames": {"agentToml": "agent.toml", "arduinoHeader": "latchkey_config.h"},
        "recommended": "arduinoHeader" if board.lower() in ARDUINO_BOARDS else "agentToml",
    }
