"""CloudFront's part locally: origin request headers of /v1/* calls, and the static page."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound
from werkzeug.test import EnvironBuilder

from lambdas import constants as c
from local.cloudfront import origin_request_headers, static_file
from local.gateway import Gateway
from tests.unit.local.conftest import ORIGIN_VERIFY, Capture, read_until_closed

FORGED = [
    ("X-Forwarded-For", "203.0.113.9"),
    ("x-forwarded-for", "203.0.113.10"),
    ("CloudFront-Viewer-Address", "203.0.113.9:4444"),
    ("CloudFront-Viewer-Country", "XX"),
    ("X-Latchkey-Origin-Verify", "guessed"),
]


def test_client_sent_cloudfront_and_forwarding_headers_are_replaced():
    headers = origin_request_headers(
        [("Host", "gw"), *FORGED, ("X-Other", "kept")], ("127.0.0.1", 5151), "s3cr3t"
    )
    assert headers == [
        ("Host", "gw"),
        ("X-Other", "kept"),
        (c.HEADER_VIEWER_ADDRESS, "127.0.0.1:5151"),
        ("x-forwarded-for", "127.0.0.1"),
        (c.HEADER_ORIGIN_VERIFY, "s3cr3t"),
    ]
    without_secret = origin_request_headers(FORGED, ("127.0.0.1", 1), "")
    assert [name for name, _ in without_secret] == [c.HEADER_VIEWER_ADDRESS, "x-forwarded-for"]


def test_the_function_sees_the_socket_peer_and_the_origin_secret_not_forged_headers(
    gateway: Gateway, capture: Capture
):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        port = sock.getsockname()[1]
        forged = "".join(f"{name}: {value}\r\n" for name, value in FORGED)
        sock.sendall(
            f"POST /v1/device/poll HTTP/1.1\r\nHost: gw\r\n{forged}Content-Length: 2\r\n\r\n{{}}".encode()
        )
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
    (event,) = capture.events
    headers = event["headers"]
    assert headers[c.HEADER_VIEWER_ADDRESS] == f"127.0.0.1:{port}"
    assert headers[c.HEADER_ORIGIN_VERIFY] == ORIGIN_VERIFY
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert "cloudfront-viewer-country" not in headers
    assert "203.0.113" not in str(event)
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"


@pytest.fixture
def web(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<title>claim</title>")
    (root / "js" / "app.js").write_text("export {};")
    (root / "js" / "index.html").write_text("js index")
    (root / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return root


@pytest.fixture
def get(web: Path) -> Callable[..., tuple[int, dict[str, str], bytes]]:
    def fetch(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        environ = EnvironBuilder(path="/", headers=headers).get_environ()
        response = static_file(web, path, environ)
        response.direct_passthrough = False
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.get_data()

    return fetch


def test_static_files_types_and_directories(get: Callable[..., tuple[int, dict[str, str], bytes]]):
    status, headers, data = get("/")
    assert (status, data) == (200, b"<title>claim</title>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache" and headers["x-content-type-options"] == "nosniff"
    assert "content-disposition" not in headers
    assert get("/js/app.js")[1]["content-type"] == "text/javascript; charset=utf-8"
    assert get("/js/")[2] == b"js index"
    assert get("/logo.svg")[1]["content-type"].startswith("image/svg+xml")


def test_static_files_answer_conditional_requests(get: Callable[..., tuple[int, dict[str, str], bytes]]):
    etag = get("/index.html")[1]["etag"]
    assert get("/index.html", {"If-None-Match": etag})[0] == 304


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/..",
        "/missing.js",
        "/\x00index.html",
        "/js/x/../../../secret.txt",
    ],
)
def test_nothing_outside_the_web_root_or_missing_is_served(web: Path, path: str):
    environ = EnvironBuilder(path="/").get_environ()
    with pytest.raises(NotFound):
        static_file(web, path, environ)
