"""`make bench`: figures for the device poll path, printed side by side. Never fails on a target.

Everything runs against the embedded cloud (moto server, the local gateway, the real handlers), so the
AWS call counts are the calls the handlers really make. Results also go to test-artifacts/bench.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 7

# What a cold unclaimed poll loads before it answers: the handler module, then boto3 (first DynamoDB
# call) and the signature check's cryptography. The owner API's first request loads boto3 too.
COLD_PATHS = {
    "device poll (lambdas.handlers.device_api)": (
        "lambdas.handlers.device_api",
        "boto3",
        "cryptography.hazmat.primitives.asymmetric.ec",
    ),
    "owner API (lambdas.handlers.owner_api)": ("lambdas.handlers.owner_api", "boto3"),
    "presence (lambdas.handlers.presence)": ("lambdas.handlers.presence", "boto3"),
}
TARGETS = {"device poll (lambdas.handlers.device_api)": 1.2, "owner API (lambdas.handlers.owner_api)": 1.5}


def _import_seconds(modules: tuple[str, ...]) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def import_times() -> dict[str, Any]:
    samples: dict[str, list[float]] = {"import boto3": [], **{k: [] for k in COLD_PATHS}}
    for _ in range(IMPORT_RUNS):  # interleaved, so a busy moment hurts every row alike
        samples["import boto3"].append(_import_seconds(("boto3",)))
        for name, modules in COLD_PATHS.items():
            samples[name].append(_import_seconds(modules))
    base = statistics.median(samples["import boto3"])
    rows = {}
    for name, values in samples.items():
        median = statistics.median(values)
        rows[name] = {"median_ms": round(median * 1000, 1), "ratio": round(median / base, 2)}
    return rows


class CallCounter:
    """Counts AWS calls made by the in-process handlers, by service and operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.capacity = 0.0
        self.lock = threading.Lock()

    def attach(self) -> None:
        from lambdas import aws_clients

        original = aws_clients.client

        def counting(service: str) -> Any:
            made = original(service)
            if not getattr(made, "_latchkey_counted", False):
                made.meta.events.register("before-parameter-build", self._count)
                made._latchkey_counted = True
            return made

        self._restore = lambda: setattr(aws_clients, "client", original)
        aws_clients.client = counting  # type: ignore[assignment]

    def detach(self) -> None:
        self._restore()

    def _count(self, model: Any, params: Any = None, **_: Any) -> None:
        with self.lock:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1
            if model.service_model.service_name == "dynamodb":
                self.capacity += capacity_units(model.name, params or {})

    def take(self) -> Counter[str]:
        with self.lock:
            taken, self.calls = self.calls, Counter()
            self.capacity = 0.0
        return taken

    def take_with_capacity(self) -> tuple[Counter[str], float]:
        with self.lock:
            capacity = self.capacity
        return self.take(), capacity


