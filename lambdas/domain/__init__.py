"""The device's domain: its typed record (`device.Device`), its states and the one transitions table
(`lifecycle.TRANSITIONS`), and the time helpers every layer shares. Pure Python: no AWS, no pydantic."""
