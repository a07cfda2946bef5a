"""The email connector end to end, against parsing the same mail with the stdlib.

N generated messages (``tests/email/corpus.py``: plain, Latin-1, alternative
and HTML-only bodies, attachments on some, replies, Cc) in an mbox, imported
by ``python -m importer run email --mbox PATH`` as a whole process into a
fresh embedded Pod (``IMPORTER_DATA_DIR``).  Measured in the same run:

* the parse-only floor: the same mbox read with ``mailbox`` and every message
  parsed with ``email`` (policy.default): headers, addresses, body text;
* a no-op incremental run (nothing new) on N and on N/10 messages;
* the importer's peak RSS on N and on N/10 messages (kernel high-water mark);
* with ``--imap``: the same N messages appended to a private Dovecot
  (``tests/email/dovecot.py``; needs dovecot installed and root) and imported
  over IMAP.  Off by default: appending 20k messages alone takes minutes.

    python -m benchmarks.email            # 20k messages (2k for the small runs)
    python -m benchmarks.email --imap     # the same, plus the IMAP import
    python -m benchmarks.email --quick    # 400 / 40, a smoke run
"""

from __future__ import annotations

import email.parser
import email.policy
import mailbox
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.email import corpus

from ._common import (
    ChildRun,
    MiB,
    bench_parser,
    child_env,
    machine_line,
    print_table,
    report_ratio,
    run_child,
    stopwatch,
)

_GOAL_VS_FLOOR = 1.5
_GOAL_NOOP_SCALING = 1.2
_GOAL_NOOP_SHARE = 0.05
_GOAL_RSS_SCALING = 1.3
_NOOP_RUNS = 3
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")


def message(i: int) -> bytes:
    """Message ``i`` of the benchmark mailbox: shapes rotate, some reply, some attach."""
    reply_to = i - 1 if i % 5 == 1 else None
    cc = [corpus.address_of(i + 1), corpus.address_of(i + 2)] if i % 7 == 0 else None
    attachment = None
    name = "data.bin"
    if i % 10 == 3:
        # Mostly distinct content (one File each), every fourth one shared.
        seed = i if i % 40 != 3 else 0
        attachment = (f"attachment {seed} ".encode() * 400)[: 2000 + (seed % 7) * 1000]
        name = f"report-{seed}.txt"
    return corpus.make_message(
        i,
        reply_to=reply_to,
        cc=cc,
        attachment=attachment,
        attachment_name=name,
        attachment_type="text/plain" if attachment is not None else "application/octet-stream",
    )


def write_mbox(path: Path, count: int) -> int:
    """Write messages 0..count-1 as an mbox; its size in bytes."""
    data = corpus.make_mbox([message(i) for i in range(count)])
    path.write_bytes(data)
    return len(data)


def parse_floor(path: Path) -> tuple[int, float]:
    """Parse every message of the mbox with the stdlib: (messages, seconds)."""
    parser = email.parser.BytesParser(policy=email.policy.default)
    parsed = 0
    with stopwatch() as watch:
        box = mailbox.mbox(path, create=False)
        try:
            for key in box.iterkeys():
                msg = parser.parsebytes(box.get_bytes(key))
                fields = [msg["subject"], msg["date"], msg["message-id"], msg["in-reply-to"]]
                for name in _ADDRESS_HEADERS:
                    header = msg[name]
                    if header is not None:
                        fields.extend((a.display_name, a.addr_spec) for a in header.addresses)
                body = msg.get_body(("plain", "html"))
                text = body.get_content() if body is not None else ""
                if not fields or text is None:
                    raise RuntimeError("a message without headers")
                parsed += 1
        finally:
            box.close()
    return parsed, watch.seconds


@dataclass
class Importer:
    """Runs ``python -m importer`` against one data directory."""

    data_dir: Path
    config: Path

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> ChildRun:
        env = child_env(IMPORTER_DATA_DIR=str(self.data_dir), IMPORTER_CONFIG=str(self.config))
        env.update(extra_env or {})
        return run_child([sys.executable, "-m", "importer", *args], env=env).check(
            "importer " + " ".join(args)
        )


def _median(runs: list[ChildRun]) -> ChildRun:
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def _summary(run: ChildRun) -> str:
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else "(no summary)"


