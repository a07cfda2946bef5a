"""From settings to a ready PodClient: the embedded local Pod or a remote one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .config import Config, ConfigError
from .pod import ClientAuth, PodClient, RetryPolicy, open_embedded_client
from .secrets import SecretError, resolve_secret

__all__ = ["open_pod"]

ENV_DATABASE_KEY = "IMPORTER_POD_DATABASE_KEY"


def _client_for(config: Config) -> PodClient:
    pod = config.pod
    retry = RetryPolicy(max_attempts=pod.max_attempts, max_elapsed=pod.max_retry_seconds)
    kwargs = {"timeout": pod.timeout, "retry": retry, "max_concurrency": pod.max_concurrency}
    if pod.url == "embedded":
        return open_embedded_client(config.data_dir(), **kwargs)
    where = str(config.source or "configuration")
    if pod.owner_key is None:
        raise ConfigError(f"{where}: pod.owner_key: required when pod.url is a remote Pod")
    env = pod.database_key_env or (None if pod.database_key_command else ENV_DATABASE_KEY)
    try:
        database_key = resolve_secret(
            what=f"{where}: pod database key", env=env, command=pod.database_key_command
        )
    except SecretError as exc:
        raise ConfigError(str(exc)) from None
    try:
        auth = ClientAuth(database_key)
    except ValueError:
        # A configuration mistake like any other, named by its source; never shown.
        source = f"${env}" if env else "pod.database_key_command"
        raise ConfigError(
            f"{where}: pod database key from {source}: must be 64 hexadecimal characters"
        ) from None
    return PodClient(pod.url, pod.owner_key, auth, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def open_pod(config: Config) -> AsyncIterator[PodClient]:
    """A connected client whose owner store exists (``/v4/account`` is idempotent)."""
    client = _client_for(config)
    async with client:
        await client.create_account()
        yield client
