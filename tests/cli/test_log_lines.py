"""Text log lines: one line per record, whatever the logged values hold."""

from __future__ import annotations

import logging
import sys

from importer._logging import TextFormatter


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("importer", logging.ERROR, __file__, 1, message, args, exc_info)


def test_an_exception_text_with_line_breaks_stays_on_the_record_line() -> None:
    try:
        raise ValueError("folder 'x\n12:00:00 INFO forged'\u2028\u202eevil")
    except ValueError:
        exc = sys.exc_info()[1]
    assert exc is not None
    line = TextFormatter("%(levelname)s %(message)s").format(
        _record("failed on %s", "a\tb", exc=exc)
    )
    assert len(line.splitlines()) == 1, line
    assert line.startswith("ERROR failed on a\\tb\\nTraceback (most recent call last):\\n")
    assert line.endswith("ValueError: folder 'x\\n12:00:00 INFO forged'\\u2028\\u202eevil")


def test_printable_text_is_left_as_it_is() -> None:
    name = "Fotos/Sommer \u00e9t\u00e9 \U0001f468\u200d\U0001f469 C:\\temp"
    line = TextFormatter("%(message)s").format(_record("skipped %s", name))
    assert line == f"skipped {name}"
