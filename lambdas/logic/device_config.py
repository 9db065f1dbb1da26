"""The agent's configuration files, rendered in one place (design.md A and B).

- `agent_toml()`: the config `latchkey devices mint` writes next to a minted identity (mode A).
- `render()`: the downloadable configuration with a registration token embedded (mode B), from one
  source, `settings()`, rendered two ways: a TOML file for the Python agent and a C header for
  Arduino-class boards (ESP8266/ESP32).

TOML goes through a maintained writer (tomli-w), never through string formatting: "a JSON string is a
TOML string" fails outside the Basic Multilingual Plane, where JSON writes surrogate pairs that TOML
refuses. Control characters are refused before they get here (names are validated by the models).
"""

from __future__ import annotations

from typing import Any

import tomli_w

ARDUINO_BOARDS = ("esp32", "esp8266")


def _check(value: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("configuration values must not contain control characters")
    return value


def toml_document(comments: list[str], values: dict[str, Any]) -> str:
    """`values` as a flat TOML document (strings, numbers, booleans), after one `# ` line per comment."""
    for text in (*comments, *(v for v in values.values() if isinstance(v, str))):
        _check(text)
    return "".join(f"# {line}\n" for line in comments) + tomli_w.dumps(values)


def agent_toml(
    device_id: str, api_url: str, board: str | None, identity_file: str, extra: dict[str, Any] | None = None
) -> str:
    """The agent config of a minted device (`latchkey devices mint`): paths relative to the file."""
    values: dict[str, Any] = {
        "api_url": api_url,
        "identity_file": identity_file,
        "state_dir": "state",
        "board": board or "",
        **(extra or {}),
    }
    comments = [
        f"Latchkey agent configuration for {device_id}, written by `latchkey devices mint`.",
        "Run: python -m firmware --config agent.toml   (relative paths are relative to this file)",
    ]
    return toml_document(comments, values)


def settings(api_url: str, token: str, name: str, board: str) -> list[tuple[str, str, str]]:
    """(TOML key, C macro, value) for each setting the device needs."""
    return [
        ("api_url", "LATCHKEY_API_URL", api_url),
        ("registration_token", "LATCHKEY_REGISTRATION_TOKEN", token),
        ("name", "LATCHKEY_DEVICE_NAME", name),
        ("board", "LATCHKEY_BOARD", board),
    ]


def render_toml(items: list[tuple[str, str, str]]) -> str:
    comments = [
        "Latchkey agent configuration. Run: python -m firmware --config agent.toml",
        "The registration token is single-use and expires 24 hours after it was issued.",
    ]
    return toml_document(comments, {key: value for key, _, value in items})


def _c_string(value: str) -> str:
    """A C string literal of `value`'s UTF-8 bytes, for C and C++ compilers alike."""
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


def render(api_url: str, token: str, name: str, board: str) -> dict[str, object]:
    items = settings(api_url, token, name, board)
    return {
        "agentToml": render_toml(items),
        "arduinoHeader": render_c_header(items),
        "filenames": {"agentToml": "agent.toml", "arduinoHeader": "latchkey_config.h"},
        "recommended": "arduinoHeader" if board.lower() in ARDUINO_BOARDS else "agentToml",
    }
