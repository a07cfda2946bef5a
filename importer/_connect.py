"""From settings to a ready PodClient: the embedded local Pod or a remote one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from .config import Config, ConfigError
from .pod import ClientAuth, PodAuthError, PodClient, RetryPolicy, open_embedded_client
from .pod.keys import KEY_FILE_NAME
from .secrets import SecretError, resolve_secret

__all__ = ["open_pod"]

ENV_DATABASE_KEY = "IMPORTER_POD_DATABASE_KEY"


class PodRefused(PodAuthError):
    """The Pod refused the first call (401: the database key; 403: the owner).
    Its text says which setting to check and where it came from, never a key."""

    def __str__(self) -> str:
        return self.message


def _key_env(config: Config) -> str | None:
    """The variable a remote Pod's database key is read from, if not a command."""
    pod = config.pod
    return pod.database_key_env or (None if pod.database_key_command else ENV_DATABASE_KEY)


def _key_source(config: Config) -> str:
    """Where a remote Pod's database key came from, as its error names it."""
    env = _key_env(config)
    if config.pod.database_key_env:
        return f"pod.database_key_env (${env})"
    return f"${env}" if env else "pod.database_key_command"


def _shown_url(url: str) -> str:
    """``url`` as it may be shown: without a user and password, query or fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _refused(config: Config, exc: PodAuthError) -> PodRefused:
    """What a 401 means for this configuration, and where to look."""
    pod = config.pod
    if pod.url == "embedded":
        data_dir = config.data_dir()
        key_file = data_dir / KEY_FILE_NAME
        return PodRefused(
            exc.status,
            f"the database key in {key_file} does not open the local Pod's database in "
            f"{data_dir}. Restore {key_file} from a backup: the data there cannot be read "
            "without the key it held.",
        )
    return PodRefused(
        exc.status,
        f"{config.source or 'configuration'}: the Pod at {_shown_url(pod.url)} does not accept "
        f"the database key for pod.owner_key (HTTP {exc.status}: {exc.message}); check that "
        f"{_key_source(config)} gives that owner's database key",
    )


def _owner_refused(config: Config, exc: PodAuthError) -> PodRefused:
    """What a 403 from a remote Pod means for this configuration."""
    return PodRefused(
        exc.status,
        f"{config.source or 'configuration'}: the Pod at {_shown_url(config.pod.url)} does not "
        f"accept pod.owner_key (HTTP {exc.status}: {exc.message}); check that pod.owner_key is "
        "an owner that Pod has (not every Pod creates owners on first use)",
    )


def _client_for(config: Config) -> PodClient:
    pod = config.pod
    retry = RetryPolicy(max_attempts=pod.max_attempts, max_elapsed=pod.max_retry_seconds)
    kwargs = {"timeout": pod.timeout, "retry": retry, "max_concurrency": pod.max_concurrency}
    if pod.url == "embedded":
        return open_embedded_client(config.data_dir(), **kwargs)
    where = str(config.source or "configuration")
    if pod.owner_key is None:
        raise ConfigError(f"{where}: pod.owner_key: required when pod.url is a remote Pod")
    try:
        database_key = resolve_secret(
            what=f"{where}: pod database key",
            env=_key_env(config),
            command=pod.database_key_command,
        )
    except SecretError as exc:
        raise ConfigError(str(exc)) from None
    try:
        auth = ClientAuth(database_key)
    except ValueError:
        # A configuration mistake like any other, named by its source; never shown.
        raise ConfigError(
            f"{where}: pod database key from {_key_source(config)}: "
            "must be 64 hexadecimal characters"
        ) from None
    return PodClient(pod.url, pod.owner_key, auth, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def open_pod(config: Config) -> AsyncIterator[PodClient]:
    """A connected client whose owner store exists (``/v4/account`` is idempotent)."""
    client = _client_for(config)
    async with client:
        try:
            await client.create_account()
        except PodAuthError as exc:
            if exc.status == 401:
                raise _refused(config, exc) from None
            if exc.status == 403 and config.pod.url != "embedded":
                raise _owner_refused(config, exc) from None
            raise
        yield client
