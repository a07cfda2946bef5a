"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.email.dovecot import DovecotServer, dovecot_available

ROOT = Path(__file__).resolve().parents[1]

# Processes the tests start (``python -m importer ...``, a served Pod) import
# this checkout's code, whatever their working directory and whatever
# ``importer`` the environment has installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One private Dovecot for the whole session; tests isolate themselves by user."""
    reason = dovecot_available()
    if reason is not None:
        # CI installs Dovecot (.ci/apt-packages.txt): there, its absence is a failure.
        if os.environ.get("CI") or os.environ.get("IMPORTER_REQUIRE_DOVECOT"):
            pytest.fail(f"Dovecot is required here: {reason}")
        pytest.skip(reason)
    with DovecotServer.start() as server:
        yield server
