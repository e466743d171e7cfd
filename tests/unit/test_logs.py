"""Log lines a caller cannot forge."""

from __future__ import annotations

import io
import logging

from integrator.logs import EscapeControlCharacters


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
