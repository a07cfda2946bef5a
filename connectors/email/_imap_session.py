"""One authenticated IMAP connection (TLS, STARTTLS or plain) that can be re-opened.

Kept apart from the sync logic so that "how do we talk to the server" (TLS
verification, credentials, CONDSTORE) has one home, and so that errors leave
here already worded for the owner: which account, which server, why — never
the password.
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from ._imap_streams import mailbox_url
from .options import KEYRING_SERVICE

if TYPE_CHECKING:
    from importer import RunContext

    from .options import EmailOptions

__all__ = [
    "DROPPED",
    "EmailAuthError",
    "EmailConnectionError",
    "EmailError",
    "ImapSession",
    "describe_error",
]

DROPPED: tuple[type[BaseException], ...] = (imaplib.IMAP4.abort, OSError, EOFError)
"""Exceptions that mean the connection broke (worth a reconnect), not a refusal."""


class EmailError(Exception):
    """The mailbox could not be read; the message says which account and why."""


class EmailAuthError(EmailError):
    """The server refused the credentials (wrong password, expired token)."""


class EmailConnectionError(EmailError):
    """The server could not be reached, or not securely, or kept dropping the connection."""


class ImapSession:
    """Opens, re-opens and closes the connection for one account."""

    def __init__(self, ctx: RunContext[EmailOptions]) -> None:
        options = ctx.options
        if options.host is None or options.username is None or options.port is None:
            raise EmailError(f"account {ctx.account_name}: IMAP needs host and username")
        self._ctx = ctx
        self.host: str = options.host
        self.port: int = options.port
        self.username: str = options.username
        self._credential: str | None = None
        self._client: IMAPClient | None = None
        self.condstore = False
        """True when the server supports CONDSTORE and it is enabled on this connection."""

    @property
    def account_name(self) -> str:
        return self._ctx.account_name

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise EmailConnectionError(f"account {self.account_name}: not connected")
        return self._client

    def _prefix(self) -> str:
        return f"account {self.account_name}"

    # -- connecting ------------------------------------------------------------

    def connect(self) -> None:
        """Connect and log in, turning every failure into an :class:`EmailError`."""
        try:
            self.open()
        except EmailError:
            raise
        except DROPPED as exc:
            raise EmailConnectionError(
                f"{self._prefix()}: cannot connect to IMAP server {self.host}:{self.port}: "
                f"{describe_error(exc)}"
            ) from None

    def open(self) -> None:
        """Connect and log in; transient network errors are raised as they are."""
        self.close()
        secret = self._secret()  # before connecting: no password, no connection
        client = self._open_transport()
        try:
            self._login(client, secret)
            client.normalise_times = False  # keep INTERNALDATE's timezone
            self.condstore = False
            if client.has_capability("CONDSTORE") and client.has_capability("ENABLE"):
                client.enable("CONDSTORE")
                self.condstore = True
        except BaseException:
            _shutdown(client)
            raise
        self._client = client

    def farewell(self) -> str | None:
        """The text of the BYE the server sent before hanging up, if it did.

        Tells "the server refused what we asked and closed the connection" (Dovecot
        answers a FETCH it cannot serve that way) apart from a network failure.
        """
        if self._client is None:
            return None
        bye = self._client._imap.untagged_responses.get("BYE")
        if not bye:
            return None
        last = bye[-1]
        return last.decode("utf-8", "replace") if isinstance(last, bytes) else str(last)

    def close(self) -> None:
        """Log out politely if the connection still works; never raises."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.logout()
            _shutdown(client)

    def _tls_context(self) -> ssl.SSLContext:
        options = self._ctx.options
        context = ssl.create_default_context(
            cafile=str(options.ca_file) if options.ca_file is not None else None
        )
        if not options.verify_tls:
            self._ctx.log.warning(
                "%s: TLS certificate verification is off (verify_tls = false)", self._prefix()
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _open_transport(self) -> IMAPClient:
        options = self._ctx.options
        timeout = SocketTimeout(
            connect=options.connect_timeout, read=max(options.connect_timeout, 120.0)
        )
        try:
            if options.security == "tls":
                return IMAPClient(
                    self.host,
                    port=self.port,
                    ssl=True,
                    ssl_context=self._tls_context(),
                    timeout=timeout,
                )
            client = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
            if options.security == "starttls":
                try:
                    if not client.has_capability("STARTTLS"):
                        raise EmailConnectionError(
                            f"{self._prefix()}: IMAP server {self.host}:{self.port} does not "
                            'offer STARTTLS (use security = "tls" with port 993?)'
                        )
                    client.starttls(self._tls_context())
                except BaseException:
                    _shutdown(client)
                    raise
            return client
        except ssl.SSLCertVerificationError as exc:
            raise EmailConnectionError(
                f"{self._prefix()}: TLS certificate of {self.host}:{self.port} could not be "
                f"verified ({exc.verify_message}); if the server uses a private CA, set "
                "ca_file to its certificate"
            ) from None
        except ssl.SSLError as exc:
            raise EmailConnectionError(
                f"{self._prefix()}: TLS handshake with {self.host}:{self.port} failed "
                f"({exc.reason or exc}); check security and port"
            ) from None

    def _secret(self) -> str:
        """The password or access token, resolved once per run."""
        if self._credential is None:
            options = self._ctx.options
            if options.auth == "xoauth2":
                self._credential = self._stored("access token")
            elif options.has_password_source():
                self._credential = self._ctx.secret(
                    what=f"{self._prefix()}: password",
                    env=options.password_env,
                    command=options.password_command,
                    keyring_service=KEYRING_SERVICE if options.password_keyring else None,
                    keyring_user=self.username,
                )
            else:
                # No source in the options: the password kept on the Account
                # item (a Pod starting the importer, ``importer account add``).
                self._credential = self._stored("password")
        return self._credential

    def _stored(self, what: str) -> str:
        """The Account's password or token, if it was stored for this very mailbox.

        Accounts sharing an owner address share the Account item: what one
        of them stored must never reach another's server or login.
        """
        account = self._ctx.account
        bound = account.credentialsFor
        if bound is not None and bound != mailbox_url(self._ctx.options):
            remedy = (
                'auth = "xoauth2" needs a token stored for this mailbox'
                if what == "access token"
                else "set password_env, password_command or password_keyring for this account"
            )
            raise EmailAuthError(
                f"{self._prefix()}: no {what} for {self.username} at {self.host}:{self.port}: "
                f"the one stored on the Account item is for another mailbox ({bound}) and is "
                f"only ever sent there; {remedy}"
            )
        value = account.accessToken if what == "access token" else account.secret
        if value:
            return value
        if what == "access token":
            raise EmailAuthError(
                f'{self._prefix()}: auth = "xoauth2" needs an access token on the '
                "account, and none is set"
            )
        raise EmailError(
            f"{self._prefix()}: no password: set password_env, password_command or "
            "password_keyring, or store it as the Account's secret (importer account add)"
        )

    def _login(self, client: IMAPClient, secret: str) -> None:
        try:
            if self._ctx.options.auth == "xoauth2":
                client.oauth2_login(self.username, secret)
            else:
                client.login(self.username, secret)
        except LoginError as exc:
            reason = _text(exc).replace(secret, "***") or "no reason given"
            raise EmailAuthError(
                f"{self._prefix()}: IMAP login failed for {self.username} at {self.host}: {reason}"
            ) from None


def _text(exc: BaseException) -> str:
    """An imaplib/imapclient error as readable text (they often carry bytes)."""
    parts: list[str] = []
    for arg in exc.args:
        parts.append(arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg))
    text = " ".join(parts).strip()
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a network or protocol error."""
    text = _text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shutdown(client: Any) -> None:
    """Close the socket without talking to the server (it may be gone)."""
    with contextlib.suppress(Exception):
        client.shutdown()
