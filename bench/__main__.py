"""`make bench` (`python -m bench`): figures for the device poll path, printed side by side.

Figures, never assertions: a target missed prints MISS and the run still exits 0. One run prints
1. cold start: import time of each Lambda handler (and of what its first request loads) over a bare
   `import boto3`, fresh interpreters, median of 9 interleaved runs;
2. AWS calls and DynamoDB capacity per request type: the handlers in this process against moto
   (`mock_aws`), every call counted by a botocore event hook, capacity by DynamoDB's rules from the
   sizes of the items touched (bench/capacity.py);
3. warm handler latency excluding AWS calls: handler wall time minus the time spent inside botocore
   calls (serialisation, moto, parsing), in-process;
4. throughput and latency of signed unclaimed polls through the local gateway (EmbeddedCloud on free
   loopback ports) at 1, 10 and 50 concurrent devices;
5. the Lambda deployment package: `lambdas/` + `lambdas/requirements.txt` for manylinux2014_aarch64;
6. the fleet's economics (bench/economics.py): the whole monthly bill, the poll schedule against its
   goals and the reconnect storm, as flat `cost.*`, `schedule.*`, `storm.*` keys (with `coldstart.*`).
Everything also goes to test-artifacts/bench.json. docs/performance.md has a run's output.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORT_RUNS = 9
WARM_POLLS = 1000
LOAD_SECONDS = 3.0
LOAD_LEVELS = (1, 10, 50)
OWNER = "bench-owner"

# A handler module, then what its first request loads on top (the device API defers boto3 and
# cryptography to first use; the owner API loads boto3 with its first DynamoDB call).
HANDLERS = {
    "device API (poll)": (
        "lambdas.handlers.device_api",
        ("boto3", "cryptography.hazmat.primitives.asymmetric.ec"),
    ),
    "owner API": ("lambdas.handlers.owner_api", ("boto3",)),
    "presence": ("lambdas.handlers.presence", ("boto3",)),
    # Not a handler: what the owner API's validating Powertools resolver needs before any of our code,
    # the floor of any owner API that routes through it (docs/performance.md).
    "floor: Powertools+pydantic": (
        "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
        ("boto3",),
    ),
}
TARGETS = {"device API (poll)": 1.2, "owner API": 1.5}


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * pct / 100) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# --- 1. cold start --------------------------------------------------------------------------------------


def _import_times(module: str, then: tuple[str, ...]) -> tuple[float, float]:
    code = (
        "import time\nt = time.perf_counter()\n"
        + (f"import {module}\n" if module else "")
        + "m = time.perf_counter()\n"
        + "".join(f"import {name}\n" for name in then)
        + "print(m - t, time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def cold_start() -> dict[str, Any]:
    print(f"1. Cold start: imports in a fresh interpreter, median of {IMPORT_RUNS} interleaved runs")
    rows: dict[str, list[tuple[float, float]]] = {"bare import boto3": [], **{k: [] for k in HANDLERS}}
    for _ in range(IMPORT_RUNS):  # interleaved, so a busy moment hurts every row alike
        rows["bare import boto3"].append(_import_times("", ("boto3",)))
        for name, (module, then) in HANDLERS.items():
            rows[name].append(_import_times(module, then))
    base = statistics.median(total for _, total in rows["bare import boto3"])
    result: dict[str, Any] = {}
    print(f"  {'':22} {'module ms':>10} {'+ 1st request ms':>17} {'x boto3':>8} {'target':>7}")
    for name, values in rows.items():
        module_s = statistics.median(m for m, _ in values)
        total_s = statistics.median(t for _, t in values)
        ratio = total_s / base
        target = TARGETS.get(name)
        verdict = "" if target is None else ("PASS" if ratio <= target else "MISS")
        result[name] = {
            "module_ms": _ms(module_s),
            "first_request_ms": _ms(total_s),
            "ratio_to_boto3": round(ratio, 2),
            "target": target,
            "verdict": verdict or None,
        }
        shown_module = "" if name.startswith("bare") else f"{module_s * 1000:10.1f}"
        print(
            f"  {name:22} {shown_module:>10} {total_s * 1000:17.1f} {ratio:8.2f} "
            f"{'' if target is None else f'<={target}':>7} {verdict}"
        )
    print("  (x boto3 = handler module + what its first request imports, over a bare `import boto3`)\n")
    return result


# --- 2 and 3. in-process handlers on moto ------------------------------------------------------------------


def in_process() -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    from bench.capacity import CapacityMeter, item_size
    from bench.inprocess import AwsCalls, mocked_cloud
    from tests.unit.lambdas.conftest import make_csr, owner_event, signed_event

    calls = AwsCalls()
    out: dict[str, Any] = {}
    with mocked_cloud(calls) as lookup:
        from lambdas import config
        from lambdas.handlers import device_api, owner_api
        from lambdas.logic.manufacturing import mint_device

        meter = CapacityMeter(lookup)
        calls.meter = meter
        device = mint_device(None, "bench-board", "bench")
        other = mint_device(None, "bench-board", "bench")
        keys = {
            d.device_id: serialization.load_pem_private_key(str(d.private_key_pem).encode(), None)
            for d in (device, other)
        }

        def device_call(path: str, body: dict[str, Any], who: Any = device) -> dict[str, Any]:
            event = signed_event("POST", path, body, keys[who.device_id], who.device_id)
            return device_api.handler(event, None)

        def owner_call(method: str, path: str, body: Any = None) -> dict[str, Any]:
            return owner_api.handler(owner_event(method, path, sub=OWNER, body=body), None)

        def size_of(device_id: str) -> int:
            item = lookup.get_item(TableName=config.devices_table(), Key={"deviceId": {"S": device_id}})
            return item_size(item.get("Item"))

        rows: dict[str, Any] = {}
        answers: dict[str, Any] = {}

        def measure(name: str, action: Callable[[], dict[str, Any]], expected: tuple[int, ...]) -> None:
            calls.take()
            answer = action()
            taken = calls.take()
            status = answer.get("statusCode")
            if status not in expected:
                print(f"  ! {name}: HTTP {status} {answer.get('body', '')[:200]}")
            answers[name] = answer
            rows[name] = {
                "status": status,
                "aws_calls": sum(taken.calls.values()),
                "by_operation": dict(sorted(taken.calls.items())),
                "read_units": taken.units.read,
                "write_units": taken.units.write,
                "detail": taken.units.notes,
            }

        csr = make_csr(keys[device.device_id], device.device_id)
        calls.take()
        measure(
            "unclaimed poll, first (writes lastPollAt)",
            lambda: device_call("/v1/device/poll", {"attempt": 0}, other),
            (200,),
        )
        measure("unclaimed poll", lambda: device_call("/v1/device/poll", {"attempt": 1}, other), (200,))
        unclaimed_bytes = size_of(other.device_id)
        device_call("/v1/device/poll", {"attempt": 0, "agent": {"version": "bench"}})  # lastPollAt is fresh
        measure(
            "claim", lambda: owner_call("POST", "/v1/claims", {"claimCode": device.display_code}), (200, 201)
        )
        measure(
            "provisioning poll (claimed -> certificate)",
            lambda: device_call("/v1/device/poll", {"attempt": 2, "csr": csr}),
            (200,),
        )
        measure("repeat provisioned poll", lambda: device_call("/v1/device/poll", {"attempt": 3}), (200,))
        certificate_id = json.loads(answers["repeat provisioned poll"]["body"]).get("certificateId", "")
        measure("ack", lambda: device_call("/v1/device/ack", {"certificateId": certificate_id}), (204,))
        measure("list devices (1 device)", lambda: owner_call("GET", "/v1/devices"), (200,))
        active_bytes = size_of(device.device_id)

        print("2. AWS calls and DynamoDB capacity per request: handlers in-process on moto (mock_aws);")
        print(
            "   capacity from item sizes by DynamoDB's rules (RRU/WRU = on-demand read/write request units)"
        )
        print(f"  {'request':44} {'calls':>5} {'RRU':>5} {'WRU':>5}  by operation")
        for name, row in rows.items():
            ops = ", ".join(f"{k} {v}" for k, v in row["by_operation"].items())
            print(
                f"  {name:44} {row['aws_calls']:5d} {row['read_units']:5.1f} {row['write_units']:5.1f}  {ops}"
            )
        print(
            f"  device item: {unclaimed_bytes} B unclaimed, {active_bytes} B active with its certificate "
            "(one read unit covers 4 KB; one write unit 1 KB)\n"
        )
        out["requests"] = rows
        out["device_item_bytes"] = {"unclaimed": unclaimed_bytes, "active": active_bytes}

        # 3. warm latency, excluding AWS calls; the meter's own lookups would count as AWS time: off.
        calls.meter = None
        poll_event = signed_event(
            "POST", "/v1/device/poll", {"attempt": 9}, keys[other.device_id], other.device_id
        )
        list_event = owner_event("GET", "/v1/devices", sub=OWNER)
        warm = {
            "unclaimed poll": _warm(calls, lambda: device_api.handler(poll_event, None), WARM_POLLS),
            "list devices (owner API)": _warm(
                calls, lambda: owner_api.handler(list_event, None), WARM_POLLS // 4
            ),
        }
        print(
            "3. Warm handler latency excluding AWS calls: wall time of handler() minus time inside botocore"
        )
        print("   calls (before-parameter-build -> after-call), in-process on moto")
        print(f"  {'request':30} {'calls':>6} {'p50 ms':>7} {'p99 ms':>7} {'with AWS p50 ms':>16}")
        for name, row in warm.items():
            print(
                f"  {name:30} {row['n']:6d} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['total_p50_ms']:16.2f}"
            )
        print("  ('with AWS' includes moto answering in-process: not an AWS latency)\n")
        out["warm"] = warm
    return out


def _warm(calls: Any, call: Callable[[], Any], n: int) -> dict[str, Any]:
    own, total = [], []
    call()
    for _ in range(n):
        calls.take()
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        aws = calls.take().aws_seconds
        own.append(elapsed - aws)
        total.append(elapsed)
    return {
        "n": n,
        "p50_ms": _ms(_percentile(own, 50)),
        "p99_ms": _ms(_percentile(own, 99)),
        "total_p50_ms": _ms(_percentile(total, 50)),
    }


# --- 4. the local gateway ------------------------------------------------------------------------------------


def gateway() -> dict[str, Any]:
    from bench.inprocess import AwsCalls, shared_session
    from firmware.api import DeviceApi
    from firmware.identity import DeviceKey, Identity
    from lambdas.logic.manufacturing import mint_device
    from local.cloud import EmbeddedCloud

    calls = AwsCalls()
    result: dict[str, Any] = {}
    with (
        shared_session(calls),
        tempfile.TemporaryDirectory(prefix="latchkey-bench-") as state,
        EmbeddedCloud(Path(state)) as cloud,
    ):
        minted = mint_device(None, "bench-board", "bench")
        identity = Identity(
            minted.device_id, DeviceKey.from_pem(str(minted.private_key_pem)), cloud.gateway_url
        )
        api = DeviceApi(cloud.gateway_url)

        def poll() -> int:
            return api.poll(identity, {"attempt": 3, "agent": {"version": "bench"}}, int(time.time())).status

        poll()  # the first poll writes lastPollAt
        calls.take()
        statuses = Counter(poll() for _ in range(50))
        ddb = sum(v for k, v in calls.take().calls.items() if k.startswith("dynamodb:")) / 50
        print(
            f"4. Signed unclaimed polls through the local gateway ({cloud.gateway_url}, moto server behind it)"
        )
        print(f"   50 serial polls: statuses {dict(statuses)}, DynamoDB calls per poll {ddb:.2f}")
        print(f"  {'devices':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        levels = {}
        for concurrency in LOAD_LEVELS:
            row = _load(poll, concurrency, LOAD_SECONDS)
            levels[concurrency] = row
            print(
                f"  {concurrency:8d} {row['requests']:9d} {row['rps']:8.1f} "
                f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:7d}"
            )
        print("  (the gateway runs one handler call at a time per function, like one Lambda container)\n")
        result = {"ddb_calls_per_poll": ddb, "statuses": dict(statuses), "levels": levels}
    return result


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
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "errors": errors,
    }


# --- 5. the deployment package -----------------------------------------------------------------------------


def _stack_pip_settings() -> dict[str, str]:
    """PIP_PLATFORM, PIP_PYTHON_VERSION, REQUIREMENTS of infrastructure/functions.py, read without
    importing it (importing aws_cdk starts a node process)."""
    tree = ast.parse((REPO_ROOT / "infrastructure" / "functions.py").read_text())
    wanted = {"PIP_PLATFORM", "PIP_PYTHON_VERSION", "REQUIREMENTS"}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in wanted and isinstance(node.value, ast.Constant):
                found[name] = str(node.value.value)
    return found


def _dependencies() -> tuple[Path | None, str]:
    """A directory with the deps as the stack bundles them, and where it came from."""
    settings = _stack_pip_settings()
    platform_tag = settings.get("PIP_PLATFORM", "manylinux2014_aarch64")
    version = settings.get("PIP_PYTHON_VERSION", "3.14")
    requirements = REPO_ROOT / settings.get("REQUIREMENTS", "lambdas/requirements.txt")
    digest = hashlib.sha256(f"{platform_tag}{version}".encode() + requirements.read_bytes()).hexdigest()[:12]
    target = REPO_ROOT / ".build" / f"bench-deps-{digest}"
    label = f"pip install --platform {platform_tag} --python-version {version} -r {requirements.relative_to(REPO_ROOT)}"
    if (target / ".complete").exists():
        return target, label + " (cached in .build/)"
    shutil.rmtree(target, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--platform", platform_tag, "--implementation", "cp", "--python-version", version,
        "--only-binary=:all:", "--retries", "1", "--timeout", "15", "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        print(f"  (pip could not fetch the aarch64 wheels: {type(exc).__name__})")
    else:
        shutil.rmtree(target / "bin", ignore_errors=True)  # as the stack's bundling does
        (target / ".complete").write_text(label)
        return target, label
    bundled = [p.parent.parent for p in (REPO_ROOT / "cdk.out").glob("asset.*/lambdas/__init__.py")]
    if bundled:
        return max(
            bundled, key=lambda p: p.stat().st_mtime
        ), "the newest bundled asset in cdk.out (make synth)"
    return None, "no aarch64 wheels: this machine's installed packages instead (not what Lambda gets)"


def package_size() -> dict[str, Any]:
    import importlib.util

    deps, source = _dependencies()
    files: list[tuple[Path, str]] = []
    if deps is not None:
        files += [
            (f, str(f.relative_to(deps)))
            for f in deps.rglob("*")
            if f.is_file()
            and f.relative_to(deps).parts[0] not in ("lambdas", ".complete")
            and "__pycache__" not in f.parts
        ]
    else:
        for name in (
            "aws_lambda_powertools",
            "pydantic",
            "pydantic_core",
            "cryptography",
            "cffi",
            "jmespath",
        ):
            spec = importlib.util.find_spec(name)
            if spec and spec.submodule_search_locations:
                root = Path(next(iter(spec.submodule_search_locations)))
                files += [(f, str(f.relative_to(root.parent))) for f in root.rglob("*") if f.is_file()]
    lambdas = REPO_ROOT / "lambdas"
    files += [
        (f, str(f.relative_to(REPO_ROOT)))
        for f in lambdas.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and not f.name.startswith(".") and f.suffix != ".pyc"
    ]
    buffer = io.BytesIO()
    top: Counter[str] = Counter()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
            top[name.split("/", 1)[0].split("-", 1)[0].removesuffix(".py")] += path.stat().st_size
    unzipped = sum(top.values())
    row: dict[str, Any] = {
        "source": source,
        "files": len(files),
        "unzipped_mb": round(unzipped / 1e6, 1),
        "zipped_mb": round(len(buffer.getvalue()) / 1e6, 1),
        "largest_mb": {k: round(v / 1e6, 1) for k, v in top.most_common(6)},
    }
    print("5. Lambda deployment package (one asset for the three functions): lambdas/ + its requirements")
    print(f"   deps: {source}")
    print(
        f"  {row['unzipped_mb']} MB unzipped, {row['zipped_mb']} MB zipped, {len(files)} files (limits: 250 MB, 50 MB)"
    )
    print("  largest: " + ", ".join(f"{k} {v} MB" for k, v in row["largest_mb"].items()) + "\n")
    return row


# --- the run ---------------------------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(load, 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(
        f"Latchkey bench: figures, not assertions ({machine['date']}, Python {machine['python']}, "
        f"{machine['machine']}, {machine['cpus']} CPUs, load {machine['load_average_1min']})\n"
    )
    results: dict[str, Any] = {"machine": machine}
    results["cold_start"] = cold_start()
    results.update(in_process())
    results["gateway"] = gateway()
    results["package"] = package_size()
    from bench import economics

    results.update(economics.run())
    results.update(economics.coldstart_keys(results["cold_start"]))
    results["seconds"] = round(time.monotonic() - started, 1)
    _summary(results)
    out = REPO_ROOT / "test-artifacts" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    # Flat keys stay numbers (NaN as null rather than the string "nan").
    out.write_text(json.dumps(_jsonable(results), indent=2, default=str))
    print(f"\nWritten to {out.relative_to(REPO_ROOT)} in {results['seconds']} s")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _summary(r: dict[str, Any]) -> None:
    poll = r["requests"]["unclaimed poll"]
    cold = r["cold_start"]
    levels = r["gateway"]["levels"]
    print("Summary")
    for name, target in TARGETS.items():
        row = cold[name]
        print(
            f"  cold start, {name:20} {row['ratio_to_boto3']:.2f} x boto3 (target <= {target}: {row['verdict']})"
        )
    print(
        f"  unclaimed poll: {poll['aws_calls']} AWS call ({', '.join(poll['by_operation'])}), "
        f"{poll['read_units']:g} RRU, {poll['write_units']:g} WRU; warm handler p50/p99 "
        f"{r['warm']['unclaimed poll']['p50_ms']}/{r['warm']['unclaimed poll']['p99_ms']} ms excl. AWS"
    )
    print(
        "  gateway: "
        + "; ".join(
            f"{c} devices {row['rps']:.0f} req/s p50 {row['p50_ms']:.0f} ms p99 {row['p99_ms']:.0f} ms"
            for c, row in levels.items()
        )
    )
    print(f"  package: {r['package']['zipped_mb']} MB zipped, {r['package']['unzipped_mb']} MB unzipped")


if __name__ == "__main__":
    sys.exit(main())
