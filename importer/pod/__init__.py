"""Talking to a Pod: the async client, its errors, auth, and the embedded default."""

from ._retry import RetryPolicy
from ._upload import FileChangedError
from .auth import ClientAuth, PluginAuth
from .client import BulkResult, PodClient
from .embedded import EMBEDDED_BASE_URL, open_embedded_client
from .errors import (
    PodAuthError,
    PodBadRequest,
    PodConflict,
    PodError,
    PodNotFound,
    PodSchemaError,
    PodTooLarge,
    PodUnavailable,
)
from .keys import KeyFileError, PodKeys, default_data_dir, load_keys

__all__ = [
    "EMBEDDED_BASE_URL",
    "BulkResult",
    "ClientAuth",
    "FileChangedError",
    "KeyFileError",
    "PluginAuth",
    "PodAuthError",
    "PodBadRequest",
    "PodClient",
    "PodConflict",
    "PodError",
    "PodKeys",
    "PodNotFound",
    "PodSchemaError",
    "PodTooLarge",
    "PodUnavailable",
    "RetryPolicy",
    "default_data_dir",
    "load_keys",
    "open_embedded_client",
]
