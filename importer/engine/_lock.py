"""One run per (connector, account) on a machine: an advisory lock file."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class RunLocked(Exception):
    """Another run holds the lock; nothing was imported by this one."""


class RunLock:
    """``flock`` on ``locks/<name>.lock``; released by the kernel if the process dies."""

    def __init__(self, lock_dir: Path, name: str) -> None:
        self.path = lock_dir / f"{name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"another run is in progress (pid {holder}, lock {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
