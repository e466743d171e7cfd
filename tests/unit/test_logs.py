"""Log lines a caller cannot forge, as text or JSON, each naming its request."""

from __future__ import annotations

import contextvars
import io
import json
import logging

from integrator import requestid
from integrator.logs import AddRequestId, EscapeControlCharacters, JsonLines, service_log_config


def test_a_newline_in_a_logged_value_cannot_start_a_forged_line() -> None:
    """Control characters in the message or its arguments are written escaped, on one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeControlCharacters())
    logger = logging.getLogger("test-logs")
    logger.addHandler(handler)
    try:
        logger.warning("closed: %s", "ok\n2026-11-26 INFO forged line")
        logger.warning("reason\r%s", {"x": 1})
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["closed: ok\\n2026-11-26 INFO forged line", "reason\\r{'x': 1}"]


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeControlCharacters())
    handler.addFilter(AddRequestId())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, stream


def test_json_lines_carry_the_request_id_and_stay_one_line() -> None:
    """One JSON object per line, with the current request id; `-` outside any request."""

    def in_a_request() -> None:
        requestid.begin("req-1")
        logger.warning("reason: %s", "two\nlines")

    logger, stream = capture(JsonLines())
    contextvars.copy_context().run(in_a_request)
    contextvars.Context().run(logger.error, "outside")  # whatever earlier tests left set
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-1" and first["level"] == "warning"
    assert first["message"] == "reason: two\\nlines"
    assert set(first) == {"time", "level", "logger", "message", "request_id"}
    assert second["request_id"] == "-"


def test_the_service_config_names_the_request_id_in_both_formats() -> None:
    """uvicorn's handlers escape and add the request id; json swaps every formatter."""
    text = service_log_config("info", "text")
    assert all(h["filters"] == ["escape", "request_id"] for h in text["handlers"].values())
    assert "%(request_id)s" in text["formatters"]["default"]["fmt"]
    assert "%(request_id)s" in text["formatters"]["access"]["fmt"]
    as_json = service_log_config("debug", "json")
    assert {f["()"] for f in as_json["formatters"].values()} == {JsonLines}
    assert as_json["loggers"]["integrator"]["level"] == "DEBUG"


def test_a_callers_request_id_is_kept_only_when_sane() -> None:
    """A sane id is kept; anything that could forge or bloat a line is replaced."""
    assert requestid.accepted("ci-build.42:step_3") == "ci-build.42:step_3"
    for offered in (None, "", "a b", "x\nINFO forged", "é", "a" * 129):
        replaced = requestid.accepted(offered)
        assert replaced != offered and requestid.SANE.fullmatch(replaced)
