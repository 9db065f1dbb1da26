"""boto3 clients fail fast inside a function: bounded timeouts, standard retries, and a real hung server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from lambdas import aws_clients, definitions

# Standard mode's first retry waits a random fraction of a second (base 1 s, full jitter).
FIRST_BACKOFF_S = 1.0


def test_worst_case_call_ends_before_the_shortest_function_timeout() -> None:
    worst = aws_clients.MAX_ATTEMPTS * (aws_clients.CONNECT_TIMEOUT_S + aws_clients.READ_TIMEOUT_S)
    worst += FIRST_BACKOFF_S * (aws_clients.MAX_ATTEMPTS - 1)
    assert worst < min(f.timeout_s for f in definitions.FUNCTIONS)


def test_clients_use_standard_retries_and_the_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATCHKEY_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws_clients.reset()
    try:
        config = aws_clients.client("dynamodb").meta.config
        assert (config.connect_timeout, config.read_timeout) == (1.0, 3.0)
        assert config.retries["mode"] == "standard"
        assert config.retries["total_max_attempts"] == aws_clients.MAX_ATTEMPTS
    finally:
        aws_clients.reset()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: what a hung dependency looks like."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_hung_endpoint_raises_instead_of_hanging(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setattr(aws_clients, "LOCAL_READ_TIMEOUT_S", 0.5)  # the local cloud's long read, shortened
    client = boto3.session.Session().client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=silent_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=aws_clients.config(silent_server),
    )
    with pytest.raises(ReadTimeoutError):
        client.list_tables()
