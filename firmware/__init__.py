"""Latchkey device agent: claims a cloud identity for this device and keeps it online over MQTT.

Self-contained on purpose: this package is what ships to devices, so it never imports `lambdas`.
"""

__version__ = "0.1.0"
