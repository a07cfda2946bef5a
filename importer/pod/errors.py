"""Errors raised by :class:`~importer.pod.client.PodClient`.

Each carries the HTTP status (``None`` when no response arrived) and the
Pod's own message, truncated, so callers can branch on the class and log the
text.  Keys never reach these messages: the client redacts every secret it
knows before building one.
"""

from __future__ import annotations

__all__ = [
    "PodAuthError",
    "PodBadRequest",
    "PodConflict",
    "PodError",
    "PodNotFound",
    "PodSchemaError",
    "PodTooLarge",
    "PodUnavailable",
    "error_for_status",
]

MAX_MESSAGE_CHARS = 500
"""Longer messages from a Pod are cut here: an error is a summary, not a dump."""


def _truncate(text: str) -> str:
    text = text.strip()
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"


class PodError(Exception):
    """A Pod call failed; ``status`` is the HTTP status or ``None``."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = _truncate(message)
        super().__init__(self.status, self.message)

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"HTTP {self.status}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class PodAuthError(PodError):
    """401/403: wrong or unknown key; nothing was read or changed."""


class PodNotFound(PodError):
    """404: the item, edge end or file does not exist."""


class PodConflict(PodError):
    """409: it already exists (an item id, an edge, a stored file)."""


class PodBadRequest(PodError):
    """400: the request was invalid, e.g. it violated the Pod's schema."""


PodSchemaError = PodBadRequest
"""The Pod API answers schema violations and other bad requests alike (400)."""


class PodTooLarge(PodError):
    """413: the request body or file exceeds the Pod's limit."""


class PodUnavailable(PodError):
    """The Pod could not be reached or kept failing until the retry budget ran out."""

    def __init__(self, status: int | None, message: str, *, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(status, message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
            f"attempts={self.attempts!r})"
        )


_BY_STATUS: dict[int, type[PodError]] = {
    400: PodBadRequest,
    401: PodAuthError,
    403: PodAuthError,
    404: PodNotFound,
    409: PodConflict,
    413: PodTooLarge,
}


def error_for_status(status: int, message: str) -> PodError:
    """The exception for a non-retried, non-200 answer."""
    return _BY_STATUS.get(status, PodError)(status, message)
