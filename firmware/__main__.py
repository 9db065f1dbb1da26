"""`python -m firmware --config agent.toml` (console script `latchkey-agent`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from firmware import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="latchkey-agent",
        description="Latchkey device agent: waits to be claimed, then keeps this device online over MQTT.",
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
        return 2

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("latchkey.agent").info("received %s; disconnecting", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
