"""The embedded cloud behind `make run`: gateway (API Gateway + JWT authorizer + static site + Cognito
pass-through), seeding from definitions, presence bridge (certificate status at the broker: test_broker.py)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
import types
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lambdas import constants as c
from lambdas import definitions as d
from local.cloud import EmbeddedCloud
from local.testing import HttpClient, MqttClient, Owner, provision_thing, wait_until

pytestmark = pytest.mark.integration

CONFIG_KEYS = {
    "apiUrl",
    "cognitoEndpoint",
    "region",
    "userPoolId",
    "userPoolClientId",
    "productName",
    "logoUrl",
}


# -- a stand-in handler, to check the plumbing (events in, responses out) -------------------------------
class Capture:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.response: Any = {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": "{}",
        }

    def handler(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point every function of definitions.FUNCTIONS at a capturing handler for this test."""

    def install(*logical_ids: str) -> Capture:
        cap = Capture()
        module_name = f"latchkey_test_capture_{uuid.uuid4().hex[:8]}"
        module = types.ModuleType(module_name)
        module.handler = cap.handler  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module_name, module)
        functions = tuple(
            replace(fn, handler=f"{module_name}.handler") if fn.logical_id in logical_ids else fn
            for fn in d.FUNCTIONS
        )
        monkeypatch.setattr(d, "FUNCTIONS", functions)
        return cap

    return install


# -- forged tokens, signed with moto's own key (what moto signs real tokens with) ---------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _moto_private_key() -> rsa.RSAPrivateKey:
    from moto.utilities.utils import load_resource

    jwk = load_resource("cognitoidp/resources/jwks-private.json")
    jwk = jwk["keys"][0] if "keys" in jwk else jwk

    def num(name: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(jwk[name] + "=" * (-len(jwk[name]) % 4)), "big")

    n, e, private = num("n"), num("e"), num("d")
    p, q = rsa.rsa_recover_prime_factors(n, e, private)
    return rsa.RSAPrivateNumbers(
        p,
        q,
        private,
        rsa.rsa_crt_dmp1(private, p),
        rsa.rsa_crt_dmq1(private, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    ).private_key()


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None, kid: str = "dummy") -> str:
    key = key or _moto_private_key()
    header = _b64url(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- environment and seeding -------------------------------------------------------------------------
def test_environment_and_resources_come_from_definitions(cloud: EmbeddedCloud):
    for table in d.TABLES:
        name = os.environ[table.env_var]
        assert cloud.env[table.env_var] == name
        desc = cloud.aws("dynamodb").describe_table(TableName=name)["Table"]
        assert desc["KeySchema"][0] == {"AttributeName": table.partition_key, "KeyType": "HASH"}
        assert {i["IndexName"] for i in desc.get("GlobalSecondaryIndexes", [])} == {
            i.name for i in table.indexes
        }
        ttl = cloud.aws("dynamodb").describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl.get("AttributeName") == table.ttl_attribute
    assert os.environ[c.ENV_CERT_MODE] == "aws"  # CreateCertificateFromCsr, honoured by local.strict_iot
    assert os.environ[c.ENV_IOT_ENDPOINT] == f"127.0.0.1:{cloud.mqtt_port}"
    assert os.environ[c.ENV_CA_PEM] == cloud.ca_pem
    assert os.environ["LATCHKEY_AWS_ENDPOINT_URL"] == cloud.moto_url
    bridge = json.loads(os.environ[c.ENV_MQTT_BRIDGE])
    assert {"host", "port", "certfile", "keyfile", "cafile"} <= bridge.keys()
    secret = json.loads(
        cloud.aws("secretsmanager").get_secret_value(SecretId=os.environ[c.ENV_SECRETS_ARN])["SecretString"]
    )
    assert len(base64.b64decode(secret["claimCodeKey"])) == 32
    assert secret["caCertPem"] == cloud.ca_pem and "PRIVATE KEY" in secret["caKeyPem"]
    policy = cloud.aws("iot").get_policy(policyName=os.environ[c.ENV_IOT_POLICY_NAME])
    assert (
        json.loads(policy["policyDocument"])["Statement"]
        == d.device_policy_document("us-east-1", "123456789012")["Statement"]
    )
    cloud.aws("iot").describe_thing_type(thingTypeName=os.environ[c.ENV_THING_TYPE_NAME])


# -- gateway: config, Cognito, static ---------------------------------------------------------------
def test_config_json(http: HttpClient, cloud: EmbeddedCloud):
    answer = http.get("/config.json")
    assert answer.status == 200
    config = answer.json()
    assert set(config) == CONFIG_KEYS
    assert config["userPoolId"] == cloud.user_pool_id
    assert config["userPoolClientId"] == cloud.user_pool_client_id
    assert config["cognitoEndpoint"] == f"{cloud.gateway_url}/cognito/"
    assert config["apiUrl"] == ""


def test_cognito_pass_through_signs_in_like_the_page(http: HttpClient, owner: Owner, cloud: EmbeddedCloud):
    target = {
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        "Content-Type": "application/x-amz-json-1.1",
    }
    answer = http.post(
        "/cognito/",
        data=json.dumps(
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": cloud.user_pool_client_id,
                "AuthParameters": {"USERNAME": owner.email, "PASSWORD": owner.password},
            }
        ),
        headers=target,
    )
    assert answer.status == 200, answer.text
    assert claims_of(answer.json()["AuthenticationResult"]["IdToken"])["sub"] == owner.sub

    wrong = http.post(
        "/cognito/",
        data=json.dumps(
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": cloud.user_pool_client_id,
                "AuthParameters": {"USERNAME": owner.email, "PASSWORD": owner.password + "x"},
            }
        ),
        headers=target,
    )
    assert wrong.status == 400 and wrong.json()["__type"] == "NotAuthorizedException"

    admin = http.post(
        "/cognito/",
        data=json.dumps({"UserPoolId": cloud.user_pool_id, "Username": "evil@example.com"}),
        headers={**target, "X-Amz-Target": "AWSCognitoIdentityProviderService.AdminCreateUser"},
    )
    assert admin.status == 400
    other_service = http.post(
        "/cognito/", data="{}", headers={**target, "X-Amz-Target": "DynamoDB_20120810.ListTables"}
    )
    assert other_service.status == 400


