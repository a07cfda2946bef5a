"""The one exception type the local Pod maps to an HTTP error answer.

Messages are written for the client and must never contain a key: they quote
ids, type and property names only, shortened by :func:`shown`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PodHTTPError", "bad_request", "conflict", "not_found", "shown", "unauthorized"]


def shown(value: object, limit: int = 80) -> str:
    """A short, quoted rendering of a client-supplied value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PodHTTPError(Exception):
    """A client-visible failure: HTTP status plus a readable message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        section: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.section = section
        self.index = index

    def at(self, section: str, index: int | None = None) -> PodHTTPError:
        """The same error, located at element ``index`` of bulk section ``section``."""
        if self.section is not None:
            return self
        where = section if index is None else f"{section}[{index}]"
        return PodHTTPError(self.status, f"{where}: {self.message}", section=section, index=index)

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        body: dict[str, Any] = {"error": self.message}
        if self.section is not None:
            body["section"] = self.section
        if self.index is not None:
            body["index"] = self.index
        return body


def bad_request(message: str) -> PodHTTPError:
    return PodHTTPError(400, message)


def unauthorized(message: str) -> PodHTTPError:
    return PodHTTPError(401, message)


def not_found(message: str) -> PodHTTPError:
    return PodHTTPError(404, message)


def conflict(message: str) -> PodHTTPError:
    return PodHTTPError(409, message)
