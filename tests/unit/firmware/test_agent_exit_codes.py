"""The agent stops, with one sentence and its own exit status, on answers only a re-flash can change.

First the agent's real code against the service's real device API handler (in process, on the Lambda
unit tests' moto cloud), so the codes it keys on are the ones the service sends; then the process
itself (`python -m firmware`) against a scripted API on 127.0.0.1, for the exit statuses a supervisor
sees; then the answers that must not stop it.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from firmware.agent import Agent, State
from firmware.api import Response
from firmware.clock import VirtualClock
from firmware.config import AgentConfig, parse_config
from firmware.exits import NEEDS_REFLASH, ExitCode, Unrecoverable
from firmware.identity import DeviceKey, Identity, save_identity_file
from firmware.schedule import DEFAULT_CAP
from tests.unit.firmware.firmware_fakes import SYSTEM_INFO, FakeTransport, StubApi, write_identity
from tests.unit.lambdas.conftest import aws, owner_event  # aws is a fixture

__all__ = ["aws"]

ROOT = Path(__file__).resolve().parents[3]
POLL, REGISTER = "/v1/device/poll", "/v1/device/register"
MAC, OTHER_MAC = "24:6f:28:00:00:01", "24:6f:28:00:00:02"


class HandlerHttp:
    """The agent's Http answered by the device API's Lambda handler, in process (no sockets)."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, int]] = []

    def post(self, url: str, body: bytes, headers: Any, timeout: float) -> Response:
        from lambdas.handlers import device_api

        path = urlsplit(url).path
        event = {
            "version": "2.0",
            "routeKey": f"POST {path}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "http": {"method": "POST", "path": path, "sourceIp": "203.0.113.9", "protocol": "HTTP/1.1"},
                "requestId": "agent-test",
                "stage": "$default",
            },
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }
        answer = device_api.handler(event, None)
        raw = answer.get("body") or ""
        if answer.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        self.statuses.append((path, answer["statusCode"]))
        return Response(answer["statusCode"], json.loads(raw) if raw else None, answer.get("headers") or {})


def make_agent(tmp_path: Path, http: Any, mac: str = MAC, **config: Any) -> Agent:
    config.setdefault("api_url", "https://api.latchkey.test")
    config.setdefault("state_dir", tmp_path / "state")
    info = {**SYSTEM_INFO, "mac": mac}
    return Agent(
        AgentConfig(**config),
        clock=VirtualClock(time.time()),  # the service checks timestamps against its own clock
        rng=random.Random(3),
        http=http,
        transport=FakeTransport(),
        system_info=lambda: dict(info),
    )


def stops_with(agent: Agent, max_steps: int = 12) -> Unrecoverable:
    with pytest.raises(Unrecoverable) as stopped:
        agent.run(max_steps=max_steps)
    return stopped.value


def add_device(name: str = "Küche 😀") -> dict[str, Any]:
    """The owner's "Add device", through the owner API: the token and the downloadable config."""
    from lambdas.handlers import owner_api

    answer = owner_api.handler(
        owner_event("POST", "/v1/pending", "owner-1", {"name": name, "board": "rpi"}), None
    )
    assert answer["statusCode"] == 201, answer
    return json.loads(answer["body"])


def minted_identity(tmp_path: Path) -> tuple[Path, str]:
    from lambdas.logic.manufacturing import mint_device

    minted = mint_device(None, "rpi", "test")
    path = tmp_path / "identity.json"
    save_identity_file(path, Identity(minted.device_id, DeviceKey.from_pem(minted.private_key_pem), ""))
    return path, minted.device_id


# --- against the service's device API ------------------------------------------------------------------


def test_a_token_used_by_another_key_exits_3(aws, tmp_path):
    token = add_device()["registrationToken"]
    first = make_agent(tmp_path / "a", HandlerHttp(), registration_token=token)
    first.step()
    assert first.state is State.POLL  # registered

    # When another device image with the same token (and MAC) but its own key registers
    http = HandlerHttp()
    stopped = stops_with(make_agent(tmp_path / "b", http, registration_token=token))

    assert stopped.exit_code == ExitCode.TOKEN_USED == 3
    assert http.statuses == [(REGISTER, 410)]
    assert "already used" in stopped.sentence and token not in stopped.sentence


def test_a_token_bound_to_another_mac_exits_5(aws, tmp_path):
    token = add_device()["registrationToken"]
    make_agent(tmp_path / "a", HandlerHttp(), registration_token=token).step()

    http = HandlerHttp()
    stopped = stops_with(make_agent(tmp_path / "b", http, mac=OTHER_MAC, registration_token=token))

    assert stopped.exit_code == ExitCode.MAC_MISMATCH == 5
    assert http.statuses == [(REGISTER, 409)]
    assert OTHER_MAC in stopped.sentence


def test_an_unknown_token_exits_4_once_a_second_answer_confirms_it(aws, tmp_path):
    http = HandlerHttp()
    agent = make_agent(tmp_path, http, registration_token="tok_" + "z" * 40)

    first_wait = agent.step()
    stopped = stops_with(agent)

    # A fresh token's index entry may lag (eventually consistent): the agent asked again at the cap
    assert 0.8 * DEFAULT_CAP <= first_wait <= DEFAULT_CAP
    assert stopped.exit_code == ExitCode.TOKEN_REJECTED == 4
    assert http.statuses == [(REGISTER, 401), (REGISTER, 401)]