def capacity_units(operation: str, params: dict[str, Any]) -> float:
    """DynamoDB capacity by the pricing rules, estimated from the request: a read of an item up to
    4 KB is 0.5 RCU eventually consistent, 1 strongly consistent; a write is 1 WCU per KB of request;
    transactional reads and writes cost double. Queries are counted as one item read."""
    size_kb = max(1, -(-len(json.dumps(params, default=str)) // 1024))
    if operation in ("GetItem", "Query", "Scan"):
        return 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "BatchGetItem":
        return 0.5 * sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return float(size_kb)
    if operation == "TransactWriteItems":
        return 2.0 * sum(
            max(1, -(-len(json.dumps(i, default=str)) // 1024)) for i in params.get("TransactItems", [])
        )
    return 0.0


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> int:
    from firmware.api import DeviceApi
    from firmware.identity import DeviceKey, Identity
    from lambdas.logic.manufacturing import mint_device
    from local.cloud import EmbeddedCloud

    results: dict[str, Any] = {}
    print("Latchkey bench — figures, not assertions\n")

    print("Cold start: median wall time of the imports a first request needs, in fresh processes")
    results["imports"] = import_times()
    print(f"  {'':48} {'ms':>8} {'x boto3':>8} {'target':>8}")
    for name, row in results["imports"].items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"≤{target} {'PASS' if row['ratio'] <= target else 'MISS'}"
        print(f"  {name:48} {row['median_ms']:8.1f} {row['ratio']:8.2f} {verdict:>10}")
    print()

    with tempfile.TemporaryDirectory(prefix="latchkey-bench-") as state, EmbeddedCloud(Path(state)) as cloud:
        counter = CallCounter()
        counter.attach()
        minted = mint_device(None, "bench", "bench")
        identity = Identity(minted.device_id, DeviceKey.from_pem(minted.private_key_pem), cloud.gateway_url)
        api = DeviceApi(cloud.gateway_url)

        def poll() -> int:
            return api.poll(identity, {"attempt": 3, "agent": {"version": "bench"}}, int(time.time())).status

        assert poll() == 200  # the first poll may write lastPollAt (at most every few minutes)
        counter.take()
        n = 50
        statuses = Counter(poll() for _ in range(n))
        calls = counter.take()
        per_request = {k: v / n for k, v in sorted(calls.items())}
        ddb = sum(v for k, v in calls.items() if k.startswith("dynamodb:")) / n
        results["unclaimed_poll"] = {"statuses": dict(statuses), "aws_calls_per_request": per_request}
        print(f"Unclaimed poll through the gateway ({n} requests, statuses {dict(statuses)})")
        print(f"  DynamoDB calls per request: {ddb:.2f} (target 1.0)  — {per_request}")
        print()

        results["requests"] = per_request_type(cloud, counter, minted, identity, api)
        results["warm"] = warm_latency(minted)
        print()

        print("Unclaimed polls through the local gateway (moto server behind it)")
        print(f"  {'devices':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        results["throughput"] = {}
        for concurrency in (1, 10, 50):
            row = _load(poll, concurrency, seconds=3.0)
            results["throughput"][concurrency] = row
            print(
                f"  {concurrency:8d} {row['requests']:9d} {row['rps']:8.1f} "
                f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:7d}"
            )
        counter.detach()

    results["package"] = package_size()
    out = REPO_ROOT / "test-artifacts" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nWritten to {out.relative_to(REPO_ROOT)}")
    return 0


def per_request_type(
    cloud: Any, counter: CallCounter, minted: Any, identity: Any, api: Any
) -> dict[str, Any]:
    """AWS calls and DynamoDB capacity of one request of each kind, through the gateway."""
    from firmware.identity import DeviceKey  # noqa: F401 (same key as `identity`)
    from local.seed import random_password
    from local.testing import HttpClient, Owner

    email, password = f"bench-{time.time_ns()}@latchkey.test", random_password()
    sub = cloud.create_user(email, password)
    tokens = cloud.login(email, password)
    owner = Owner(
        email, password, sub, tokens["IdToken"], tokens["AccessToken"], HttpClient(cloud.gateway_url)
    )
    csr = _csr(minted)
    rows: dict[str, Any] = {}

    def measure(name: str, action: Callable[[], Any]) -> None:
        counter.take()
        action()
        calls, capacity = counter.take_with_capacity()
        rows[name] = {
            "calls": dict(sorted(calls.items())),
            "total": sum(calls.values()),
            "capacity": capacity,
        }

    measure("unclaimed poll", lambda: api.poll(identity, {"attempt": 3, "agent": {}}, int(time.time())))
    measure("claim", lambda: owner.request("POST", "/v1/claims", {"claimCode": minted.display_code}))
    measure(
        "provisioning poll",
        lambda: api.poll(identity, {"attempt": 4, "agent": {}, "csr": csr}, int(time.time())),
    )
    measure(
        "repeat provisioned poll", lambda: api.poll(identity, {"attempt": 5, "agent": {}}, int(time.time()))
    )
    cert_id = api.poll(identity, {"attempt": 6, "agent": {}}, int(time.time())).value("certificateId")
    measure("ack", lambda: api.ack(identity, cert_id, int(time.time())))
    measure("list devices", lambda: owner.request("GET", "/v1/devices"))
    print("AWS calls and DynamoDB capacity per request (capacity estimated by the pricing rules)")
    print(f"  {'request':26} {'AWS calls':>9} {'DDB units':>9}  calls")
    for name, row in rows.items():
        detail = ", ".join(f"{k} {v}" for k, v in row["calls"].items())
        print(f"  {name:26} {row['total']:9d} {row['capacity']:9.1f}  {detail}")
    return rows


def _csr(minted: Any) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key(minted.private_key_pem.encode(), password=None)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, minted.device_id)]))
        .sign(key, hashes.SHA256())
    )  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM).decode()


