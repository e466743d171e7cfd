"""Log lines: shared by the service and the worker.

Every line is one line (control characters escaped: a caller cannot forge a line), carries
the request id of what it is about (`integrator.requestid`), and is either text for people
or, with `INTEGRATOR_LOG_FORMAT=json`, one JSON object for a log collector.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from integrator import requestid

LogFormat = Literal["text", "json"]
#: Written where a line belongs to no request (start-up, background threads).
NO_REQUEST = "-"


class EscapeControlCharacters(logging.Filter):
    """Log records keep to one line: a newline in a logged value (a reason, a holder, a
    path) is written as `\\n`, so a caller cannot forge a line of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _escaped(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        return True


def _escaped(value: object) -> object:
    if isinstance(value, BaseException):
        value = str(value)
    if not isinstance(value, str) or value.isprintable():
        return value
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in value
    )


class AddRequestId(logging.Filter):
    """`record.request_id`: the id of the request or worker step the line is about."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = requestid.current() or NO_REQUEST
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, request id."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def service_log_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's logging config: every handler escaping and naming the request id, the
    service's own loggers on it, and JSON lines when asked for."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "escape": {"()": EscapeControlCharacters},
        "request_id": {"()": AddRequestId},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["escape", "request_id"]
    formatters = config["formatters"]
    if log_format == "json":
        for name in formatters:
            formatters[name] = {"()": JsonLines}
    else:
        formatters["default"]["fmt"] = "%(levelprefix)s %(request_id)s %(message)s"
        formatters["access"]["fmt"] = (
            '%(levelprefix)s %(request_id)s %(client_addr)s - "%(request_line)s" %(status_code)s'
        )
    config["loggers"]["integrator"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def configure_worker_logging(level: str, log_format: LogFormat) -> None:
    """The worker's lines on stderr, escaped and with the step's request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(EscapeControlCharacters())  # the service's answers are logged too
    handler.addFilter(AddRequestId())
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s integrator worker %(request_id)s: %(message)s")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request line at INFO; the worker says what matters itself.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