def imap_import(mbox_count: int, importer: Importer) -> tuple[ChildRun, float] | str:
    """The same messages appended to a private Dovecot, then imported over IMAP."""
    try:
        from tests.email.dovecot import PASSWORD, DovecotServer, dovecot_available
    except ImportError as error:
        return f"the Dovecot fixture can't be imported: {error}"
    reason = dovecot_available()
    if reason is not None:
        return reason
    with DovecotServer.start() as server:
        user = server.add_user()
        with stopwatch() as append:
            server.append(user, "INBOX", (message(i) for i in range(mbox_count)))
        run = importer.run(
            "run",
            "email",
            "--imap-host",
            server.host,
            "--imap-user",
            user,
            "--imap-port",
            str(server.port),
            "--imap-security",
            "none",
            extra_env={"IMPORTER_IMAP_PASSWORD": PASSWORD},
        )
    return run, append.seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--count", type=int, help="messages in the large mailbox")
    parser.add_argument(
        "--imap", action="store_true", help="also import the messages from a private Dovecot"
    )
    args = parser.parse_args(argv)
    large = args.count or (400 if args.quick else 20_000)
    small = max(1, large // 10)
    print(f"email: mbox of {large:,} messages (and {small:,}), generated by tests/email/corpus.py")
    print(machine_line(), flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        root = Path(tmp)
        config = root / "config.toml"
        config.write_text("")
        big_mbox, small_mbox = root / f"mail-{large}.mbox", root / f"mail-{small}.mbox"
        size = write_mbox(big_mbox, large)
        write_mbox(small_mbox, small)
        print(f"mbox: {size / MiB:.1f} MiB", flush=True)

        startup = run_child([sys.executable, "-m", "importer", "--version"], env=child_env())
        parsed, floor_seconds = parse_floor(big_mbox)
        if parsed != large:
            raise RuntimeError(f"the floor parsed {parsed} messages, expected {large}")

        big = Importer(root / "pod-large", config)
        full_big = big.run("run", "email", "--mbox", str(big_mbox))
        little = Importer(root / "pod-small", config)
        full_small = little.run("run", "email", "--mbox", str(small_mbox))
        # A no-op run lasts about as long as a process start-up, so one run
        # is at the mercy of anything else on the machine: the median of
        # _NOOP_RUNS, the two sizes taking turns.
        noop_bigs, noop_smalls = [], []
        for _ in range(_NOOP_RUNS):
            noop_bigs.append(big.run("run", "email", "--mbox", str(big_mbox)))
            noop_smalls.append(little.run("run", "email", "--mbox", str(small_mbox)))
        noop_big, noop_small = _median(noop_bigs), _median(noop_smalls)
        imap = imap_import(large, Importer(root / "pod-imap", config)) if args.imap else None

    rows: list[list[object]] = [
        [
            "python -m importer --version (process start-up)",
            "-",
            startup.seconds,
            "-",
            startup.peak_rss / MiB,
            "",
        ],
        [
            f"floor: stdlib parse of {large:,} messages (in-process)",
            large,
            floor_seconds,
            large / floor_seconds,
            "-",
            "",
        ],
        [
            f"full import, {large:,} messages",
            large,
            full_big.seconds,
            large / full_big.seconds,
            full_big.peak_rss / MiB,
            _summary(full_big),
        ],
        [
            f"no-op run, {large:,} messages (median of {_NOOP_RUNS})",
            large,
            noop_big.seconds,
            "-",
            noop_big.peak_rss / MiB,
            _summary(noop_big),
        ],
        [
            f"full import, {small:,} messages",
            small,
            full_small.seconds,
            small / full_small.seconds,
            full_small.peak_rss / MiB,
            _summary(full_small),
        ],
        [
            f"no-op run, {small:,} messages (median of {_NOOP_RUNS})",
            small,
            noop_small.seconds,
            "-",
            noop_small.peak_rss / MiB,
            _summary(noop_small),
        ],
    ]
    if isinstance(imap, tuple):
        imap_run, append_seconds = imap
        rows.append(
            [
                f"IMAP import from Dovecot, {large:,} messages",
                large,
                imap_run.seconds,
                large / imap_run.seconds,
                imap_run.peak_rss / MiB,
                _summary(imap_run),
            ]
        )
        print(f"(appending {large:,} messages to Dovecot took {append_seconds:.1f} s)")
    print_table(
        "Email import (whole processes; seconds include start-up)",
        ["what", "messages", "seconds", "messages/s", "peak RSS MiB", "summary"],
        rows,
    )
    if isinstance(imap, str):
        print(f"\nIMAP part skipped: {imap}")
    elif imap is None:
        print("\nIMAP part not run (add --imap)")
    print()
    report_ratio(
        "email.full_vs_parse_floor", full_big.seconds / floor_seconds, "<=", _GOAL_VS_FLOOR
    )
    report_ratio(
        "email.noop_large_vs_small", noop_big.seconds / noop_small.seconds, "<=", _GOAL_NOOP_SCALING
    )
    report_ratio("email.noop_vs_full", noop_big.seconds / full_big.seconds, "<", _GOAL_NOOP_SHARE)
    report_ratio(
        "email.peak_rss_large_vs_small",
        full_big.peak_rss / full_small.peak_rss,
        "<=",
        _GOAL_RSS_SCALING,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
