"""File content that is gone or changed by upload time is a skip, not a failed run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from pydantic import BaseModel

from importer import Connector, Edge, File, FilePayload, Record, RunContext
from importer.engine import RunResult
from importer.pod import _upload
from importer.pod._upload import CHUNK_SIZE, WHOLE_SIZE
from importer.pod.errors import PodError
from importer.testing import local_pod, run_connector, snapshot

from .connectors import Note
from .stepped import SteppedPod, open_store, run_batches

GONE = "file could not be read for upload: No such file or directory"
CHANGED = "file changed after it was read: its content no longer matches its sha256"


class FolderOptions(BaseModel):
    folder: Path
    delete: list[str] = []
    """Files deleted right after their payload is yielded (before any upload)."""
    rewrite: list[str] = []
    """Files given new content right after their payload is yielded."""
    wrong_hash: list[str] = []
    """Files yielded as bytes under the sha256 of other bytes."""
    fail: bool = False
    """Fail once every file is yielded."""


class Folder(Connector[FolderOptions]):
    """One Note per file of a folder, with the file attached by path."""

    name = "folder"
    options_model = FolderOptions
    item_types = (Note,)

    def fetch(self, ctx: RunContext[FolderOptions]) -> Iterator[Record]:
        options = ctx.options
        told_to_read_again.append(dict(ctx.files_to_read_again))
        for path in sorted(options.folder.iterdir()):
            payload = File.payload_from_path(path)
            if path.name in options.wrong_hash:
                payload = FilePayload(payload.file, b"not what was hashed")
            yield payload
            if path.name in options.delete:
                path.unlink()
            if path.name in options.rewrite:
                path.write_bytes(b"saved over while the run went on")
            note = Note(externalId=path.name, title=path.name)
            yield note
            yield Edge(note, "attachment", payload.file)
        if options.fail:
            raise RuntimeError("the folder went away")


told_to_read_again: list[dict[str, str]] = []
"""``ctx.files_to_read_again`` of each run of :class:`Folder`."""


def write_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(exist_ok=True)
    contents = {name: f"content of {name}".encode() for name in ("a", "b", "c", "d")}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return contents


async def stored(pod: Any, data: bytes) -> bool:
    try:
        back = await pod.get_file(hashlib.sha256(data).hexdigest())
    except PodError:
        return False
    return bool(back == data)


async def test_a_file_gone_or_changed_before_its_upload_is_skipped_and_the_rest_lands(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "files"
    contents = write_files(folder)
    options = {"folder": folder, "delete": ["b"], "rewrite": ["c"], "wrong_hash": ["d"]}
    async with local_pod(tmp_path / "pod") as pod:
        result = await run_connector(Folder(), options, client=pod, data_dir=tmp_path)
        assert result.error is None, result.error
        assert {(s.ref, s.reason) for s in result.skipped} == {
            (str(folder / "b"), GONE),
            (str(folder / "c"), CHANGED),
            (
                f"File {File(sha256=hashlib.sha256(contents['d']).hexdigest()).ensure_id()}",
                "content does not match the sha256 of its File item",
            ),
        }
        assert result.run_id is not None
        run = await pod.get_item(result.run_id)
        assert run is not None and run["status"] == "done" and run["skippedCount"] == 3
        snap = await snapshot(pod)
        # Every Note and File item landed; only the lost contents are missing.
        assert sorted(n["title"] for n in snap.of_type("Note")) == ["a", "b", "c", "d"]
        assert len(snap.of_type("File")) == 4 and len(snap.edges_named("attachment")) == 4
        assert [name for name, data in contents.items() if await stored(pod, data)] == ["a"]


@pytest.mark.parametrize("change", ["delete", "rewrite"])
async def test_a_file_item_left_without_content_gets_it_on_a_later_run(
    tmp_path: Path, change: str
) -> None:
    folder = tmp_path / "files"
    contents = write_files(folder)
    async with local_pod(tmp_path / "pod") as pod:
        first = await run_connector(
            Folder(), {"folder": folder, change: ["b"]}, client=pod, data_dir=tmp_path
        )
        assert first.error is None and [s.ref for s in first.skipped] == [str(folder / "b")]
        assert not await stored(pod, contents["b"])
        (folder / "b").write_bytes(contents["b"])  # the file is back as it was
        second = await run_connector(Folder(), {"folder": folder}, client=pod, data_dir=tmp_path)
        assert second.error is None and second.skipped == []
        assert all([await stored(pod, data) for data in contents.values()])


async def test_the_next_runs_read_again_a_skipped_file_until_one_goes_through(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "files"
    contents = write_files(folder)
    sha_b = hashlib.sha256(contents["b"]).hexdigest()
    told_to_read_again.clear()
    states: list[dict[str, Any]] = []
    """The Account's ``importerState`` after each run."""

    async def run(**options: Any) -> RunResult:
        result = await run_connector(
            Folder(), {"folder": folder, **options}, client=pod, data_dir=tmp_path
        )
        account = await pod.get_item(result.account_id)
        assert account is not None
        states.append(json.loads(account.get("importerState") or "{}"))
        return result

    async with local_pod(tmp_path / "pod") as pod:
        assert (await run(delete=["b"])).skipped  # the file goes after it was hashed
        assert "the folder went away" in str((await run(fail=True)).error)
        (folder / "b").write_bytes(contents["b"])
        assert (await run()).skipped == []
        assert await stored(pod, contents["b"])
        await run()
    held = {str(folder / "b"): sha_b}
    assert told_to_read_again == [{}, held, held, {}]  # a failed run keeps them for the next
    assert states == [{"_skippedUploads": held}, {"_skippedUploads": held}, {}, {}]


