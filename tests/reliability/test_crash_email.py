"""Exactly once over IMAP when the importer, or the Pod it writes to, is SIGKILLed.

A private Dovecot serves generated mail (attachments, replies, two folders);
``python -m importer run email`` imports it while the suite kills processes at
seeded random moments. After each kill the checkpoint must not be ahead of the
data; at the end the Pod must equal a clean reference import of the same mailbox.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from connectors.email._imap_streams import folder_stream
from connectors.email.mapping import message_item_id
from connectors.email.options import EmailOptions
from importer.pod import PodClient, open_embedded_client
from importer.testing import PodSnapshot
from tests.email.dovecot import PASSWORD, DovecotServer

from ._harness import (
    SEED,
    Corpus,
    KillWindow,
    PodServer,
    RemoteOwner,
    assert_files_exact,
    assert_messages_once,
    assert_same_data,
    base_env,
    checkpoints,
    edge_counts,
    make_corpus,
    pod_server,
    read_embedded,
    read_remote,
    report,
    run_to_end,
    scaled,
    sigkill,
    start,
)

FOLDERS = ("INBOX", "Archive")
IMPORTER_KILLS = 20
POD_KILLS = scaled(10, minimum=2)


@dataclass
class Mailbox:
    """An IMAP user receiving a corpus (7 in 10 messages to INBOX, the rest to
    Archive), and which UID holds which message."""

    server: DovecotServer
    user: str
    corpus: Corpus
    uids: dict[str, dict[int, str]] = field(default_factory=lambda: {f: {} for f in FOLDERS})
    """folder -> UID -> EmailMessage item id."""

    def deliver(self, numbers: range) -> None:
        for folder in FOLDERS:
            part = [n for n in numbers if (folder == FOLDERS[0]) == (n % 10 < 7)]
            appended = self.server.append(self.user, folder, [self.corpus.raw[n] for n in part])
            for uid, n in zip(appended, part, strict=True):
                self.uids[folder][uid] = message_item_id(self.corpus.ids[n])

    def beyond(self, last_uids: dict[str, int]) -> int:
        """How many messages lie past the checkpoints ``last_uids`` (folder -> UID)."""
        return sum(
            sum(1 for uid in by_uid if uid > last_uids.get(folder, 0))
            for folder, by_uid in self.uids.items()
        )

    def stream(self, folder: str) -> str:
        """The checkpoint stream of ``folder`` (see :meth:`run_args`)."""
        options = EmailOptions(
            source="imap",
            host=self.server.host,
            port=self.server.port,
            security="none",
            username=self.user,
        )
        return folder_stream(options, folder)

    @property
    def delivered(self) -> int:
        return sum(len(by_uid) for by_uid in self.uids.values())

    def run_args(self) -> list[str]:
        return [
            "run",
            "email",
            "--imap-host",
            self.server.host,
            "--imap-port",
            str(self.server.port),
            "--imap-user",
            self.user,
            "--imap-security",
            "none",
            # A checkpoint per 100 UIDs (500 by default), so kills also land after
            # checkpoints and the "never ahead of the data" check has work to do.
            "-o",
            "chunk_size=100",
        ]


def mailbox_of(server: DovecotServer, corpus: Corpus, delivered: int | None = None) -> Mailbox:
    """A fresh user holding the first ``delivered`` messages (all by default)."""
    mailbox = Mailbox(server, server.add_user(), corpus)
    mailbox.deliver(range(len(corpus.ids) if delivered is None else delivered))
    return mailbox


def assert_checkpoint_not_ahead(mailbox: Mailbox, snap: PodSnapshot) -> dict[str, int]:
    """Every UID at or below a folder's checkpointed ``last_uid`` has its message."""
    states = checkpoints(snap)
    present = {m["id"] for m in snap.of_type("EmailMessage")}
    reached: dict[str, int] = {}
    for folder, by_uid in mailbox.uids.items():
        last_uid = int(states.get(mailbox.stream(folder), {}).get("last_uid", 0))
        reached[folder] = last_uid
        lost = [uid for uid, item in by_uid.items() if uid <= last_uid and item not in present]
        assert not lost, f"{folder}: checkpoint at UID {last_uid} but UIDs {lost[:5]} missing"
    return reached


async def reference_import(mailbox: Mailbox, home: Path) -> tuple[PodSnapshot, float, float]:
    """A clean import (timed) and an immediate re-run (timed: the fixed cost of a run)."""
    env = base_env(home, IMPORTER_IMAP_PASSWORD=PASSWORD)
    clean = run_to_end(mailbox.run_args(), env, home / "run.log")
    idle = run_to_end(mailbox.run_args(), env, home / "run.log")
    snap = await read_embedded(home / "data")
    assert_messages_once(snap, mailbox.corpus.item_ids)
    return snap, clean, idle


async def assert_equals_reference(
    mailbox: Mailbox, landed: PodSnapshot, reference: PodSnapshot, client: PodClient
) -> None:
    assert_messages_once(landed, mailbox.corpus.item_ids)
    assert edge_counts(landed) == edge_counts(reference)
    assert_same_data(landed, reference)
    await assert_files_exact(client, landed, mailbox.corpus)
    assert not landed.of_type("PendingEdge"), "pending edges left although every message landed"


