"""`python -m firmware --config agent.toml` (console script `latchkey-agent`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from firmware import __version__
from firmware.exits import ExitCode, Unrecoverable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="latchkey-agent",
        description="Latchkey device agent: waits to be claimed, then keeps this device online over MQTT.",
        epilog="Exit status: 0 stopped by SIGTERM/SIGINT; 2 bad configuration; 3-7 the service refused this "
        "device for good (3 token used, 4 token unknown or expired, 5 token bound to another MAC, "
        "6 revoked, 7 deleted): flash a new configuration or identity. See docs/agent.md.",
    )
    parser.add_argument("--config", "-c", type=Path, required=True, help="agent configuration (TOML)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (overrides the config)")
    parser.add_argument("--version", action="version", version=f"latchkey-agent {__version__}")
    args = parser.parse_args(argv)

    # Imported here so that --help and --version work even where a dependency is broken.
    from firmware.agent import Agent
    from firmware.config import ConfigError, load_config

    try:
        config = load_config(args.config)
        level = (args.log_level or config.log_level).upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        agent = Agent(config)
    except (ConfigError, ValueError) as exc:
        print(f"latchkey-agent: {exc}", file=sys.stderr)
        return ExitCode.CONFIG

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("latchkey.agent").info("received %s; disconnecting", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        agent.run()
    except Unrecoverable as exc:
        # One sentence for the person reading the journal; the status for the supervisor.
        print(f"latchkey-agent: {exc.sentence}", file=sys.stderr)
        return exc.exit_code
    return ExitCode.STOPPED


if __name__ == "__main__":
    sys.exit(main())