BIG = WHOLE_SIZE + 2 * CHUNK_SIZE
"""Sent in chunks: the file is read again between them."""


def change_while_sent(monkeypatch: pytest.MonkeyPatch, path: Path, change: str) -> None:
    """Change ``path`` once its upload has read the first chunk (``restored``: back at the end)."""
    original = path.read_bytes()
    real = _upload._next_chunk
    reads = 0

    def next_chunk(handle: BinaryIO) -> tuple[bytes, bool]:
        nonlocal reads
        chunk, ended = real(handle)
        reads += 1
        if reads == 1 and getattr(handle, "name", None) == str(path):
            with path.open("r+b") as out:
                if change in ("shrunk", "restored"):
                    out.truncate(CHUNK_SIZE + 1)
                elif change == "appended":
                    out.seek(0, os.SEEK_END)
                    out.write(b"more")
                else:  # "grown" runs past the announced size
                    out.seek(BIG - 10)
                    out.write(b"saved over" if change == "same size" else b"saved over, longer")
        elif ended and change == "restored":
            path.write_bytes(original)
        return chunk, ended

    monkeypatch.setattr(_upload, "_next_chunk", next_chunk)


@pytest.mark.parametrize("over_socket", [False, True], ids=["embedded", "socket"])
@pytest.mark.parametrize("change", ["same size", "grown", "shrunk"])
async def test_a_big_file_changed_while_it_is_sent_is_skipped_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over_socket: bool, change: str
) -> None:
    folder = tmp_path / "files"
    contents = write_files(folder)
    big = folder / "big"
    contents["big"] = os.urandom(BIG)
    big.write_bytes(contents["big"])
    change_while_sent(monkeypatch, big, change)
    async with local_pod(tmp_path / "pod", over_socket=over_socket) as pod:
        result = await run_connector(Folder(), {"folder": folder}, client=pod, data_dir=tmp_path)
        assert result.error is None, result.error
        assert [(s.ref, s.reason) for s in result.skipped] == [(str(big), CHANGED)]
        assert result.retries == 0  # the Pod was never asked twice
        assert len((await snapshot(pod)).of_type("File")) == 5
        assert [name for name, data in contents.items() if not await stored(pod, data)] == ["big"]


@pytest.mark.parametrize("over_socket", [False, True], ids=["embedded", "socket"])
@pytest.mark.parametrize("change", ["appended", "restored"])
async def test_a_big_file_whose_bytes_survive_a_change_while_sent_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over_socket: bool, change: str
) -> None:
    """Appended to: its hashed bytes are still there.  Cut short, then put back: sent again."""
    folder = tmp_path / "files"
    folder.mkdir()
    data = os.urandom(BIG)
    (folder / "big").write_bytes(data)
    change_while_sent(monkeypatch, folder / "big", change)
    async with local_pod(tmp_path / "pod", over_socket=over_socket) as pod:
        result = await run_connector(Folder(), {"folder": folder}, client=pod, data_dir=tmp_path)
        assert result.error is None and result.skipped == []
        assert await stored(pod, data)


async def test_a_resent_bulk_still_uploads_a_file_the_pod_holds_without_content(
    tmp_path: Path,
) -> None:
    """A run before this one landed a File item but not its content (killed mid-upload).

    This run yields the file again with a new note. Its first bulk creates
    the File item and is refused (409); checked again, the File item is found
    without content, so its upload is planned, with the note. That bulk is
    applied but its answer lost, and its retry is refused (the note exists).
    Resolved once more, the File item counted as known from the first check:
    no upload was planned, and a checkpoint after it covered a file that no
    later run would upload (a photo whose original never got content).
    """
    data = b"the original, never uploaded"
    payload = File.payload(data, filename="a.jpg")
    note = Note(externalId="a", title="a")
    with open_store(tmp_path / "pod") as store:
        store.bulk({"createItems": [payload.file.to_pod()]})
        pod = SteppedPod(store)
        lose = [False, True]  # answer the first bulk, lose the second's answer

        def schedule(pod: SteppedPod) -> None:
            pod.apply(0, lose_answer=lose.pop(0) if lose else False)

        await run_batches(pod, [[payload, note, Edge(note, "attachment", payload.file)]], schedule)
        assert not lose, "the schedule was not played out"
        assert pod.has_edge(note.ensure_id(), "attachment", payload.file.ensure_id())
        assert pod.has_content(payload.sha256)
