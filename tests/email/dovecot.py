"""A private Dovecot IMAP server for the tests, plus a connection-dropping proxy.

The server runs in the foreground as a child process with its own config,
ports, users and Maildirs in a temporary directory, so tests talk to a real
IMAP implementation (CONDSTORE, special-use folders, TLS) without touching
the system's mail setup.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import trustme
from imapclient import IMAPClient

__all__ = ["PASSWORD", "DovecotServer", "DroppingProxy", "dovecot_available", "free_port"]

_HOST = "127.0.0.1"
_READY_TIMEOUT = 15.0
_USERS = 500
_PR_SET_PDEATHSIG = 1

PASSWORD = "secret-pw"
"""Every test user's password."""


def _program(name: str) -> str | None:
    """Where ``name`` is: on PATH, or in the sbin folders Debian installs Dovecot to
    (a PATH may leave them out: a user's default one, or a bare ``env -i``)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def dovecot_available() -> str | None:
    """Why the private server cannot run here, or None if it can."""
    if _program("dovecot") is None or _program("doveadm") is None:
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "the private Dovecot server needs root (it drops to dovecot/nobody itself)"
    for user in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} is missing (installed by dovecot-core)"
    return None


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Have the kernel stop Dovecot if the test process dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = {host}
default_internal_user = dovecot
default_login_user = dovenull
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
ssl = yes
ssl_cert = <{root}/tls/server-chain.pem
ssl_key = <{root}/tls/server-key.pem
mail_location = maildir:~/Maildir
# CONDSTORE and QRESYNC are built into Dovecot's imap: no plugin is needed.
mail_plugins = $mail_plugins
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
# No auth penalty (growing delays after failed logins from one IP): tests
# log in wrongly on purpose and must stay fast.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Archive {{
    special_use = \\Archive
  }}
}}
"""


