"""Relays and sensors follow the shadow: applied in order, stale versions ignored, kept across restarts."""

from __future__ import annotations

from firmware.device import DeviceModel, SimulatedGpio


def test_desired_relay_is_driven_with_its_logic_and_reported(tmp_path):
    gpio = SimulatedGpio()
    device = DeviceModel(tmp_path, gpio)
    assert device.apply({"relays": {"r1": True}}, version=3)
    assert gpio.levels["r1"] is True and device.reported()["relays"]["r1"] is True
    assert device.apply(
        {"capabilities": {"relays": {"r1": {"logic": "negative", "name": "Pump"}}}}, version=4
    )
    assert gpio.levels["r1"] is False  # on, negative logic: pin low
    assert device.reported()["capabilities"]["relays"]["r1"] == {"name": "Pump", "logic": "negative"}


def test_stale_version_is_ignored(tmp_path):
    device = DeviceModel(tmp_path)
    assert device.apply({"relays": {"r2": True}}, version=10)
    assert not device.apply({"relays": {"r2": False}}, version=9)
    assert device.reported()["relays"]["r2"] is True


def test_sensor_offset_corrects_the_reading(tmp_path):
    gpio = SimulatedGpio()
    device = DeviceModel(tmp_path, gpio)
    raw = device.reported()["sensors"]["t1"]["value"]
    device.apply({"capabilities": {"sensors": {"t1": {"offset": 1.5}}}}, version=1)
    corrected = device.reported()["sensors"]["t1"]
    assert abs(corrected["value"] - (raw + 1.5)) < 0.2 and corrected["unit"] == "°C"


def test_state_survives_a_restart(tmp_path):
    DeviceModel(tmp_path).apply({"relays": {"r1": True}}, version=7)
    again = DeviceModel(tmp_path)
    assert again.reported()["relays"]["r1"] is True and again.version == 7
    assert (tmp_path / "device.json").stat().st_mode & 0o777 == 0o600


def test_unknown_parts_are_ignored(tmp_path):
    device = DeviceModel(tmp_path)
    device.apply({"relays": {"r9": True, "r1": "yes"}}, version=1)
    assert device.reported()["relays"] == {"r1": False, "r2": False}
