"""The agent's exit statuses, for whoever supervises it (systemd, a container runtime; docs/agent.md).

0 and 2 are the usual "stopped" and "fix the configuration". 3 to 7 are answers of the service that no
retry can change: only a new configuration or identity, flashed onto the device, can.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    STOPPED = 0  # SIGTERM or SIGINT: said offline, disconnected
    CONFIG = 2  # the configuration file is missing or invalid (also argparse's usage errors)
    TOKEN_USED = 3  # register: 410, the registration token was already used
    TOKEN_REJECTED = 4  # register: 401, the registration token is unknown or has expired
    MAC_MISMATCH = 5  # register: 409, the token is bound to another device's MAC address
    REVOKED = 6  # poll or ack: 403, the device was revoked
    DELETED = 7  # poll: 404, the service does not know the device (deleted)


# For RestartPreventExitStatus= and the like: restarting cannot help with these.
NEEDS_REFLASH = tuple(code for code in ExitCode if code >= ExitCode.TOKEN_USED)


class Unrecoverable(Exception):
    """The service gave an answer only a re-flash can change: the agent stops with `exit_code`."""

    def __init__(self, exit_code: ExitCode, sentence: str) -> None:
        super().__init__(sentence)
        self.exit_code = exit_code
        self.sentence = sentence