@pytest.mark.slow
async def test_sigkilled_imap_imports_end_with_exactly_the_mailbox(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    count = scaled(1000, minimum=50)
    corpus = make_corpus(0, count, rng)
    # Timed on a copy of the whole mailbox; the reference itself is a clean import
    # of the crash user's mailbox at the end (labels and dates are per mailbox).
    _, clean, idle = await reference_import(mailbox_of(dovecot, corpus), tmp_path / "timing")
    report(f"imap crash: {count} messages, clean run {clean:.1f}s, idle run {idle:.1f}s")
    # The crashed import starts with half of the mail; whenever everything delivered
    # is checkpointed, a wave of new mail arrives, so every run has work to be
    # killed in. A run's expected length is estimated from the clean run's pace.
    per_message = (clean - idle) / count
    wave = max(1, count // 10)
    mailbox = mailbox_of(dovecot, corpus, count // 2)
    waves = iter(range(count // 2, count, wave))

    home = tmp_path / "crashy"
    env = base_env(home, IMPORTER_IMAP_PASSWORD=PASSWORD)
    kills, reached = 0, {folder: 0 for folder in FOLDERS}
    checkpointed_during_kills = False
    window = KillWindow(rng, idle, per_message)
    for trial in range(IMPORTER_KILLS):
        if not mailbox.beyond(reached) and (first := next(waves, None)) is not None:
            mailbox.deliver(range(first, min(count, first + wave)))
        delay = window.delay(mailbox.beyond(reached))
        proc = start(mailbox.run_args(), env, home / "run.log")
        await anyio.sleep(delay)
        killed = sigkill(proc)
        kills += killed
        snap = await read_embedded(home / "data")
        reached = assert_checkpoint_not_ahead(mailbox, snap)
        window.observed(len(snap.of_type("EmailMessage")), reached, mailbox.beyond(reached))
        checkpointed_during_kills |= bool(killed) and any(reached.values())
        report(
            f"trial {trial}: {'killed' if killed else 'ended'} after {delay:.2f}s, "
            f"{len(snap.of_type('EmailMessage'))}/{mailbox.delivered} messages, "
            f"{len(snap.of_type('File'))} files, checkpoint last_uid {reached}"
        )
    mailbox.deliver(range(next(waves, count), count))
    run_to_end(mailbox.run_args(), env, home / "run.log")
    reference, _, _ = await reference_import(mailbox, tmp_path / "reference")

    landed = await read_embedded(home / "data")
    # Runs that end are how stalled trials move on; most runs must still be killed,
    # and the kills must have met written checkpoints, not only start-ups.
    assert kills >= IMPORTER_KILLS // 2, "too many runs ended before they could be killed"
    assert checkpointed_during_kills, "no checkpoint was written before the final run"
    async with open_embedded_client(home / "data") as client:
        await assert_equals_reference(mailbox, landed, reference, client)
    report(f"imap crash: {kills} kills, Pod exact: {edge_counts(landed)}")


@pytest.mark.slow
async def test_sigkilled_pod_server_ends_with_exactly_the_mailbox(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    count = scaled(600, minimum=50)
    corpus = make_corpus(0, count, rng)
    _, clean, idle = await reference_import(mailbox_of(dovecot, corpus), tmp_path / "timing")
    report(f"pod crash: {count} messages, clean run {clean:.1f}s, idle run {idle:.1f}s")
    # As above: half the mail first, a wave of new mail whenever all is checkpointed.
    per_message = (clean - idle) / count
    wave = max(1, count // 10)
    mailbox = mailbox_of(dovecot, corpus, count // 2)
    waves = iter(range(count // 2, count, wave))
    reached = {folder: 0 for folder in FOLDERS}

    home = tmp_path / "served"
    owner = RemoteOwner(secrets.token_hex(32), secrets.token_hex(32))
    config = home / "config.toml"
    home.mkdir()
    # Few retries, so a run whose Pod died gives up in seconds.
    config.write_text("[pod]\nmax_attempts = 3\nmax_retry_seconds = 2\n")
    with pod_server(home / "pod", home / "pod.log") as server:
        env = base_env(
            home,
            IMPORTER_IMAP_PASSWORD=PASSWORD,
            IMPORTER_CONFIG=str(config),
            **owner.env(server.url),
        )
        kills, failed = 0, 0
        window = KillWindow(rng, idle, per_message)
        for trial in range(POD_KILLS):
            if not mailbox.beyond(reached) and (first := next(waves, None)) is not None:
                mailbox.deliver(range(first, min(count, first + wave)))
            proc = start(mailbox.run_args(), env, home / "run.log")
            delay = window.delay(mailbox.beyond(reached))
            await anyio.sleep(delay)
            killed = server.kill()
            kills += killed
            code = await anyio.to_thread.run_sync(proc.wait)
            failed += code != 0
            server.start()
            snap = await _read(owner, server)
            reached = assert_checkpoint_not_ahead(mailbox, snap)
            window.observed(len(snap.of_type("EmailMessage")), reached, mailbox.beyond(reached))
            report(
                f"pod trial {trial}: pod killed after {delay:.2f}s, importer exit {code}, "
                f"{len(snap.of_type('EmailMessage'))}/{count} messages, last_uid {reached}"
            )
        mailbox.deliver(range(next(waves, count), count))
        run_to_end(mailbox.run_args(), env, home / "run.log")
        reference, _, _ = await reference_import(mailbox, tmp_path / "reference")
        async with owner.client(server.url) as client:
            landed = await read_remote(client)
            await assert_equals_reference(mailbox, landed, reference, client)
    assert kills == POD_KILLS
    assert failed, "no import was running when its Pod was killed"
    counts = edge_counts(landed)
    report(f"pod crash: {kills} Pod kills, {failed} imports failed with it, Pod exact: {counts}")


async def _read(owner: RemoteOwner, server: PodServer) -> PodSnapshot:
    async with owner.client(server.url) as client:
        return await read_remote(client)
