"""One log format for every function: a JSON object per line, on AWS and locally alike.

`logger(name)` returns a child of the "latchkey" logger, which writes through one JSON formatter
(stdout, which Lambda ships to CloudWatch) and does not propagate, so the runtime's own text
formatter never sees it. Fields go in `extra={"fields": {...}}` or through `event()`.
Level: LATCHKEY_LOG_LEVEL, else Lambda's AWS_LAMBDA_LOG_LEVEL, else INFO. Stdlib only (poll path).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

ROOT = "latchkey"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def _configure() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.propagate = False
    level = os.environ.get("LATCHKEY_LOG_LEVEL") or os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "INFO"
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
    return root


_configure()


def logger(name: str) -> logging.Logger:
    """`latchkey.<name>`; every module's logger comes from here."""
    return logging.getLogger(f"{ROOT}.{name}")


def event(log: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """A log line with structured fields (cheap when the level is off)."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={"fields": fields})
