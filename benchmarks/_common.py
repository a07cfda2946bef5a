"""Shared benchmark plumbing: timing, peak memory (own and of child processes), output.

Every figure a benchmark prints is compared with a floor measured in the same
run, so the ratios hold on any machine; :func:`report_ratio` prints them as
``ratio NAME: VALUE (goal OP TARGET: met|MISSED)`` lines that the smoke test
looks for.

Peak RSS of a child is polled while it runs (every 20 ms): the kernel's
high-water mark of the process (``VmHWM``, which catches spikes between
polls) plus the RSS of its own children.  ``wait4``'s ``ru_maxrss`` is not
used: Linux carries the parent's RSS at fork into the child's figure across
``exec``, so a child of a big benchmark process would look as big as it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil

from importer.testing import wait_until_serving

__all__ = [
    "ChildProcess",
    "ChildRun",
    "MiB",
    "RssMonitor",
    "Stopwatch",
    "bench_parser",
    "child_env",
    "free_port",
    "machine_line",
    "peak_rss_self",
    "print_table",
    "report_ratio",
    "run_child",
    "stopwatch",
]

MiB = 1 << 20
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stopwatch:
    """Elapsed wall time of a ``with stopwatch()`` block (set on exit)."""

    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    started = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - started


def peak_rss_self() -> int:
    """This process's peak resident set size so far, in bytes (Linux: KiB in rusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _high_water_mark(pid: int) -> int:
    """The kernel's peak RSS of a live process (``VmHWM``), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from the kernel's per-thread ``children`` lists.

    Reading a few small files costs far less than walking every process in
    ``/proc`` (what psutil does), which matters when the monitor shares a
    process — and its GIL — with the work being measured.
    """
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.extend(int(child) for child in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


class RssMonitor:
    """Polls the peak RSS of a process (plus its descendants') in a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._per_thread_children = os.path.exists(
            f"/proc/{os.getpid()}/task/{os.getpid()}/children"
        )

    def _descendants(self, process: psutil.Process) -> list[int]:
        if not self._per_thread_children:
            return [child.pid for child in process.children(recursive=True)]
        found: list[int] = []
        todo = [self.pid]
        while todo:
            children = _children(todo.pop())
            found.extend(children)
            todo.extend(children)
        return found

    def _sample(self, process: psutil.Process) -> int:
        total = max(process.memory_info().rss, _high_water_mark(process.pid))
        for pid in self._descendants(process):
            with suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return int(total)

    def _run(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._sample(process))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class ChildRun:
    """How a child process ended: exit code, wall time, peak RSS and its output."""

    returncode: int
    seconds: float
    peak_rss: int
    stdout: str = ""
    stderr: str = ""

    def check(self, what: str) -> Self:
        """Raise with the child's output if it failed."""
        if self.returncode != 0:
            raise RuntimeError(
                f"{what} exited {self.returncode}\nstdout:\n{self.stdout[-3000:]}\n"
                f"stderr:\n{self.stderr[-3000:]}"
            )
        return self


@dataclass
class ChildProcess:
    """A child process whose peak memory is watched from start to end."""

    args: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _monitor: RssMonitor | None = field(default=None, repr=False)
    _out: IO[bytes] | None = field(default=None, repr=False)
    _err: IO[bytes] | None = field(default=None, repr=False)
    _started: float = 0.0

    def start(self) -> Self:
        # Kept open until wait() reads them back, so no context manager here.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._started = time.perf_counter()
        self._popen = subprocess.Popen(
            list(self.args),
            env=dict(self.env) if self.env is not None else None,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )
        self._monitor = RssMonitor(self._popen.pid).start()
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    @property
    def rss_so_far(self) -> int:
        """The peak RSS polled so far (the process is still running)."""
        return self._monitor.peak if self._monitor is not None else 0

    def alive(self) -> bool:
        assert self._popen is not None
        return self._popen.returncode is None and self._popen.poll() is None

    def wait(self, timeout: float | None = None) -> ChildRun:
        """Reap the child (killing it after ``timeout`` seconds) and say how it went."""
        popen, monitor = self._popen, self._monitor
        assert popen is not None and monitor is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(popen.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                popen.kill()
                deadline = None
            time.sleep(0.02)
        seconds = time.perf_counter() - self._started
        popen.returncode = os.waitstatus_to_exitcode(status)
        return ChildRun(
            popen.returncode,
            seconds,
            monitor.stop(),
            _read(self._out),
            _read(self._err),
        )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> ChildRun:
        """Ask a server to shut down (``sig``), then reap it."""
        if self.alive():
            os.kill(self.pid, sig)
        return self.wait(timeout)


def _read(handle: IO[bytes] | None) -> str:
    if handle is None:
        return ""
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace")
    handle.close()
    return text


def run_child(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> ChildRun:
    """Run a command to its end, measuring wall time and peak RSS."""
    return ChildProcess(args, env=env, cwd=cwd).start().wait(timeout)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a benchmark child: this one, the project importable, plus ``extra``."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (seconds), not a measurement"
    )
    return parser


def machine_line() -> str:
    """Date, cores and software, printed at the top of every benchmark."""
    today = datetime.date.today().isoformat()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{today} | {os.cpu_count()} cores ({cpu}) | "
        f"{psutil.virtual_memory().total // MiB} MiB RAM | Python {platform.python_version()}"
    )


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (so the output can go straight into the docs)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h)
        for i, h in enumerate(headers)
    ]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report_ratio(name: str, value: float, op: str, goal: float, *, unit: str = "") -> bool:
    """Print ``ratio NAME: VALUE (goal OP GOAL: met|MISSED)``; whether the goal is met."""
    if op == ">=":
        met = value >= goal
    elif op == "<=":
        met = value <= goal
    elif op == "<":
        met = value < goal
    else:
        raise ValueError(f"unknown comparison {op!r}")
    suffix = f" {unit}" if unit else ""
    print(
        f"ratio {name}: {value:.3g}{suffix} (goal {op} {goal:g}{suffix}: "
        f"{'met' if met else 'MISSED'})",
        flush=True,
    )
    return met


@dataclass
class ServedPod:
    url: str
    server: ChildProcess
    run: ChildRun | None = None


@contextmanager
def served_pod(directory: Path) -> Iterator[ServedPod]:
    """``python -m importer pod serve`` on a free port in a child process, stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    config.write_text("")
    port = free_port()
    server = ChildProcess(
        [
            sys.executable,
            "-m",
            "importer",
            "pod",
            "serve",
            "--data-dir",
            str(directory / "served"),
            "--port",
            str(port),
        ],
        env=child_env(IMPORTER_CONFIG=str(config)),
    ).start()
    served = ServedPod(f"http://127.0.0.1:{port}", server)
    try:
        wait_until_serving(served.url, server.alive)
        yield served
    finally:
        served.run = server.stop()
    if served.run.returncode not in (0, -2, 130):
        raise RuntimeError(
            f"the Pod server exited {served.run.returncode}: {served.run.stderr[-2000:]}"
        )
