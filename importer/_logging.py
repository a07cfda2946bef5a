"""Log lines for people (text) or machines (JSON lines), on stderr.

Logged values come from outside (file names, folder names, feed titles): in
text lines their control characters are escaped, so a record stays one line
and a crafted name can't forge one.  JSON lines are safe as they are.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_UNSAFE = re.compile(
    # C0 and C1 controls (newline, carriage return, terminal escapes), the line and
    # paragraph separators, and the bidi controls that reorder what a line shows.
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CHATTY = ("httpx", "imapclient")
"""Libraries that log at INFO during runs (email, photos and rss checked)."""


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with line breaks, terminal escapes and bidi overrides written as
    repr writes them, so it prints as one line that reads as it is stored."""
    return _UNSAFE.sub(_escape_char, text)


class TextFormatter(logging.Formatter):
    """One line per record, even with a traceback (escaped like the message)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = str(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(log_format: str, *, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Libraries' INFO lines are detail for --verbose only: httpx logs every
    # request, imapclient "Connection closed" after a refused login.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
