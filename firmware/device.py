"""The device's relays and sensors, and how they follow the shadow's desired state.

`DeviceModel` keeps the relay names, logic and on/off states and the sensor calibration in
`state_dir/device.json` (atomically), drives the pins through a `Gpio` backend and builds the reported
shadow state. `SimulatedGpio` is the laptop backend; a real board implements the `Gpio` protocol (write
a relay pin level, read a raw sensor value) and passes it to the agent — that is the extension point.

Desired changes carry the shadow version; one that is not newer than the last applied version is stale
and ignored, so an old message delivered late never undoes a newer change.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

from firmware.credentials import atomic_write

log = logging.getLogger("latchkey.device")
STATE_FILE = "device.json"
LOGIC = ("positive", "negative")

DEFAULT_RELAYS = {
    "r1": {"name": "Relay 1", "logic": "positive"},
    "r2": {"name": "Relay 2", "logic": "positive"},
}
DEFAULT_SENSORS = {"t1": {"type": "temperature", "unit": "°C", "offset": 0.0}}


class Gpio(Protocol):
    def write(self, relay: str, level: bool) -> None: ...

    def read(self, sensor: str) -> float: ...


class SimulatedGpio:
    """Pins in memory; the temperature drifts gently around 21 °C so readings change."""

    def __init__(self) -> None:
        self.levels: dict[str, bool] = {}

    def write(self, relay: str, level: bool) -> None:
        self.levels[relay] = level

    def read(self, sensor: str) -> float:
        return round(21.0 + 0.5 * math.sin(time.time() / 60.0), 2)


class DeviceModel:
    def __init__(self, state_dir: Path, gpio: Gpio | None = None) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self.gpio: Gpio = gpio or SimulatedGpio()
        self.relays: dict[str, dict[str, Any]] = {k: {**v, "on": False} for k, v in DEFAULT_RELAYS.items()}
        self.sensors: dict[str, dict[str, Any]] = {k: dict(v) for k, v in DEFAULT_SENSORS.items()}
        self.version = 0  # the last shadow version applied
        self._load()
        for rid in self.relays:
            self._drive(rid)

    def _load(self) -> None:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, dict):
            self.relays.update({k: v for k, v in (saved.get("relays") or {}).items() if k in self.relays})
            self.sensors.update({k: v for k, v in (saved.get("sensors") or {}).items() if k in self.sensors})
            self.version = int(saved.get("version") or 0)

    def _save(self) -> None:
        data = {"relays": self.relays, "sensors": self.sensors, "version": self.version}
        atomic_write(self.path, json.dumps(data, indent=2).encode())

    def _drive(self, rid: str) -> None:
        relay = self.relays[rid]
        on = bool(relay.get("on"))
        self.gpio.write(rid, on if relay.get("logic") != "negative" else not on)

    def reported(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "capabilities": {
                "relays": {rid: {"name": r["name"], "logic": r["logic"]} for rid, r in self.relays.items()},
                "sensors": {
                    sid: {"type": s["type"], "unit": s["unit"], "offset": s["offset"]}
                    for sid, s in self.sensors.items()
                },
            },
            "relays": {rid: bool(r.get("on")) for rid, r in self.relays.items()},
            "sensors": {
                sid: {
                    "value": round(self.gpio.read(sid) + float(s["offset"]), 2),
                    "unit": s["unit"],
                    "at": now,
                }
                for sid, s in self.sensors.items()
            },
        }

    def apply(self, change: dict[str, Any], version: int | None) -> bool:
        """Apply a desired change (a delta); False when it is stale or changes nothing."""
        if version is not None and version <= self.version:
            log.info("ignoring shadow change version %s (already at %s)", version, self.version)
            return False
        changed = False
        for rid, on in (change.get("relays") or {}).items():
            if rid in self.relays and isinstance(on, bool) and self.relays[rid].get("on") != on:
                self.relays[rid]["on"] = on
                changed = True
        caps = change.get("capabilities") or {}
        for rid, settings in (caps.get("relays") or {}).items():
            if rid in self.relays and isinstance(settings, dict):
                name, logic = settings.get("name"), settings.get("logic")
                if isinstance(name, str) and name.strip():
                    self.relays[rid]["name"] = name.strip()[:32]
                    changed = True
                if logic in LOGIC:
                    self.relays[rid]["logic"] = logic
                    changed = True
        for sid, settings in (caps.get("sensors") or {}).items():
            offset = settings.get("offset") if isinstance(settings, dict) else None
            if sid in self.sensors and isinstance(offset, int | float) and not isinstance(offset, bool):
                self.sensors[sid]["offset"] = float(offset)
                changed = True
        if version is not None:
            self.version = version
        for rid in self.relays:
            self._drive(rid)
        self._save()
        if changed:
            log.info("applied shadow change version %s: %s", version, json.dumps(change))
        return True
