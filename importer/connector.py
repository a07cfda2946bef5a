"""What a connector is, and how the engine finds the installed ones.

A connector is an object with a ``name``, an ``options_model`` (pydantic,
validated from the account's config section), ``account(options)`` naming the
account it imports for, and ``fetch(ctx)``: a sync or async generator of
:data:`~importer.Record`.  Connectors are registered under the entry-point
group ``importer.connectors``; the built-in ones are registered the same way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .model import Item, Record

if TYPE_CHECKING:
    from .context import RunContext
    from .schema import Account

__all__ = [
    "ENTRY_POINT_GROUP",
    "Connector",
    "ConnectorNotFound",
    "load_connector",
    "load_connectors",
    "validate_options",
]

ENTRY_POINT_GROUP = "importer.connectors"

log = logging.getLogger("importer")

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class Connector(Generic[OptionsT]):
    """Base class for connectors; override ``fetch`` (and ``account``)."""

    name: ClassVar[str] = ""
    options_model: type[BaseModel] = BaseModel
    item_types: ClassVar[tuple[type[Item], ...]] = ()
    """Custom item types the engine declares in the Pod before the first run."""

    def account(self, options: OptionsT, account_name: str) -> Account:
        """The Account this source imports for (its checkpoints live there)."""
        from .schema import Account

        return Account(service=self.name, handle=account_name)

    def credentials_for(self, options: OptionsT) -> str | None:
        """The server and login these options send the Account's stored credentials to.

        The engine hands a run the Account's ``secret`` and tokens only when
        they were stored for this place, so that accounts sharing an Account
        item never send each other's password.  None (the default): the
        options send none anywhere, and the Account is handed over as it is.
        """
        return None

    def fetch(self, ctx: RunContext[OptionsT]) -> Iterator[Record] | AsyncIterator[Record]:
        raise NotImplementedError

    def check(self, ctx: RunContext[OptionsT]) -> None:
        """Verify credentials and reachability; raise with a clear message."""

    def describe_options(self) -> dict[str, Any]:
        """Option name -> JSON schema, for ``importer connectors``."""
        props: dict[str, Any] = self.options_model.model_json_schema().get("properties", {})
        return props


def validate_options(connector: Connector[Any], raw: Mapping[str, Any]) -> BaseModel:
    """``raw`` as the connector's options; a key they do not have is refused.

    pydantic drops unknown keys by default, so a misspelt option would be ignored
    without a word and the run go on without it.  A model that sets ``extra``
    itself keeps its choice.
    """
    model = connector.options_model
    if model.model_config.get("extra") is None:
        _closed(model).model_validate(raw)  # every problem at once, unknown keys included
    return model.model_validate(raw)


@functools.cache
def _closed(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` refusing keys it does not have."""
    return type(model.__name__, (model,), {"model_config": ConfigDict(extra="forbid")})


class ConnectorNotFound(LookupError):
    pass


def _instantiate(obj: Any, registered: str) -> Connector[Any]:
    """The connector an entry point names, refused if it goes by another name.

    Importer items, checkpoints and the run lock know a connector by ``name``: one
    copied under a new entry point but still named after the original would share
    the original's.
    """
    connector: Connector[Any] = obj() if isinstance(obj, type) else obj
    if connector.name != registered:
        raise ValueError(
            f"it is named {connector.name!r}: set name = {registered!r} in its class, "
            "the name it is registered under"
        )
    return connector


def load_connectors() -> dict[str, Connector[Any]]:
    """Every installed connector that loads, by name; broken ones are logged and left out."""
    found: dict[str, Connector[Any]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = _instantiate(ep.load(), ep.name)
        except Exception as exc:
            log.warning("connector %r could not be loaded: %s", ep.name, exc)
    return found


def load_connector(name: str) -> Connector[Any]:
    """The connector registered as ``name``; a clear error if it is absent or broken."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))
        raise ConnectorNotFound(
            f"no connector named {name!r} is installed (installed: {known or 'none'})"
        )
    try:
        return _instantiate(matches[0].load(), name)
    except Exception as exc:
        raise ConnectorNotFound(f"connector {name!r} could not be loaded: {exc}") from None
