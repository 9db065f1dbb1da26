"""What the agent reports about the device: board, IP, MAC, uptime."""

from __future__ import annotations

import contextlib
import fcntl
import platform
import socket
import struct
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

_STARTED = time.monotonic()


def uptime() -> int:
    """Seconds since boot (from /proc/uptime), or since the agent started where that is unavailable."""
    try:
        return int(float(Path("/proc/uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return int(time.monotonic() - _STARTED)


def board() -> str:
    """The board model from the device tree (Raspberry Pi and friends), else the machine type."""
    with contextlib.suppress(OSError):
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        if model:
            return model
    return f"{platform.system().lower()}-{platform.machine() or 'unknown'}"


def ip_address(toward: str = "") -> str:
    """The local address of the interface that routes to `toward` (a URL or host); no packet is sent."""
    host = urlsplit(toward).hostname if "://" in toward else toward
    port = 443
    candidates = [host] if host else []
    candidates.append("192.0.2.1")  # TEST-NET-1: any routable address reveals the default route
    for target in candidates:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((target, port))
                return str(probe.getsockname()[0])
        except OSError:
            continue
    return ""


def mac_address(ip: str = "") -> str:
    """The MAC of the interface holding `ip`, else of the first real interface, as aa:bb:cc:dd:ee:ff."""
    net = Path("/sys/class/net")
    interfaces: list[str] = []
    with contextlib.suppress(OSError):
        interfaces = sorted(p.name for p in net.iterdir() if p.name != "lo")
    preferred = _interface_for_ip(ip) if ip else None
    if preferred in interfaces:
        interfaces.remove(preferred)
        interfaces.insert(0, preferred)
    for name in interfaces:
        with contextlib.suppress(OSError):
            mac = (net / name / "address").read_text().strip().lower()
            if mac and mac != "00:00:00:00:00:00":
                return mac
    node = uuid.getnode()
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def _interface_for_ip(ip: str) -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                # SIOCGIFADDR: the IPv4 address of one interface.
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
                if socket.inet_ntoa(packed[20:24]) == ip:
                    return name
    return None


def normalize_mac(mac: str) -> str:
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    if len(digits) != 12:
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
