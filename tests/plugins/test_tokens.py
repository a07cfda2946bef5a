"""Connectors store refreshed tokens on their Account; prompts need a terminal."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from importer.context import InteractionRequired, RunContext
from importer.pod import open_embedded_client
from importer.schema import Account


class _Options(BaseModel):
    pass


async def test_store_account_writes_the_account_item(tmp_path: Path) -> None:
    async with open_embedded_client(tmp_path) as client:
        await client.create_account()
        account = Account(service="mail", handle="me@example.test", accessToken="old")
        await client.create_item(account.to_pod())

        async def store(props: dict[str, Any]) -> None:
            await client.update_item({"id": account.id, **props})

        ctx: RunContext[_Options] = RunContext(
            options=_Options(), account=account, account_name="me", connector_name="mail",
            _store_account=store,
        )  # fmt: skip
        await ctx.store_account(accessToken="new-access", refreshToken="new-refresh")
        stored = await client.get_item(str(account.id))
        assert stored is not None
        assert (stored["accessToken"], stored["refreshToken"]) == ("new-access", "new-refresh")
        assert ctx.account.accessToken == "new-access"

        # A sync fetch runs in a worker thread: the blocking variant.
        await anyio.to_thread.run_sync(lambda: ctx.store_account_blocking(accessToken="t3"))
        stored = await client.get_item(str(account.id))
        assert stored is not None and stored["accessToken"] == "t3"

        with pytest.raises(ValueError, match="importerState"):
            await ctx.store_account(importerState="{}")
        with pytest.raises(ValueError, match="no property"):
            await ctx.store_account(password="x")


def _ctx() -> RunContext[_Options]:
    return RunContext(
        options=_Options(), account=Account(service="mail", handle="me"),
        account_name="me", connector_name="mail",
    )  # fmt: skip


def test_prompt_without_a_terminal_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("123456\n"))
    with pytest.raises(InteractionRequired, match="needs a person at a terminal"):
        _ctx().prompt("2FA code: ", secret=True)


_SCRIPT = """
from pydantic import BaseModel
from importer.context import InteractionRequired, RunContext
from importer.schema import Account
class Options(BaseModel):
    pass
ctx = RunContext(options=Options(), account=Account(service="mail", handle="me"),
                 account_name="me", connector_name="mail")
try:
    code = ctx.prompt("2FA code: ", secret=True)
    url = ctx.prompt("Redirect URL: ")
except InteractionRequired as exc:
    print("REFUSED", exc)
else:
    print("GOT", code, url)
"""


def test_prompt_on_a_terminal_reads_the_answer() -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", _SCRIPT])
    output = b""

    def read_until(marker: bytes) -> None:
        nonlocal output
        deadline = time.monotonic() + 30
        while marker not in output:
            assert time.monotonic() < deadline, output
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    output += os.read(fd, 1024)
                except OSError:
                    break

    try:
        read_until(b"2FA code: ")
        os.write(fd, b"424242\n")
        read_until(b"Redirect URL: ")
        os.write(fd, b"https://example.test/cb?code=x\n")
        read_until(b"GOT 424242 https://example.test/cb?code=x\r\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    assert b"GOT 424242 https://example.test/cb?code=x" in output
    assert output.count(b"424242") == 1  # the secret answer was not echoed


def test_prompt_in_a_process_without_a_terminal_does_not_wait() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("REFUSED account me: 2FA code: this needs a person")
    assert time.monotonic() - started < 15
