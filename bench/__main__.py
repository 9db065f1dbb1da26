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
TARGETS = {"device poll (lambdas.handlers.device_api)": 1.3, "owner API (lambdas.handlers.owner_api)": 1.5}


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
        self.lock = threading.Lock()

    def attach(self) -> None:
        from lambdas import aws_clients

        original = aws_clients.client

        def counting(service: str) -> Any:
            made = original(service)
            if not getattr(made, "_latchkey_counted", False):
                made.meta.events.register("before-call", self._count)
                made._latchkey_counted = True
            return made

        self._restore = lambda: setattr(aws_clients, "client", original)
        aws_clients.client = counting  # type: ignore[assignment]

    def detach(self) -> None:
        self._restore()

    def _count(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def take(self) -> Counter[str]:
        with self.lock:
            taken, self.calls = self.calls, Counter()
        return taken


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

    out = REPO_ROOT / "test-artifacts" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nWritten to {out.relative_to(REPO_ROOT)}")
    return 0


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