def warm_latency(minted: Any, n: int = 300) -> dict[str, float]:
    """The device handler's own time per unclaimed poll, in-process, minus the time spent in AWS calls."""
    import base64
    import hashlib

    from firmware.identity import DeviceKey
    from lambdas.aws_clients import client
    from lambdas.handlers import device_api

    key = DeviceKey.from_pem(minted.private_key_pem)
    spent = {"aws": 0.0}
    started: dict[str, float] = {}
    events = client("dynamodb").meta.events
    before = lambda **_: started.__setitem__("t", time.perf_counter())  # noqa: E731

    def after(**_):
        return spent.__setitem__(
            "aws", spent["aws"] + time.perf_counter() - started.pop("t", time.perf_counter())
        )

    events.register("before-call.dynamodb", before)
    events.register("after-call.dynamodb", after)
    own: list[float] = []
    try:
        for _ in range(n):
            body = json.dumps({"attempt": 3, "agent": {}}).encode()
            ts = int(time.time())
            message = f"POST\n/v1/device/poll\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
            event = {
                "routeKey": "POST /v1/device/poll",
                "rawPath": "/v1/device/poll",
                "headers": {
                    "x-device-id": minted.device_id,
                    "x-timestamp": str(ts),
                    "x-signature": base64.b64encode(key.sign(message)).decode(),
                },
                "requestContext": {
                    "http": {"method": "POST", "path": "/v1/device/poll", "sourceIp": "127.0.0.1"}
                },
                "body": body.decode(),
            }
            spent["aws"] = 0.0
            t0 = time.perf_counter()
            device_api.handler(event, None)
            own.append(time.perf_counter() - t0 - spent["aws"])
    finally:
        events.unregister("before-call.dynamodb", before)
        events.unregister("after-call.dynamodb", after)
    row = {"p50_ms": round(_percentile(own, 50) * 1000, 2), "p99_ms": round(_percentile(own, 99) * 1000, 2)}
    print(
        f"\nWarm device handler, unclaimed poll, excluding AWS calls ({n} calls in-process): "
        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms"
    )
    return row


def package_size() -> dict[str, Any]:
    """The Lambda asset: the bundled one from `make synth` if present, else lambdas/ + the installed deps."""
    import importlib.util
    import io
    import zipfile

    bundled = [p.parent.parent for p in (REPO_ROOT / "cdk.out").glob("asset.*/lambdas/__init__.py")]
    roots: list[Path]
    if bundled:
        roots, source = [max(bundled, key=lambda p: p.stat().st_mtime)], "cdk.out bundled asset (aarch64)"
    else:
        source = "lambdas/ + this machine's installed deps (run `make synth` for the aarch64 asset)"
        roots = [REPO_ROOT / "lambdas"]
        for name in ("aws_lambda_powertools", "pydantic", "pydantic_core", "cryptography"):
            spec = importlib.util.find_spec(name)
            if spec and spec.submodule_search_locations:
                roots.append(Path(next(iter(spec.submodule_search_locations))))
    files = [(f, f.relative_to(root.parent)) for root in roots for f in root.rglob("*") if f.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            if "__pycache__" not in path.parts:
                archive.write(path, str(name))
    row = {
        "source": source,
        "unzipped_mb": round(sum(f.stat().st_size for f, _ in files) / 1e6, 1),
        "zipped_mb": round(len(buffer.getvalue()) / 1e6, 1),
    }
    print(f"\nLambda package: {row['unzipped_mb']} MB unzipped, {row['zipped_mb']} MB zipped ({source})")
    return row


def _load(call: Callable[[], int], concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = call() == 200
            except Exception:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 30)
    took = time.monotonic() - began
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / took, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1) if latencies else 0.0,
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1) if latencies else 0.0,
        "errors": errors,
    }


if __name__ == "__main__":
    sys.exit(main())
