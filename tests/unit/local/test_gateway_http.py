"""The gateway against malformed and slow HTTP, with raw sockets on 127.0.0.1.

Each case: the bad request gets a 4xx or a closed connection, never reaches a function, and a normal
request right after it still succeeds.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable

import pytest

from local.gateway import MAX_REQUEST_BYTES, Gateway
from tests.unit.local.conftest import REQUEST_TIMEOUT, Capture, read_until_closed

POLL = b"POST /v1/device/poll HTTP/1.1\r\nHost: gw\r\n"
CONFIG = b"GET /config.json HTTP/1.1\r\nHost: gw\r\n\r\n"


def status_lines(answer: bytes) -> list[bytes]:
    return [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def status(answer: bytes) -> int:
    lines = status_lines(answer)
    assert lines, answer
    return int(lines[0].split()[1])


def body(answer: bytes) -> object:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def assert_still_serving(raw: Callable[[bytes], bytes]) -> None:
    answer = raw(CONFIG)
    assert status(answer) == 200
    assert body(answer)["userPoolClientId"] == "unit-client"  # type: ignore[index]


def test_a_well_formed_request_reaches_the_function(raw: Callable[[bytes], bytes], capture: Capture):
    answer = raw(POLL + b"Content-Length: 2\r\n\r\n{}")
    assert status(answer) == 200
    assert [e["body"] for e in capture.events] == ["{}"]
    answer = raw(POLL + b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n")
    assert status(answer) == 200
    assert [e["body"] for e in capture.events] == ["{}", "{}"]


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: abc\r\n",
        b"Content-Length: -5\r\n",
        b"Content-Length: +2\r\n",
        b"Content-Length: 0x2\r\n",
        b"Content-Length: \xc2\xb2\r\n",  # a superscript two passes str.isdigit()
        b"Content-Length: 2\r\nContent-Length: 3\r\n",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ],
)
def test_framing_a_proxy_must_refuse_is_400(raw: Callable[[bytes], bytes], capture: Capture, framing: bytes):
    answer = raw(POLL + framing + b"\r\n{}")
    assert status(answer) == 400 and body(answer) == {"message": "Bad Request"}
    assert capture.events == []
    assert_still_serving(raw)


@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hexadecimal
        b"-2\r\n{}\r\n0\r\n\r\n",  # negative
        b"2\r\n{}XX0\r\n\r\n",  # no line end after the data
        b"2\r\n{}\r\n",  # ends without the last chunk
    ],
)
def test_a_bad_chunk_is_400(raw: Callable[[bytes], bytes], capture: Capture, chunks: bytes):
    answer = raw(POLL + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status(answer) in (400, 408), answer
    assert capture.events == []
    assert_still_serving(raw)


def test_a_body_behind_a_negative_content_length_is_not_a_second_request(
    raw: Callable[[bytes], bytes], capture: Capture
):
    smuggled = b"POST /v1/device/ack HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"
    answer = raw(POLL + b"Content-Length: -" + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
    assert len(status_lines(answer)) == 1 and status(answer) == 400
    assert capture.events == []


def test_every_answer_closes_the_connection_so_nothing_is_read_as_a_next_request(
    raw: Callable[[bytes], bytes], capture: Capture
):
    """Two requests on one connection: werkzeug answers the first with Connection: close and discards
    the rest, so a body the first request's framing did not claim can never become a request."""
    answer = raw(POLL + b"Content-Length: 2\r\n\r\n{}" + POLL + b"Content-Length: 2\r\n\r\n{}")
    assert len(status_lines(answer)) == 1 and b"Connection: close" in answer
    assert len(capture.events) == 1


def test_a_body_over_the_api_gateway_limit_is_413(raw: Callable[[bytes], bytes], capture: Capture):
    answer = raw(POLL + f"Content-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode())
    assert status(answer) == 413 and body(answer) == {"message": "Request Entity Too Large"}
    chunk = 1024 * 1024
    chunked = (f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n") * 11 + b"0\r\n\r\n"
    answer = raw(POLL + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert status(answer) == 413
    assert capture.events == []
    assert_still_serving(raw)


def test_a_body_that_stops_arriving_is_408(raw: Callable[[bytes], bytes], capture: Capture):
    answer = raw(POLL + b"Content-Length: 10\r\n\r\n{}")  # 8 bytes never come
    assert status(answer) == 408 and body(answer) == {"message": "Request Timeout"}
    assert capture.events == []


def test_a_body_shorter_than_its_content_length_is_400(gateway: Gateway, capture: Capture):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(POLL + b"Content-Length: 10\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)  # the client is done sending
        answer = read_until_closed(sock)
    assert status(answer) == 400
    assert capture.events == []


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /config.json\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /config.json HTTP/1.x\r\n\r\n", 400),
        (b"GET /config.json HTTP/9.9\r\n\r\n", 505),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
def test_a_bad_request_line_is_refused_as_json(
    raw: Callable[[bytes], bytes], request_line: bytes, expected: int
):
    answer = raw(request_line)
    assert status(answer) == expected
    assert set(body(answer)) == {"message"}  # type: ignore[arg-type]
    assert_still_serving(raw)


def test_too_many_headers_are_refused(raw: Callable[[bytes], bytes], capture: Capture):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    answer = raw(POLL + headers + b"Content-Length: 2\r\n\r\n{}")
    assert status(answer) == 431
    assert capture.events == []


def test_sixty_half_sent_requests_hold_no_worker_for_ever(gateway: Gateway, raw: Callable[[bytes], bytes]):
    halves = [POLL + b"Content-Le", POLL + b"Content-Length: 100\r\n\r\n{", b"GET /config"]
    sockets = []
    try:
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            sock.sendall(halves[i % len(halves)])
            sockets.append(sock)
        assert_still_serving(raw)  # while all sixty are open
        answers = [read_until_closed(sock) for sock in sockets]  # each returns once the server closed it
    finally:
        for sock in sockets:
            sock.close()
    assert all(answer == b"" or status(answer) == 408 for answer in answers), answers
    assert_still_serving(raw)


def test_a_client_dripping_its_headers_is_cut_off_at_the_request_deadline(
    gateway: Gateway, raw: Callable[[bytes], bytes], capture: Capture
):
    """Each byte comes well within the read timeout; only the deadline for the whole request stops it."""
    request = POLL + b"X-Pad: " + b"a" * 1000 + b"\r\nContent-Length: 2\r\n\r\n{}"
    answer = None
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        give_up = time.monotonic() + 10 * REQUEST_TIMEOUT  # bounds the loop; asserts no duration
        for i in range(len(request)):
            if time.monotonic() > give_up:
                break
            if select.select([sock], [], [], 0.05)[0]:  # the server answered or closed
                answer = read_until_closed(sock)
                break
            try:
                sock.send(request[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                answer = read_until_closed(sock)
                break
    assert answer is not None, "the server still listened to a client sending one byte per 50 ms"
    assert answer == b"" or status(answer) == 408
    assert capture.events == []
    assert_still_serving(raw)
