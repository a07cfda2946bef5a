"""importer: pull your data out of the services that hold it, into your Pod.

The public SDK for connector authors lives here; everything else is internal.
"""

from . import _httpx  # noqa: F401  (first: httpx without its command-line client)
from .connector import Connector, ConnectorNotFound, load_connector, load_connectors
from .context import InteractionRequired, RunContext, SkippedRecord
from .model import Checkpoint, DateTime, Edge, FilePayload, Item, Record, Update, derive_id
from .schema import (
    Account,
    EmailMessage,
    File,
    Importer,
    ImporterRun,
    Label,
    Location,
    Message,
    Person,
    Photo,
    PluginRun,
)
from .secrets import SecretError, resolve_secret

__version__ = "0.1.0"

__all__ = [
    "Account",
    "Checkpoint",
    "Connector",
    "ConnectorNotFound",
    "DateTime",
    "Edge",
    "EmailMessage",
    "File",
    "FilePayload",
    "Importer",
    "ImporterRun",
    "InteractionRequired",
    "Item",
    "Label",
    "Location",
    "Message",
    "Person",
    "Photo",
    "PluginRun",
    "Record",
    "RunContext",
    "SecretError",
    "SkippedRecord",
    "Update",
    "__version__",
    "derive_id",
    "load_connector",
    "load_connectors",
    "resolve_secret",
]
