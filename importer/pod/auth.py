"""How a client proves to the Pod that it may open the owner's data.

Both kinds hold secrets, so their reprs hide them and :meth:`secret_strings`
tells the client what to scrub from anything it logs or raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["ClientAuth", "PluginAuth"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """The owner's own database key (64 hex characters)."""

    database_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.database_key):
            raise ValueError("a database key must be 64 hex characters")

    def to_json(self) -> dict[str, Any]:
        """The ``auth`` object of a request body."""
        return {"type": "ClientAuth", "databaseKey": self.database_key}

    def upload_path(self, sha256: str) -> str:
        """Path suffix of the upload endpoint for this kind of auth."""
        return f"upload_file/{self.database_key}/{sha256}"

    def secret_strings(self) -> tuple[str, ...]:
        """Strings that must never appear in logs or errors."""
        return (self.database_key,)


@dataclass(frozen=True, slots=True)
class PluginAuth:
    """What a Pod handed the plugin it started (``POD_AUTH_JSON``), sent back verbatim."""

    data: dict[str, Any] = field(repr=False)

    @classmethod
    def from_env_json(cls, text: str) -> PluginAuth:
        """Build from the ``POD_AUTH_JSON`` environment value.

        Accepts the bare ``data`` object or a full ``{"type": "PluginAuth", "data": ...}``.
        """
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError("POD_AUTH_JSON is not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError("POD_AUTH_JSON must be a JSON object")
        if value.get("type") == "PluginAuth" and isinstance(value.get("data"), dict):
            return cls(value["data"])
        return cls(value)

    def to_json(self) -> dict[str, Any]:
        """The ``auth`` object of a request body."""
        return {"type": "PluginAuth", "data": self.data}

    def upload_path(self, sha256: str) -> str:
        """Path suffix of the upload endpoint: the AUTH JSON, url-encoded as one segment."""
        encoded = quote(json.dumps(self.to_json(), separators=(",", ":")), safe="")
        return f"upload_file_b/{encoded}/{sha256}"

    def secret_strings(self) -> tuple[str, ...]:
        """Strings that must never appear in logs or errors: every leaf value."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str) and len(value) >= 8:
                found.append(value)

        walk(self.data)
        return tuple(found)
