"""The email connector: a mailbox (IMAP, mbox or Maildir) into the Pod.

Every source maps messages with :func:`~connectors.email.mapping.message_records`,
so a message has the same id whichever way it arrives; the engine dedups.
"""

from __future__ import annotations

from collections.abc import Iterator

from importer.connector import Connector
from importer.context import RunContext
from importer.model import Record
from importer.schema import Account

from .mapping import SERVICE
from .options import EmailOptions

__all__ = ["EmailConnector", "EmailOptions", "connector"]


class EmailConnector(Connector[EmailOptions]):
    """Imports one mailbox; ``options.source`` picks the reader."""

    name = "email"
    options_model = EmailOptions

    def account(self, options: EmailOptions, account_name: str) -> Account:
        """The mailbox owner (checkpoints live on this item)."""
        return Account(
            service=SERVICE,
            handle=options.owner_address().strip().lower(),
            isMe=True,
        )

    def credentials_for(self, options: EmailOptions) -> str | None:
        """IMAP: the mailbox URL (server, port and login); local files send nothing."""
        if options.source != "imap":
            return None
        from ._imap_streams import mailbox_url

        return mailbox_url(options)

    def needs_secret(self, options: EmailOptions) -> bool:
        """Whether the Account item must hold the password (``importer account add``)."""
        return options.needs_password()

    def fetch(self, ctx: RunContext[EmailOptions]) -> Iterator[Record]:
        source = ctx.options.source
        if source == "mbox":
            from .mbox import iter_mbox

            return iter_mbox(ctx)
        if source == "maildir":
            from .maildir import iter_maildir

            return iter_maildir(ctx)
        from .imap import iter_imap

        return iter_imap(ctx)

    def check(self, ctx: RunContext[EmailOptions]) -> None:
        """IMAP: log in and list folders; mbox/Maildir: the path is readable and the right kind."""
        source = ctx.options.source
        if source == "imap":
            from .imap import check_imap

            check_imap(ctx)
            return
        from ._local import check_path

        check_path(ctx.options)


connector = EmailConnector()
