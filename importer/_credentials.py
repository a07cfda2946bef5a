"""Which of an Account's stored credentials a run may use.

One Account item serves every account of an owner address (a mailbox that
moved hosts, a personal and a work login), yet it holds one ``secret`` and
one set of tokens.  They were stored for one place, which ``credentialsFor``
records next to them (the connector's name for a server and login); a run
for any other place gets none of them, so a password never reaches a server
or a login it was not given for.

Credentials stored before that binding existed carry none.  They belong to
the place the config of the Account's Importer item names: the account
``importer account add`` or a Pod stored them with.  The first run for that
place records it; runs for other places never see them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .connector import Connector

__all__ = [
    "BINDING",
    "CREDENTIALS",
    "Grant",
    "grant",
    "has_credentials",
    "owner_of",
    "place_of_config",
]

CREDENTIALS = ("secret", "accessToken", "refreshToken")
BINDING = "credentialsFor"


@dataclass(frozen=True)
class Grant:
    """The Account as a run may see it, and the binding to record now (if any)."""

    account: dict[str, Any]
    record: str | None = None
    granted: bool = True
    """False: the Account holds credentials for another place, withheld from this run."""


def has_credentials(account: dict[str, Any]) -> bool:
    return any(account.get(key) for key in CREDENTIALS)


def place_of_config(connector: Connector[Any], config: Any) -> str | None:
    """Where the options in an Importer's ``config`` (JSON) send credentials; None if unclear."""
    try:
        raw = json.loads(config) if isinstance(config, str) else config
        if not isinstance(raw, dict):
            return None
        return connector.credentials_for(connector.options_model.model_validate(raw))
    except (ValueError, ValidationError):
        return None


def owner_of(account: dict[str, Any], legacy_place: str | None) -> str | None:
    """The place the Account's credentials are for: recorded, else the Importer's config."""
    bound = account.get(BINDING)
    return str(bound) if bound else legacy_place


def grant(account: dict[str, Any], place: str | None, legacy_place: str | None) -> Grant:
    """The Account for a run whose options send credentials to ``place``.

    ``legacy_place``: what the config of the Account's Importer names, the
    owner of credentials stored without a binding.
    """
    if place is None:
        return Grant(account)
    if not has_credentials(account):
        return Grant({**account, BINDING: None})
    owner = owner_of(account, legacy_place)
    if owner == place:
        return Grant({**account, BINDING: place}, None if account.get(BINDING) else place)
    withheld = {**account, **dict.fromkeys(CREDENTIALS), BINDING: owner}
    return Grant(withheld, granted=False)