@dataclass
class DovecotServer:
    """A running private Dovecot: a plain/STARTTLS port and an implicit-TLS port.

    Start it with :meth:`start` (a context manager); add a user per test with
    :meth:`add_user` so tests never see each other's mail.
    """

    root: Path
    host: str = _HOST
    port: int = 0
    tls_port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _users: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def ca_file(self) -> Path:
        """The PEM file of the test CA that signed the server certificate."""
        return self.root / "tls" / "ca.pem"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[DovecotServer]:
        """Configure, start and (on exit) stop a private server in a fresh directory."""
        # Not under pytest's tmp dir: that is root-only (0700), and the mail
        # processes run as nobody.
        root = Path(tempfile.mkdtemp(prefix="importer-dovecot-"))
        server = cls(root=root)
        try:
            server._configure()
            server._launch()
            yield server
        finally:
            server._stop()
            shutil.rmtree(root, ignore_errors=True)

    def _configure(self) -> None:
        nobody = pwd.getpwnam("nobody")
        self.root.chmod(0o755)
        for sub in ("run", "state", "tls"):
            (self.root / sub).mkdir()
        mail = self.root / "mail"
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        # All users up front: Dovecot re-reads a changed passwd-file at most
        # once a second, too slow for tests that each want a new user.
        (self.root / "passwd").write_text(
            "".join(f"user{n}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(1, _USERS + 1))
        )
        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.root / "tls" / "server-key.pem"))
        (self.root / "tls" / "server-chain.pem").write_bytes(
            b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        )
        self.port, self.tls_port = free_port(), free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.conf.write_text(
            _CONFIG.format(
                root=self.root,
                log=self.log_path,
                host=self.host,
                uid=nobody.pw_uid,
                gid=nobody.pw_gid,
                port=self.port,
                tls_port=self.tls_port,
            )
        )

    def _launch(self) -> None:
        with (self.root / "stdout.log").open("wb") as stdout:
            self._process = subprocess.Popen(
                [_program("dovecot") or "dovecot", "-F", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not self._ready():
            if self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not get ready in time:\n{self.log_text()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        """Both ports accept connections and the plain one greets with "* OK"."""
        try:
            socket.create_connection((self.host, self.tls_port), timeout=1).close()
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                greeting = b""
                while b"\r\n" not in greeting:
                    data = sock.recv(1024)
                    if not data:
                        return False
                    greeting += data
                return greeting.startswith(b"* OK")
        except OSError:
            return False

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_text(self) -> str:
        """Dovecot's log (and anything it printed before the log was open)."""
        parts = []
        for path in (self.root / "stdout.log", self.log_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    # -- users and mail --------------------------------------------------------

    def add_user(self) -> str:
        """A user (password :data:`PASSWORD`) with an empty mailbox, for one test only."""
        with self._lock:
            number = next(self._users)
        if number > _USERS:
            raise RuntimeError(f"the test server has only {_USERS} users")
        return f"user{number}"

    def imap_options(self, user: str, address: str, **extra: Any) -> dict[str, Any]:
        """Email connector options for ``user``'s mailbox here (plain IMAP on loopback)."""
        return {
            "source": "imap",
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username": user,
            "address": address,
            **extra,
        }

    @contextlib.contextmanager
    def client(self, user: str, password: str = PASSWORD) -> Iterator[IMAPClient]:
        """A logged-in plain IMAP connection as ``user`` (for setting up mail)."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        try:
            client.login(user, password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as client:
            client.create_folder(folder)

    def append(
        self,
        user: str,
        folder: str,
        messages: Iterable[bytes],
        *,
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
    ) -> list[int]:
        """Append ``messages`` to ``folder`` (created if missing); their UIDs."""
        uids: list[int] = []
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                response = client.append(folder, raw, flags=flags, msg_time=internal_date)
                # "[APPENDUID <uidvalidity> <uid>] Append completed."
                text = response.decode() if isinstance(response, bytes) else str(response)
                uids.append(int(text.split("]", 1)[0].split()[-1]))
        return uids

    def set_flags(self, user: str, folder: str, uids: Sequence[int], flags: Sequence[str]) -> None:
        with self.client(user) as client:
            client.select_folder(folder)
            client.add_flags(list(uids), list(flags))

    def clear_flags(
        self, user: str, folder: str, uids: Sequence[int], flags: Sequence[str]
    ) -> None:
        with self.client(user) as client:
            client.select_folder(folder)
            client.remove_flags(list(uids), list(flags))

    def expunge(self, user: str, folder: str, uids: Sequence[int]) -> None:
        """Delete messages for good (as another mail client would)."""
        with self.client(user) as client:
            client.select_folder(folder)
            client.delete_messages(list(uids))
            client.uid_expunge(list(uids))

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.client(user) as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
            return int(status[b"UIDVALIDITY"])

    def set_uidvalidity(self, user: str, folder: str, value: int) -> None:
        """Change a folder's UIDVALIDITY, as a server does when it renumbers."""
        subprocess.run(
            [
                _program("doveadm") or "doveadm",
                "-c",
                str(self.conf),
                "mailbox",
                "update",
                "--uid-validity",
                str(value),
                "-u",
                user,
                folder,
            ],
            check=True,
            capture_output=True,
        )


class DroppingProxy:
    """A loopback TCP proxy to ``target`` that can cut connections mid-response.

    :meth:`drop_after` arms it: the next ``times`` connections are closed once
    the server has sent them ``nbytes`` bytes (the client gets a truncated
    response, as when a server or network fails in the middle of a FETCH).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server((_HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self.host = _HOST
        self._lock = threading.Lock()
        self._drop_after: int | None = None
        self._drops_left = 0
        self.drops = 0
        """How many connections the proxy has cut so far."""
        self.connections = 0
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def drop_after(self, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._drop_after = nbytes
            self._drops_left = times

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DroppingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                limit = self._drop_after if self._drops_left > 0 else None
                if limit is not None:
                    self._drops_left -= 1
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, limit), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(0, limit - sent)])
                    with self._lock:
                        self.drops += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