def test_an_expired_token_exits_4(aws, tmp_path, monkeypatch):
    from lambdas.logic import registration

    # Given the downloaded config (name "Küche 😀"), pointed at the test API
    download = tomllib.loads(add_device()["config"]["agentToml"])
    config = parse_config({**download, "api_url": "https://api.latchkey.test"}, tmp_path)
    assert config.name == "Küche 😀"
    # When it is first powered on 25 hours later
    later = registration.now() + 25 * 3600
    monkeypatch.setattr(registration, "now", lambda: later)
    agent = Agent(
        config,
        clock=VirtualClock(),
        http=HandlerHttp(),
        transport=FakeTransport(),
        system_info=lambda: dict(SYSTEM_INFO),
    )
    stopped = stops_with(agent)

    assert stopped.exit_code == ExitCode.TOKEN_REJECTED
    assert "expired" in stopped.sentence


def test_a_revoked_device_wipes_its_credentials_and_exits_6(aws, tmp_path):
    from lambdas.logic.manufacturing import revoke_device

    identity_file, device_id = minted_identity(tmp_path)
    revoke_device(device_id)
    http = HandlerHttp()

    stopped = stops_with(make_agent(tmp_path, http, identity_file=identity_file))

    assert stopped.exit_code == ExitCode.REVOKED == 6
    assert http.statuses == [(POLL, 403)]
    assert device_id in stopped.sentence
    assert not (tmp_path / "state" / "credentials.json").exists()


def test_a_deleted_device_exits_7_once_a_second_poll_confirms_it(aws, tmp_path):
    identity_file, device_id = minted_identity(tmp_path)
    aws.ddb.delete_item(TableName=aws.tables["Devices"], Key={"deviceId": {"S": device_id}})  # gone
    http = HandlerHttp()

    # A cap under the service's 300 s timestamp window: virtual time must not outrun its clock.
    stopped = stops_with(make_agent(tmp_path, http, identity_file=identity_file, backoff_cap=60))

    assert stopped.exit_code == ExitCode.DELETED == 7
    assert http.statuses == [(POLL, 404), (POLL, 404)]


def test_every_final_answer_has_its_own_status_above_the_config_error():
    assert sorted(NEEDS_REFLASH) == [3, 4, 5, 6, 7]
    assert len(set(ExitCode)) == len(list(ExitCode))


# --- the process, as a supervisor sees it ----------------------------------------------------------------

CASES = {
    "token used": (REGISTER, [(410, "registration_token_used")], ExitCode.TOKEN_USED),
    "token unknown": (REGISTER, [(401, "invalid_registration_token")] * 2, ExitCode.TOKEN_REJECTED),
    "MAC mismatch": (REGISTER, [(409, "mac_mismatch")], ExitCode.MAC_MISMATCH),
    "revoked": (POLL, [(403, "forbidden")], ExitCode.REVOKED),
    "deleted": (POLL, [(404, "not_found")] * 2, ExitCode.DELETED),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_agent_process_exits_with_the_status_and_one_sentence(tmp_path, case):
    path, replies, expected = CASES[case]
    api = StubApi()
    for status, code in replies:
        api.reply(path, status, {"error": code, "message": "refused"})
    mode = (
        'registration_token = "tok_' + "q" * 40 + '"\n'
        if path == REGISTER
        else f'identity_file = "{write_identity(tmp_path)[0].name}"\n'
    )
    config = tmp_path / "agent.toml"
    config.write_text(
        f'api_url = "{api.url}"\n{mode}mac = "{MAC}"\nbackoff_initial = 0.1\nbackoff_cap = 0.3\n',
        encoding="utf-8",
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "firmware", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        api.close()

    assert done.returncode == expected, done.stderr
    final = [line for line in done.stderr.splitlines() if line.startswith("latchkey-agent: ")]
    assert len(final) == 1 and final[0].endswith("."), done.stderr
    assert "Traceback" not in done.stderr
    assert api.paths().count(path) == len(replies)


# --- answers that must not stop it ----------------------------------------------------------------------


@pytest.fixture
def stub():
    api = StubApi()
    yield api
    api.close()


def test_a_single_404_is_not_final_if_the_device_answers_next(stub, tmp_path):
    stub.reply(POLL, 404, {"error": "not_found", "message": "This device does not exist."})
    identity_file, _ = write_identity(tmp_path)
    agent = make_agent(tmp_path, None, api_url=stub.url, identity_file=identity_file)

    waits = [agent.step() for _ in range(4)]  # 404, then unclaimed three times, then a 404 again
    stub.reply(POLL, 404, {"error": "not_found", "message": "This device does not exist."})
    again = agent.step()

    assert 0.8 * DEFAULT_CAP <= waits[0] <= DEFAULT_CAP and 0.8 * DEFAULT_CAP <= again <= DEFAULT_CAP
    assert agent.state is State.POLL and stub.paths() == [POLL] * 5


@pytest.mark.parametrize(("path", "status"), [(POLL, 403), (POLL, 404), (REGISTER, 410), (REGISTER, 401)])
def test_a_refusal_without_the_device_apis_error_code_keeps_it_asking(stub, tmp_path, caplog, path, status):
    # Something else answered (a wrong api_url, a proxy): never the reason to stop for good
    for _ in range(3):
        stub.reply(path, status, {"message": "Not Found"})
    mode = (
        {"registration_token": "tok-x"}
        if path == REGISTER
        else {"identity_file": write_identity(tmp_path)[0]}
    )
    agent = make_agent(tmp_path, None, api_url=stub.url, **mode)

    waits = [agent.step() for _ in range(3)]

    assert all(0.8 * DEFAULT_CAP <= w <= DEFAULT_CAP for w in waits)
    assert stub.paths() == [path] * 3
    assert "without the device API's error code" in caplog.text
