"""Time as the agent sees it, injectable so the loop runs without real time in tests and simulations."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock unix seconds, as this device believes them (may be badly wrong)."""
        ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        """Wait `seconds`, returning early as soon as `wake` is set."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        wake.wait(max(0.0, seconds))


class VirtualClock:
    """A clock that only moves when slept on: for unit tests and the fleet simulator."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._mono = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def set_time(self, unix: float) -> None:
        """Move the wall clock only, as a device with a wrong clock would see it."""
        self._now = unix

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        self.sleeps.append(seconds)
        if not wake.is_set():
            self.advance(max(0.0, seconds))
