"""The Lambda dependencies are installed from a hash-locked file that covers lambdas/requirements.txt."""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from infrastructure import functions
from infrastructure.settings import REPO_ROOT

LOCK = REPO_ROOT / "lambdas" / "requirements.lock"


def _pins() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) from the lock."""
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            pins[canonicalize_name(match[1])] = (Version(match[2]), block.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    pins = _pins()
    for line in (REPO_ROOT / "lambdas" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in the lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0]), f"{name} {pins[name][0]}: run `make lock`"
    assert "tomli-w" in pins


def test_every_pin_has_hashes() -> None:
    pins = _pins()
    assert len(pins) >= 5
    assert all(count >= 1 for _, count in pins.values()), pins


def test_bundling_installs_from_the_lock_with_hashes_required() -> None:
    command = functions._pip_command("/out", functions.REQUIREMENTS)
    assert "--require-hashes" in command and "--only-binary=:all:" in command
    assert command[command.index("-r") + 1] == "lambdas/requirements.lock"
    # The lock is inside lambdas/, which the asset (and so its hash) is made of.
    assert functions.REQUIREMENTS.startswith("lambdas/") and "!lambdas/**" in functions.ASSET_EXCLUDE
