"""One registry of the Lambda code's caches, and one way to stop a child process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from local.lambda_runtime import CACHED_MODULES, reset_function_caches
from local.processes import stop_process

LAMBDAS = Path(__file__).resolve().parents[3] / "lambdas"


def modules_with_a_reset() -> set[str]:
    found = set()
    for path in LAMBDAS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "reset" for node in tree.body):
            found.add(".".join(path.relative_to(LAMBDAS.parent).with_suffix("").parts))
    return found


def test_every_cache_reset_in_the_lambda_code_is_registered_and_nothing_else():
    assert modules_with_a_reset() == set(CACHED_MODULES)


def test_a_reset_forgets_the_clients(monkeypatch):
    from lambdas import aws_clients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    first = aws_clients.client("sts")
    assert aws_clients.client("sts") is first
    reset_function_caches()
    assert aws_clients.client("sts") is not first
    aws_clients.reset()


def python(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # its signal handler is set
    return proc


def test_stop_process_terminates_then_kills():
    polite = python("import time; print('ready', flush=True); time.sleep(60)")
    assert stop_process(polite, timeout=5) == -15  # SIGTERM was enough
    stubborn = python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True);"
        " time.sleep(60)"
    )
    assert stop_process(stubborn, timeout=0.5) == -9  # ignored SIGTERM, so SIGKILL
    assert stop_process(stubborn) == -9  # already ended: just its exit code
    for proc in (polite, stubborn):
        assert proc.stdout is not None
        proc.stdout.close()
