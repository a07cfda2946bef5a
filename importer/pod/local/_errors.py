"""The one exception type the local Pod maps to an HTTP error answer.

Messages are written for the client and must never contain a key: they quote
ids, type and property names only, shortened by :func:`shown`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SHUTDOWN_RETRY_AFTER",
    "PodHTTPError",
    "bad_request",
    "conflict",
    "not_found",
    "shown",
    "shutting_down",
    "unauthorized",
]

SHUTDOWN_RETRY_AFTER = 1
"""Seconds a client is asked to wait after a 503 of a stopping Pod (a restart is quick)."""


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
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.section = section
        self.index = index
        self.retry_after = retry_after
        """Seconds for a ``Retry-After`` header ("try again later" answers)."""

    def at(self, section: str, index: int | None = None) -> PodHTTPError:
        """The same error, located at element ``index`` of bulk section ``section``."""
        if self.section is not None:
            return self
        where = section if index is None else f"{section}[{index}]"
        return PodHTTPError(
            self.status,
            f"{where}: {self.message}",
            section=section,
            index=index,
            retry_after=self.retry_after,
        )

    def headers(self) -> dict[str, str] | None:
        """Extra response headers: ``Retry-After`` if the client should try again."""
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}

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


def shutting_down() -> PodHTTPError:
    """The answer of a Pod that is stopping: a 503 with ``Retry-After``."""
    return PodHTTPError(503, "the Pod is shutting down", retry_after=SHUTDOWN_RETRY_AFTER)
