"""Progress while a run goes: a rich bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .context import RunContext
from .engine import RunStats

log = logging.getLogger("importer")

ProgressCallback = Callable[[RunStats, RunContext[Any]], None]

_LOG_EVERY = 30.0


@contextmanager
def progress_reporter(account: str, log_format: str) -> Iterator[ProgressCallback]:
    if log_format == "text" and sys.stderr.isatty():
        with _bar(account) as callback:
            yield callback
    else:
        yield _log_lines(account)


def _log_lines(account: str) -> ProgressCallback:
    last = time.monotonic()

    def report(stats: RunStats, ctx: RunContext[Any]) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < _LOG_EVERY:
            return
        last = now
        fraction = ctx.progress_fraction()
        done = f" ({fraction:.0%})" if fraction is not None else ""
        log.info("%s: %s so far%s", account, stats.summary(), done)

    return report


@contextmanager
def _bar(account: str) -> Iterator[ProgressCallback]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(account, total=None, detail="starting")

        def report(stats: RunStats, ctx: RunContext[Any]) -> None:
            fraction = ctx.progress_fraction()
            bar.update(
                task,
                total=100 if fraction is not None else None,
                completed=(fraction or 0) * 100,
                detail=f"{stats.created} new, {stats.unchanged} known",
            )

        yield report
