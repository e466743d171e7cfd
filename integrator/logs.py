"""Log lines that a caller cannot forge: shared by the service and the worker."""

from __future__ import annotations

import logging


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
