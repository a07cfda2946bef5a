"""Files whose upload was skipped, kept on the Account for the next run to read again.

A file given by path that changed or vanished between the connector hashing
it and the upload leaves its File item without content. The connector's
checkpoint, written once that upload was tried, may still count the file as
done (a file moved away and back keeps its size and mtime), so nothing would
read it again. Its path and the sha256 it had are kept in ``importerState``
beside the checkpoints, ``{"_skippedUploads": {path: sha256}}``, and the next
run's connector finds them in ``ctx.files_to_read_again``. They are dropped
once a run that went through to the end has had them; a run that fails keeps
them for the one after.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["KEY", "SkippedUploads"]

KEY = "_skippedUploads"
"""Where ``importerState`` keeps them; connector names are identifiers, never this."""


def _dumps(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _with(checkpoints: str, held: dict[str, str]) -> str:
    """``importerState``: the checkpoints' JSON, plus ``held`` if there are any."""
    if not held:
        return checkpoints
    state = json.loads(checkpoints)
    state[KEY] = held
    return _dumps(state)


class SkippedUploads:
    """What the Account holds of them, what this run adds, and what it settles."""

    def __init__(self, state: dict[str, Any]) -> None:
        """Take them out of ``state``, which is left holding the checkpoints alone."""
        loaded = state.pop(KEY, None)
        self.earlier: dict[str, str] = (
            {p: s for p, s in loaded.items() if isinstance(p, str) and isinstance(s, str)}
            if isinstance(loaded, dict)
            else {}
        )
        """Skipped by an earlier run and not uploaded by this one yet."""
        self.now: dict[str, str] = {}
        """Skipped by this run."""
        self._stored = dict(self.earlier)
        self._checkpoints = _dumps(state)
        """The checkpoints as the Account holds them."""
        self._sending: tuple[str, dict[str, str]] | None = None

    def skipped(self, path: str, sha256: str) -> None:
        self.now[path] = sha256

    def uploaded(self, path: str) -> None:
        """The file at ``path`` is in the Pod now: a later skip there is ``now``'s."""
        self.earlier.pop(path, None)
        self.now.pop(path, None)

    def importer_state(self, checkpoints: str) -> str:
        """``importerState`` for a checkpoint about to be sent; call :meth:`sent` once it is."""
        held = {**self.earlier, **self.now}
        self._sending = (checkpoints, held)
        return _with(checkpoints, held)

    def sent(self) -> None:
        if self._sending is not None:
            self._checkpoints, self._stored = self._sending
            self._sending = None

    def final_state(self, *, complete: bool) -> str | None:
        """``importerState`` to write as the run ends, or None if the Account has it already.

        ``complete``: the connector went through to the end, so it has read
        again what it could of ``earlier``; what is left there is gone.
        """
        held = dict(self.now) if complete else {**self.earlier, **self.now}
        if held == self._stored:
            return None
        self._stored = held
        return _with(self._checkpoints, held)
