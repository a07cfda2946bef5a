"""Fixtures for the email tests: a private Dovecot server shared by the session."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from .dovecot import DovecotServer, DroppingProxy

_LOG_OFFSET = pytest.StashKey[int]()
_SERVER = pytest.StashKey[DovecotServer]()


@pytest.fixture
def imap_user(dovecot: DovecotServer, request: pytest.FixtureRequest) -> str:
    """A fresh IMAP user (password ``dovecot.PASSWORD``) with an empty mailbox."""
    request.node.stash[_SERVER] = dovecot
    request.node.stash[_LOG_OFFSET] = (
        dovecot.log_path.stat().st_size if dovecot.log_path.exists() else 0
    )
    return dovecot.add_user()


@pytest.fixture
def dropping_proxy(dovecot: DovecotServer) -> Iterator[DroppingProxy]:
    """A proxy in front of Dovecot's plain port that can cut connections."""
    with DroppingProxy((dovecot.host, dovecot.port)) as proxy:
        yield proxy


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach what Dovecot logged during a failed test to its report."""
    report = yield
    server = item.stash.get(_SERVER, None)
    if report.failed and server is not None and server.log_path.exists():
        offset = item.stash.get(_LOG_OFFSET, 0)
        with server.log_path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        report.sections.append(("dovecot log", text or "(nothing logged)"))
    return report
