"""A record the Pod cannot be sent (text that is not UTF-8) is a skip, not a failed run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from importer import Checkpoint, Edge, File, Record, RunContext
from importer.testing import local_pod, run_connector, snapshot

from .connectors import Note, NotesOptions, SyncNotes, Tag, note_id

BAD = "caf\udce9"
"""What ``os.fsdecode(b"caf\\xe9")`` gives: a lone surrogate, not valid UTF-8."""
NOT_UTF8 = "str is not valid UTF-8: surrogates not allowed"


class Undecodable(SyncNotes):
    """Good notes around records carrying a surrogate-escaped string."""

    def fetch(self, ctx: RunContext[NotesOptions]) -> Iterator[Record]:
        yield Note(externalId="note-0", title="fine")
        yield Note(externalId="note-1", title=BAD)  # a property
        yield Edge(note_id(0), "tag", Tag(name=BAD))  # a natural key: no id can be derived
        yield Edge(note_id(0), "answers", BAD)  # an edge end
        yield File.payload(b"attachment", filename=BAD)  # a file and its content
        yield Note(externalId="note-2", title="also fine")
        yield Edge(note_id(2), "answers", note_id(0))
        yield Checkpoint({"next": 3})


async def test_records_with_text_that_is_not_utf8_are_skipped_and_the_rest_lands(
    tmp_path: Path,
) -> None:
    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(Undecodable(), {}, client=pod, data_dir=tmp_path)
        assert result.error is None, result.error
        file_id = File(sha256=hashlib.sha256(b"attachment").hexdigest()).ensure_id()
        assert [(s.ref, s.reason) for s in result.skipped] == [
            (f"Note {note_id(1)}", f"cannot be sent to the Pod: title: {NOT_UTF8}"),
            ("Tag caf\\udce9", f"cannot be sent to the Pod: name: {NOT_UTF8}"),
            ("edge answers end caf\\udce9", f"cannot be sent to the Pod: the id: {NOT_UTF8}"),
            (f"File {file_id}", f"cannot be sent to the Pod: filename: {NOT_UTF8}"),
        ]
        run = await pod.get_item(result.run_id or "")
        assert run is not None and run["status"] == "done" and run["skippedCount"] == 4
        snap = await snapshot(pod)
        assert sorted(n["title"] for n in snap.of_type("Note")) == ["also fine", "fine"]
        assert snap.of_type("Tag") == [] and snap.of_type("File") == []
        assert snap.edges_named("answers") == [(note_id(2), "answers", note_id(0))]
        account = await pod.get_item(result.account_id)
        assert account is not None
        assert json.loads(account["importerState"])["notes"] == {"default": {"next": 3}}
