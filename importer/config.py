"""Settings: a TOML file plus environment overrides, validated with precise messages.

Every error names the file, the key and what is wrong.  Secrets are never
read from here directly: the file names where they come from
(``*_env``, ``*_command``), so it can be shared or committed safely.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .engine import EngineSettings

__all__ = [
    "AccountConfig",
    "Config",
    "ConfigError",
    "EngineConfig",
    "PodConfig",
    "default_config_path",
    "format_validation_error",
    "load_config",
]

ENV_CONFIG = "IMPORTER_CONFIG"
ENV_POD_URL = "IMPORTER_POD_URL"
ENV_DATA_DIR = "IMPORTER_DATA_DIR"
ENV_OWNER_KEY = "IMPORTER_POD_OWNER_KEY"


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key.

    ``lines`` are the lines to show: the message, or one per problem found
    when a section was validated (a path in them may hold a line break).
    """

    def __init__(self, message: str, *, lines: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.lines = list(lines) if lines is not None else [message]

    @classmethod
    def invalid(cls, error: ValidationError, source: str, prefix: str = "") -> ConfigError:
        """What validating a section found, a line per problem."""
        lines = _problems(error, source, prefix)
        return cls("\n".join(lines), lines=lines)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PodConfig(_Strict):
    url: str = "embedded"
    """"embedded" (the local Pod, in-process) or the base URL of a Pod."""
    data_dir: Path | None = None
    owner_key: str | None = None
    database_key_env: str | None = None
    database_key_command: str | None = None
    timeout: float = Field(30.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    max_retry_seconds: float = Field(120.0, gt=0)
    max_concurrency: int = Field(8, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("http://", "https://")):
            raise ValueError('must be "embedded" or start with http:// or https://')
        return value.rstrip("/")

    @field_validator("owner_key")
    @classmethod
    def _owner_key(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value)
        ):
            raise ValueError("must be 64 hexadecimal characters")
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


_DEFAULTS = EngineSettings()


class EngineConfig(_Strict):
    """``[engine]``: the engine's batching and concurrency (defaults: EngineSettings)."""

    batch_records: int = Field(_DEFAULTS.batch_records, ge=1)
    batch_bytes: int = Field(_DEFAULTS.batch_bytes, ge=1024)
    flush_interval: float = Field(_DEFAULTS.flush_interval, gt=0)
    max_in_flight: int = Field(_DEFAULTS.max_in_flight, ge=1)
    upload_concurrency: int = Field(_DEFAULTS.upload_concurrency, ge=1)

    def settings(self) -> EngineSettings:
        return EngineSettings(**self.model_dump())


class AccountConfig(BaseModel):
    """``[accounts.NAME]``: ``connector`` plus that connector's own options."""

    model_config = ConfigDict(extra="allow")

    connector: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Config(_Strict):
    pod: PodConfig = PodConfig()
    engine: EngineConfig = EngineConfig()
    accounts: dict[str, AccountConfig] = {}
    source: Path | None = Field(None, exclude=True)

    def data_dir(self) -> Path:
        return self.pod.data_dir or Path(platformdirs.user_data_dir("importer"))

    def accounts_for(self, connector: str) -> dict[str, AccountConfig]:
        return {name: acc for name, acc in self.accounts.items() if acc.connector == connector}


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("importer")) / "config.toml"


def format_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``FILE: key.path: what is wrong``."""
    return "\n".join(_problems(error, source, prefix))


def _problems(error: ValidationError, source: str, prefix: str) -> list[str]:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"])
        key = f"{prefix}.{key}" if prefix and key else (prefix or key)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "required key is missing"
        elif "input" in problem and problem["type"] not in ("missing",):
            shown = _URL_PASSWORD.sub(r"\1:***@", repr(problem["input"]))
            if len(shown) <= 60 and not _looks_secret(key):
                message = f"{message} (got {shown})"
        lines.append(f"{source}: {key or '(top level)'}: {message}")
    return lines


_URL_PASSWORD = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")
"""The password of a URL's ``user:password@``: never echoed in an error."""


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("password", "secret", "token", "key"))


def _env_overrides(raw: dict[str, Any]) -> None:
    pod = raw.setdefault("pod", {})
    if not isinstance(pod, dict):
        return
    if url := os.environ.get(ENV_POD_URL):
        pod["url"] = url
    if data_dir := os.environ.get(ENV_DATA_DIR):
        pod["data_dir"] = data_dir
    if owner := os.environ.get(ENV_OWNER_KEY):
        pod["owner_key"] = owner


def load_config(path: Path | None = None, *, required: bool = False) -> Config:
    """Read ``path`` (or ``$IMPORTER_CONFIG``, or the user config file) and validate it.

    A missing default file is an empty configuration; a missing file that was
    asked for by name is an error.
    """
    explicit = path is not None or ENV_CONFIG in os.environ
    if path is None:
        path = Path(os.environ[ENV_CONFIG]) if ENV_CONFIG in os.environ else default_config_path()
    path = path.expanduser()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    elif explicit or required:
        raise ConfigError(f"{path}: no such configuration file")
    _env_overrides(raw)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.invalid(exc, str(path)) from None
    config.source = path if path.exists() else None
    return config
