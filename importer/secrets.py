"""Secrets from the environment, a command or the OS keyring, never from logs.

Errors name the secret (``what``, e.g. "account personal: password" or "pod
database key") and where it was looked for, never its value, the command line
(it may hold a secret) or what the command printed.
"""

from __future__ import annotations

import os
import shlex
import subprocess

__all__ = ["SecretError", "resolve_secret"]


class SecretError(Exception):
    """A secret could not be obtained; the message says where it was looked for."""


def resolve_secret(
    *,
    what: str,
    env: str | None = None,
    command: str | None = None,
    keyring_service: str | None = None,
    keyring_user: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Return the secret ``what`` names from the first source that is configured."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise SecretError(f"{what}: environment variable {env} is not set or empty")
        return value
    if command:
        try:
            done = subprocess.run(
                shlex.split(command),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SecretError(f"{what}: command could not run ({type(exc).__name__})") from None
        if done.returncode != 0:
            raise SecretError(f"{what}: command exited with status {done.returncode}")
        value = done.stdout.splitlines()[0] if done.stdout else ""
        if not value:
            raise SecretError(f"{what}: command printed nothing")
        return value
    if keyring_service:
        try:
            import keyring
        except ImportError:
            raise SecretError(
                f"{what}: keyring is configured but not installed (pip install 'importer[keyring]')"
            ) from None
        value = keyring.get_password(keyring_service, keyring_user or "")
        if not value:
            raise SecretError(f"{what}: no entry in the OS keyring for service {keyring_service!r}")
        return str(value)
    raise SecretError(
        f"{what}: no source configured (an environment variable, a command or the keyring)"
    )
