"""Shared helpers of the reliability suites: seeded corpora, real processes, Pod reads.

Every suite runs the real command line (``python -m importer ...``) in child
processes and kills them with SIGKILL, so what is checked is what a user gets.
Sizes scale with ``IMPORTER_RELIABILITY_SCALE`` (1 = the CI default) and the
random choices follow ``IMPORTER_RELIABILITY_SEED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.email.mapping import message_item_id
from importer.pod import ClientAuth, PodClient, RetryPolicy, load_keys, open_embedded_client
from importer.testing import PodSnapshot, snapshot, wait_until_serving
from tests.email.corpus import make_message, message_id

ROOT = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("IMPORTER_RELIABILITY_SCALE", "1"))
SEED = int(os.environ.get("IMPORTER_RELIABILITY_SEED", "20261127"))
_READ_RETRY = RetryPolicy(max_attempts=3, max_elapsed=10)


def scaled(default: int, minimum: int = 1) -> int:
    """``default`` times the scale factor (at least ``minimum``)."""
    return max(minimum, round(default * SCALE))


def report(line: str) -> None:
    """A figure for the test output (``pytest -s`` or the captured output of a failure)."""
    print(f"[reliability] {line}", flush=True)


# -- corpus -----------------------------------------------------------------------


@dataclass
class Corpus:
    """Generated messages, their Message-IDs and the attachments they carry."""

    raw: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    attachments: dict[str, bytes] = field(default_factory=dict)
    """sha256 -> content of every distinct attachment."""
    names: dict[str, set[str]] = field(default_factory=dict)
    """sha256 -> the file names it is attached under (a File keeps the first one written)."""

    @property
    def item_ids(self) -> set[str]:
        return {message_item_id(mid) for mid in self.ids}


def make_corpus(start: int, count: int, rng: random.Random) -> Corpus:
    """``count`` messages numbered from ``start``: about one in six carries an
    attachment (some shared, so File dedup is exercised), one in four replies to
    another message of the range — sometimes to a later one, so pending edges occur."""
    corpus = Corpus()
    shared = [rng.randbytes(rng.randint(200, 3000)) for _ in range(3)]
    for n in range(count):
        i = start + n
        attachment: bytes | None = None
        if n % 6 == 5:
            attachment = (
                rng.choice(shared)
                if rng.random() < 0.3
                else rng.randbytes(rng.randint(100, 20_000))
            )
            digest = hashlib.sha256(attachment).hexdigest()
            corpus.attachments[digest] = attachment
            corpus.names.setdefault(digest, set()).add(f"file{i}.bin")
        reply_to: int | None = None
        if n % 4 == 3 and count > 1:
            other = rng.randrange(count)
            reply_to = start + other if other != n else None
        corpus.raw.append(
            make_message(
                i,
                reply_to=reply_to,
                attachment=attachment,
                attachment_name=f"file{i}.bin",
            )
        )
        corpus.ids.append(message_id(i))
    return corpus


# -- processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The importer's environment: its own data dir, no user config, no Pod settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORTER_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "xdg"),
        IMPORTER_DATA_DIR=str(home / "data"),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m importer ARGS`` with its output appended to ``log`` (never a pipe
    that could fill up and stall the child)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "importer", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def sigkill(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL ``proc`` if it still runs; whether it was killed (not already done)."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def run_to_end(args: list[str], env: dict[str, str], log: Path) -> float:
    """``python -m importer ARGS`` to its end, which must be a success; how long it took."""
    began = time.monotonic()
    proc = start(args, env, log)
    code = proc.wait(timeout=600)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    return time.monotonic() - began


class PodServer:
    """``python -m importer pod serve`` in a child process that can be SIGKILLed and restarted."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        args = ["pod", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.proc = start([*args, "--no-plugins"], base_env(self.data_dir.parent), self.log)
        self.starts += 1
        proc = self.proc
        wait_until_serving(
            self.url,
            lambda: proc.poll() is None,
            output=lambda: self.log.read_text(errors="replace"),
        )

    def kill(self) -> bool:
        return self.proc is not None and sigkill(self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                sigkill(self.proc)


@contextmanager
def pod_server(data_dir: Path, log: Path) -> Iterator[PodServer]:
    server = PodServer(data_dir, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if server.proc is not None:
            sigkill(server.proc)


@dataclass(frozen=True)
class RemoteOwner:
    """An owner of a served Pod: keys for ``IMPORTER_POD_*`` and for reading it back."""

    owner_key: str
    database_key: str = field(repr=False)

    def env(self, url: str) -> dict[str, str]:
        return {
            "IMPORTER_POD_URL": url,
            "IMPORTER_POD_OWNER_KEY": self.owner_key,
            "IMPORTER_POD_DATABASE_KEY": self.database_key,
        }

    def client(self, url: str) -> PodClient:
        return PodClient(url, self.owner_key, ClientAuth(self.database_key), retry=_READ_RETRY)


class KillWindow:
    """When to kill the next run: from just before it starts working to about
    the end of its work.

    Kills land in start-up, reads of the source, bulks, checkpoint writes and
    uploads.  A run's work is estimated from the clean run's pace and the
    records (messages, files) past the checkpoint, and the window ends before
    the run's wind-down: a kill after it would find the run gone.  A run after
    a kill that left records in the Pod past the checkpoint first re-checks
    them (its first bulks are refused and resent), which that estimate misses:
    so every trial that changed nothing (the same records, the same
    checkpoint) while there was work to do stretches the next window by a
    quarter of an idle run until one makes progress.  Otherwise the kills
    would land in start-up again and again, and no checkpoint would ever be
    written.
    """

    def __init__(
        self,
        rng: random.Random,
        idle: float,
        per_record: float,
        *,
        early: float = 0.6,
        late: float = 0.8,
    ) -> None:
        self.rng = rng
        self.idle = idle
        self.per_record = per_record
        self.early = early
        """The window opens at this fraction of an idle run (about where start-up ends)."""
        self.late = late
        """The window closes at this fraction of an idle run plus the estimated work."""
        self.stalls = 0
        self._last: tuple[int, tuple[tuple[str, int], ...]] | None = None

    def delay(self, beyond: int) -> float:
        """The next kill's delay, for a run with ``beyond`` records past the checkpoint."""
        work = self.per_record * beyond
        stretch = self.stalls * self.idle * 0.25
        end = (self.idle + work) * self.late + stretch
        return self.rng.uniform(self.idle * self.early, end)

    def observed(self, landed: int, reached: dict[str, int], beyond: int) -> None:
        """What the Pod held after the trial (``landed`` records, the checkpoints'
        progress per stream), and how many records the checkpoints have yet to
        cover (none: nothing to make progress on)."""
        state = (landed, tuple(sorted(reached.items())))
        self.stalls = self.stalls + 1 if beyond and state == self._last else 0
        self._last = state


# -- reading the Pod --------------------------------------------------------------


async def read_embedded(data_dir: Path) -> PodSnapshot:
    """Everything in the embedded Pod of ``data_dir`` (bookkeeping included), read
    in-process once no importer runs on it."""
    load_keys(data_dir)
    async with open_embedded_client(data_dir, retry=_READ_RETRY) as client:
        await client.create_account()
        return await snapshot(client, include_bookkeeping=True)


async def read_remote(client: PodClient) -> PodSnapshot:
    return await snapshot(client, include_bookkeeping=True)


def comparable(snap: PodSnapshot) -> tuple[dict[str, dict[str, Any]], dict[Any, int]]:
    """As :meth:`PodSnapshot.comparable`, without the importer's bookkeeping items, and
    without a File's ``filename``: content shared by several attachments keeps the
    name of whichever bulk created it first, which concurrent or retried bulks reorder
    (:func:`assert_files_exact` checks the name is one of the right ones)."""
    from importer.testing import BOOKKEEPING_TYPES

    plain = PodSnapshot()
    plain.items = {
        k: {p: v for p, v in item.items() if not (item.get("type") == "File" and p == "filename")}
        for k, item in snap.items.items()
        if item.get("type") not in BOOKKEEPING_TYPES
    }
    plain.edges = snap.edges.copy()
    for edge in list(plain.edges):
        if edge[0] not in plain.items:
            del plain.edges[edge]
    return plain.comparable()


def assert_same_data(landed: PodSnapshot, reference: PodSnapshot) -> None:
    """Items (without server-set fields) and edges equal; the message names what differs."""
    (items, edges), (ref_items, ref_edges) = comparable(landed), comparable(reference)
    missing = sorted(set(ref_items) - set(items))
    extra = sorted(set(items) - set(ref_items))
    changed = [
        (ref_items[k], items[k]) for k in set(items) & set(ref_items) if items[k] != ref_items[k]
    ]
    lost_edges = sorted(set(ref_edges) - set(edges))
    extra_edges = sorted(set(edges) - set(ref_edges))
    counted = [e for e in set(edges) & set(ref_edges) if edges[e] != ref_edges[e]]
    assert not (missing or extra or changed or lost_edges or extra_edges or counted), (
        f"missing items {missing[:3]}, extra items {extra[:3]}, "
        f"{len(changed)} changed (first: {changed[:1]}), missing edges {lost_edges[:3]}, "
        f"extra edges {extra_edges[:3]}, edges with other counts {counted[:3]}"
    )


def checkpoints(snap: PodSnapshot, connector: str = "email") -> dict[str, dict[str, Any]]:
    """stream -> state of ``connector`` over every Account's ``importerState``."""
    found: dict[str, dict[str, Any]] = {}
    for account in snap.of_type("Account"):
        raw = account.get("importerState")
        if not raw:
            continue
        state = json.loads(raw) if isinstance(raw, str) else raw
        found.update(state.get(connector, {}))
    return found


def edge_counts(snap: PodSnapshot) -> dict[str, int]:
    """How many edges of each name (among non-bookkeeping items)."""
    _, edges = comparable(snap)
    counts: dict[str, int] = {}
    for (_, name, _), n in edges.items():
        counts[name] = counts.get(name, 0) + n
    return counts


def assert_messages_once(snap: PodSnapshot, expected: set[str]) -> None:
    """Every expected message is in the Pod, exactly once, and nothing else is."""
    landed = [m["id"] for m in snap.of_type("EmailMessage")]
    assert len(landed) == len(set(landed)), "an EmailMessage id appears twice"
    missing, extra = expected - set(landed), set(landed) - expected
    assert not missing and not extra, f"{len(missing)} messages missing, {len(extra)} extra"


async def assert_files_exact(client: PodClient, snap: PodSnapshot, corpus: Corpus) -> None:
    """One File per distinct attachment, named as one of its attachments, holding
    exactly its bytes."""
    files = snap.of_type("File")
    hashes = [f.get("sha256") for f in files]
    assert len(hashes) == len(set(hashes)), "a File appears twice"
    assert set(hashes) == set(corpus.attachments), "the File items differ from the attachments"
    for item in files:
        assert item.get("filename") in corpus.names[str(item["sha256"])], item
    for digest, content in corpus.attachments.items():
        assert await client.get_file(digest) == content, f"file {digest[:12]} has wrong content"


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    began = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - began


def merge(corpora: Iterable[Corpus]) -> Corpus:
    """One corpus holding the messages and attachments of several."""
    merged = Corpus()
    for corpus in corpora:
        merged.raw += corpus.raw
        merged.ids += corpus.ids
        merged.attachments.update(corpus.attachments)
        for digest, names in corpus.names.items():
            merged.names.setdefault(digest, set()).update(names)
    return merged
