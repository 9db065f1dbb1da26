"""A gateway on 127.0.0.1 without the rest of the embedded cloud: no moto, no broker.

`gateway`  a started `local.gateway.Gateway` with short timeouts (read 0.5 s, whole request 1.5 s), a
           tiny web root, and every function of `definitions.FUNCTIONS` answered by `capture`.
`capture`  what the functions received (`.events`) and what they answer (`.response`).
`raw`      `raw(data) -> bytes`: send bytes on a fresh socket, read until the server closes it.
"""

from __future__ import annotations

import socket
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lambdas import definitions as d
from local.gateway import Gateway, GatewayConfig

READ_TIMEOUT = 0.5
REQUEST_TIMEOUT = 1.5
ORIGIN_VERIFY = "origin-secret-for-tests"


class Capture:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.response: Any = {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": "{}",
        }

    def handler(self, event: dict[str, Any], _context: Any) -> Any:
        self.events.append(event)
        return self.response


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Capture:
    cap = Capture()
    module_name = f"latchkey_unit_capture_{uuid.uuid4().hex[:8]}"
    module = types.ModuleType(module_name)
    module.handler = cap.handler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module_name, module)
    functions = tuple(replace(fn, handler=f"{module_name}.handler") for fn in d.FUNCTIONS)
    monkeypatch.setattr(d, "FUNCTIONS", functions)
    return cap


@pytest.fixture
def gateway(tmp_path: Path, capture: Capture) -> Iterator[Gateway]:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>claim</title>")
    config = GatewayConfig(
        moto_url="http://127.0.0.1:9",  # never reached: no test here signs in
        region="us-east-1",
        user_pool_id="us-east-1_unit",
        user_pool_client_id="unit-client",
        web_root=web,
        origin_verify=ORIGIN_VERIFY,
    )
    gw = Gateway(config, read_timeout=READ_TIMEOUT, request_timeout=REQUEST_TIMEOUT).start()
    try:
        yield gw
    finally:
        gw.stop()


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(limit)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


@pytest.fixture
def raw(gateway: Gateway) -> Callable[[bytes], bytes]:
    def send(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(data)
            return read_until_closed(sock)

    return send