@pytest.fixture
def web_root(cloud: EmbeddedCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>claim</title>")
    (root / "js" / "app.js").write_text("export const x = 1;")
    (root / "style.css").write_text("body{}")
    (root / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    assert cloud.gateway is not None
    monkeypatch.setattr(cloud.gateway.config, "web_root", root)
    return root


def test_static_files_with_content_types(http: HttpClient, web_root: Path):
    expected = {
        "/": ("text/html", "claim"),
        "/index.html": ("text/html", "claim"),
        "/js/app.js": ("text/javascript", "export"),
        "/style.css": ("text/css", "body"),
        "/logo.svg": ("image/svg+xml", "<svg"),
    }
    for path, (ctype, snippet) in expected.items():
        answer = http.get(path)
        assert answer.status == 200, path
        assert answer.headers["content-type"].startswith(ctype), path
        assert snippet in answer.text
    assert http.get("/missing.js").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/js/../../secret.txt",
        "/%2e%2e%2fsecret.txt",
        "//etc/passwd",
        "/..\\secret.txt",
        "/%00index.html",
    ],
)
def test_path_traversal_is_refused(cloud: EmbeddedCloud, web_root: Path, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", cloud.gateway.port if cloud.gateway else 0, timeout=10)
    try:
        conn.request("GET", path)  # sent as is: no client-side normalisation
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    assert answer.status == 404
    assert b"TOP SECRET" not in body and b"root:" not in body


def test_the_repository_claim_page_is_served(http: HttpClient):
    answer = http.get("/")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")


# -- gateway: routes, authorizer, events, responses ----------------------------------------------------
def test_openapi_document_reaches_the_owner_handler(http: HttpClient):
    answer = http.get("/v1/openapi.json")
    assert answer.status == 200, answer.text
    assert "openapi" in answer.json()


def test_unknown_route_is_404(http: HttpClient):
    for method, path in [
        ("GET", "/v1/nothing"),
        ("PUT", "/v1/devices/x"),
        ("GET", "/v1/device/poll"),
        ("POST", "/anything"),
    ]:
        answer = http.request(method, path, data=b"")
        assert (answer.status, answer.json()) == (404, {"message": "Not Found"}), (method, path)


def test_owner_route_without_token_is_401(http: HttpClient, capture):
    cap = capture("OwnerApi")
    answer = http.get("/v1/devices")
    assert (answer.status, answer.json()) == (401, {"message": "Unauthorized"})
    answer = http.get("/v1/devices", headers={"Authorization": "Bearer"})
    assert answer.status == 401
    assert cap.events == []


def test_owner_route_with_bad_tokens_is_401(http: HttpClient, owner: Owner, cloud: EmbeddedCloud, capture):
    cap = capture("OwnerApi")
    good = claims_of(owner.token)
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header, payload, signature = owner.token.split(".")
    tampered_claims = {**good, "sub": str(uuid.uuid4())}
    tampered = f"{header}.{_b64url(json.dumps(tampered_claims).encode())}.{signature}"
    bad_tokens = {
        "garbage": "not-a-jwt",
        "forged (other key)": sign(good, other_key),
        "tampered payload": tampered,
        "expired": sign({**good, "iat": now - 7200, "exp": now - 3600}),
        "wrong issuer": sign({**good, "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"}),
        "wrong audience": sign({**good, "aud": "someone-else"}),
        "unknown kid": sign(good, kid="nope"),
        "alg none": _b64url(b'{"alg":"none"}') + "." + payload + ".",
    }
    for label, token in bad_tokens.items():
        answer = http.get("/v1/devices", token=token)
        assert (answer.status, answer.json()) == (401, {"message": "Unauthorized"}), label
    assert cap.events == []
    # the same claims, validly signed, pass: the checks above failed for the reason in their label
    assert http.get("/v1/devices", token=sign({**good, "exp": now + 600})).status == 200


def test_owner_event_is_api_gateway_payload_2(http: HttpClient, owner: Owner, capture):
    cap = capture("OwnerApi")
    answer = http.request(
        "PATCH",
        "/v1/devices/lk-0123456789abcdef?x=1&x=2&empty=",
        json={"name": "Kitchen"},
        token=owner.token,
        headers={"X-Custom": "yes", "Cookie": "a=1; b=2"},
    )
    assert answer.status == 200
    (event,) = cap.events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "PATCH /v1/devices/{id}"
    assert event["rawPath"] == "/v1/devices/lk-0123456789abcdef"
    assert event["rawQueryString"] == "x=1&x=2&empty="
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["pathParameters"] == {"id": "lk-0123456789abcdef"}
    assert event["headers"]["x-custom"] == "yes"
    assert event["headers"]["content-type"] == "application/json"
    assert "cookie" not in event["headers"] and event["cookies"] == ["a=1", "b=2"]
    assert all(k == k.lower() for k in event["headers"])
    assert json.loads(event["body"]) == {"name": "Kitchen"} and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "PATCH" and ctx["http"]["path"] == event["rawPath"]
    assert ctx["http"]["sourceIp"] == "127.0.0.1"
    assert ctx["stage"] == "$default" and ctx["routeKey"] == event["routeKey"]
    assert ctx["requestId"] and isinstance(ctx["timeEpoch"], int)
    assert {"accountId", "apiId", "domainName", "time"} <= ctx.keys()
    claims = ctx["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == owner.sub and claims["email"] == owner.email
    assert claims["token_use"] == "id"
    assert all(isinstance(v, str) for v in claims.values())  # HTTP API passes claims as strings
    context = cap.contexts[0]
    assert context.function_name.endswith("OwnerApi") and context.get_remaining_time_in_millis() > 0
    assert context.memory_limit_in_mb == next(f.memory_mb for f in d.FUNCTIONS if f.logical_id == "OwnerApi")


def test_access_token_is_accepted_too(http: HttpClient, owner: Owner, capture):
    cap = capture("OwnerApi")
    assert http.get("/v1/devices", token=owner.access_token).status == 200
    jwt = cap.events[0]["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"]["sub"] == owner.sub
    assert jwt["scopes"] == ["aws.cognito.signin.user.admin"]


def _raw_request(
    cloud: EmbeddedCloud, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, int]:
    """(status, the client's own port): sent with http.client so the peer address is known."""
    conn = http.client.HTTPConnection("127.0.0.1", cloud.gateway.port if cloud.gateway else 0, timeout=10)
    try:
        conn.connect()
        port = conn.sock.getsockname()[1]
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    return answer.status, port


def test_functions_see_the_viewer_address_and_the_origin_secret_like_behind_cloudfront(
    cloud: EmbeddedCloud, owner: Owner, capture
):
    """The gateway plays CloudFront for /v1/*: forged forwarding headers never reach a function."""
    cap = capture("OwnerApi", "DeviceApi")
    secret = json.loads(
        cloud.aws("secretsmanager").get_secret_value(SecretId=os.environ[c.ENV_SECRETS_ARN])["SecretString"]
    )
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "CloudFront-Viewer-Address": "203.0.113.9:4444",
        c.HEADER_ORIGIN_VERIFY: "guessed",
        "Content-Type": "application/json",
    }
    owner_call = _raw_request(
        cloud, "POST", "/v1/claims", {**forged, "Authorization": f"Bearer {owner.token}"}, b"{}"
    )
    device_call = _raw_request(cloud, "POST", "/v1/device/poll", forged, b"{}")
    assert [owner_call[0], device_call[0]] == [200, 200]
    assert [e["routeKey"] for e in cap.events] == ["POST /v1/claims", "POST /v1/device/poll"]
    for event, (_status, port) in zip(cap.events, [owner_call, device_call], strict=True):
        headers = event["headers"]
        assert headers[c.HEADER_VIEWER_ADDRESS] == f"127.0.0.1:{port}"
        assert headers[c.HEADER_ORIGIN_VERIFY] == secret[c.SECRET_ORIGIN_VERIFY_KEY]
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
        assert "203.0.113" not in json.dumps(event)
    assert len(secret[c.SECRET_ORIGIN_VERIFY_KEY]) >= 32


def test_device_route_has_no_authorizer_and_binary_bodies_are_base64(http: HttpClient, capture):
    cap = capture("DeviceApi")
    raw = bytes(range(256))
    answer = http.post("/v1/device/poll", data=raw, headers={"Content-Type": "application/octet-stream"})
    assert answer.status == 200
    (event,) = cap.events
    assert "authorizer" not in event["requestContext"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == raw
    assert "pathParameters" not in event and "queryStringParameters" not in event


def test_handler_responses_follow_payload_2_rules(http: HttpClient, capture):
    cap = capture("DeviceApi")
    cap.response = {
        "statusCode": 429,
        "headers": {"Retry-After": "7", "content-type": "application/json"},
        "body": json.dumps({"error": "too_many_requests"}),
        "cookies": ["c=1; Path=/"],
    }
    answer = http.post("/v1/device/poll", json={})
    assert answer.status == 429 and answer.headers["retry-after"] == "7"
    assert answer.json() == {"error": "too_many_requests"} and answer.headers["set-cookie"] == "c=1; Path=/"

    cap.response = {"statusCode": 204}
    answer = http.post("/v1/device/ack", json={})
    assert answer.status == 204 and answer.body == b""

    cap.response = {
        "statusCode": 200,
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
        "headers": {"content-type": "application/octet-stream"},
    }
    assert http.post("/v1/device/poll", json={}).body == b"\x00\x01"

    cap.response = {"hello": "world"}  # no statusCode: 200 + the JSON of the result
    answer = http.post("/v1/device/poll", json={})
    assert answer.status == 200 and answer.json() == {"hello": "world"}
    assert answer.headers["content-type"] == "application/json"

    cap.response = RuntimeError("boom")
    answer = http.post("/v1/device/poll", json={})
    assert (answer.status, answer.json()) == (500, {"message": "Internal Server Error"})
    assert "boom" not in answer.text


def test_body_over_the_api_gateway_limit_is_413(cloud: EmbeddedCloud, capture):
    cap = capture("DeviceApi")
    conn = http.client.HTTPConnection("127.0.0.1", cloud.gateway.port if cloud.gateway else 0, timeout=10)
    try:
        conn.putrequest("POST", "/v1/device/poll")
        conn.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 413
        assert json.loads(answer.read()) == {"message": "Request Entity Too Large"}
    finally:
        conn.close()
    assert cap.events == []


# -- presence ----------------------------------------------------------------------------------------
def test_status_messages_and_lifecycle_reach_the_presence_handler(cloud: EmbeddedCloud, capture):
    """The events the IoT rules deliver: `SELECT *, topic() AS topic, timestamp() AS receivedAt`."""
    cap = capture("Presence")
    name = "lk-" + uuid.uuid4().hex[:16]
    status_topic = c.TOPIC_STATUS.format(thing=name)
    registered = provision_thing(cloud, name)
    device = MqttClient(cloud.mqtt_host, cloud.mqtt_port, ca_file=cloud.ca_file, cert=registered.cert)
    before = int(time.time() * 1000)
    assert device.connect()
    device.publish(status_topic, {"status": "online", "ip": "10.0.0.7"})
    device.close()

    def mine() -> list[dict[str, Any]]:
        return [e for e in cap.events if e["topic"] == status_topic or e.get("clientId") == name]

    events = wait_until(lambda: len(mine()) >= 3 and mine(), timeout=5)
    status = next(e for e in events if e["topic"] == status_topic)
    assert status.pop("receivedAt") >= before
    assert status == {"status": "online", "ip": "10.0.0.7", "topic": status_topic}
    lifecycle = [e for e in events if e["topic"].startswith("$aws/events/presence/")]
    assert [e["eventType"] for e in lifecycle] == ["connected", "disconnected"]
    connected, disconnected = lifecycle
    assert connected["topic"] == f"$aws/events/presence/connected/{name}"
    assert connected["ipAddress"] == "127.0.0.1" and connected["timestamp"] >= before - 1000
    assert connected["principalIdentifier"] == registered.certificate_id  # as on AWS
    assert disconnected["topic"] == f"$aws/events/presence/disconnected/{name}"
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
    assert all(isinstance(e["receivedAt"], int) for e in lifecycle)


# -- lifecycle of the cloud itself -----------------------------------------------------------------
def test_a_second_cloud_starts_fast_and_stops_cleanly(tmp_path: Path, cloud: EmbeddedCloud):
    before = dict(os.environ)
    second = EmbeddedCloud(tmp_path / "second")
    with second:
        assert second.startup_seconds < 15  # ~2 s; generous for loaded CI machines
        assert os.environ[c.ENV_USER_POOL_ID] == second.user_pool_id != cloud.user_pool_id
        pid = second.broker.pid if second.broker else None
        assert HttpClient(second.gateway_url).get("/config.json").status == 200
    second.stop()  # idempotent
    assert dict(os.environ) == before
    assert pid is not None and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "zombie" not in status.lower()


# -- `make run` ------------------------------------------------------------------------------------------
def _readme_banner() -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("prints something like:", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def _label(line: str) -> str:
    return line[:17].strip()  # "  Claim page     http://..." -> "Claim page"


def test_make_run_prints_the_readme_banner_keeps_the_console_quiet_and_stops_on_ctrl_c(tmp_path: Path):
    import select
    import signal
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATCHKEY_", "AWS_"))}
    env.update(
        {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"},
        LATCHKEY_HTTP_PORT="0",
        LATCHKEY_MQTT_PORT="0",
        LATCHKEY_MOTO_PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "local", "--state-dir", str(tmp_path / "run")],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        received = b""
        deadline = time.monotonic() + 120
        while b"Started in" not in received and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1)[0]:
                chunk = os.read(proc.stdout.fileno(), 4096)  # unbuffered: select sees what is left
                if not chunk:
                    break
                received += chunk
        printed = received.decode().splitlines()
        banner = [line for line in printed if line.strip()]
        assert [_label(line) for line in banner] == [_label(line) for line in _readme_banner()], printed
        claim_page = next(line for line in banner if _label(line) == "Claim page").split()[-1]
        assert HttpClient(claim_page).get("/config.json").status == 200
        lock = json.loads((tmp_path / "run" / "instance.lock").read_text())
        assert lock == {"pid": proc.pid, "url": claim_page}
        log = tmp_path / "run" / "local.log"
        wait_until(lambda: "/v1/device/poll" in log.read_text(), timeout=60)  # the demo agent polled
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.decode().strip() == "Stopping..."
    console = err.decode()
    assert "Traceback" not in console and "/v1/device/poll" not in console, console  # polls: file only
