"""Stopping a child process: the one way every part of the local cloud and the tests do it."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL and wait again; the exit code (None if it still runs
    after all that, which only a process stuck in the kernel does). A process that already ended is
    just reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
    return proc.returncode
