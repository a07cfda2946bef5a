"""The keys of the embedded default Pod: generated once, kept owner-only.

``data_dir/keys.json`` holds the owner key and the database key (64 hex
each).  It is created 0600 in one step (``os.open`` with the mode, inside a
0700 directory) and published with a hard link so two first runs racing
each other end up with the same keys.  A key file that others can read, or
that doesn't hold two valid keys, is refused with an error naming the file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_data_dir

__all__ = ["KEY_FILE_NAME", "KeyFileError", "PodKeys", "default_data_dir", "load_keys"]

KEY_FILE_NAME = "keys.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyFileError(Exception):
    """The key file can't be trusted or read."""


@dataclass(frozen=True, slots=True)
class PodKeys:
    """The owner key (who) and database key (opens the data; hidden from repr)."""

    owner_key: str
    database_key: str = field(repr=False)


def default_data_dir() -> Path:
    """Where the embedded Pod keeps its data unless configured otherwise."""
    return Path(user_data_dir("importer"))


def _generate() -> PodKeys:
    return PodKeys(secrets.token_hex(32), secrets.token_hex(32))


def _read(path: Path) -> PodKeys:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"can't open key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if os.name == "posix":
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            if info.st_mode & 0o077:
                raise KeyFileError(
                    f"key file {path} has permissions {stat.S_IMODE(info.st_mode):04o}; "
                    "it must be readable by its owner only (chmod 600)"
                )
            if info.st_uid != os.getuid():
                raise KeyFileError(f"key file {path} belongs to another user")
        raw = handle.read(64 * 1024)
    try:
        data = json.loads(raw)
        owner, database = data["owner_key"], data["database_key"]
    except (ValueError, TypeError, KeyError):
        raise KeyFileError(
            f"key file {path} is not valid: expected JSON with owner_key and database_key"
        ) from None
    if not (
        isinstance(owner, str)
        and isinstance(database, str)
        and _HEX64.fullmatch(owner)
        and _HEX64.fullmatch(database)
    ):
        raise KeyFileError(f"key file {path} is not valid: keys must be 64 lower-case hex")
    return PodKeys(owner, database)


def _create(path: Path) -> None:
    """Write new keys to a private temp file and link it into place unless one exists."""
    keys = _generate()
    text = json.dumps({"owner_key": keys.owner_key, "database_key": keys.database_key})
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process won the race; its keys stand
        except OSError:
            _create_in_place(path, text)  # no hard links on this file system
    finally:
        temp.unlink(missing_ok=True)


def _create_in_place(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_keys(data_dir: Path) -> PodKeys:
    """The keys in ``data_dir/keys.json``, generated on first use."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / KEY_FILE_NAME
    if not path.exists() and not path.is_symlink():
        _create(path)
    return _read(path)
