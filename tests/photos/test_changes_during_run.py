"""A photo deleted or saved over while a run goes on costs that photo's upload, not the run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.photos import _reader
from importer.pod.errors import PodError
from importer.testing import local_pod, snapshot

from .images import write_image
from .test_file_names import write_raw
from .test_photos import content, run, sha_id

DELETED = "file could not be read for upload: No such file or directory"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("delete", DELETED),
        ("rewrite", "file changed after it was read: its content no longer matches its sha256"),
    ],
)
async def test_a_photo_changed_after_it_was_read_is_skipped_and_the_others_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, reason: str
) -> None:
    root = tmp_path / "pictures"
    paths = [write_image(root / f"{name}.jpg", seed) for seed, name in enumerate("abc", 1)]
    changed = paths[1]
    read_bytes = changed.read_bytes()
    real = _reader.examine

    def examine_then_change(candidate: Any, *args: Any) -> Any:
        outcome = real(candidate, *args)
        if candidate.path == changed:  # the user deletes it, or an editor saves over it
            if change == "delete":
                changed.unlink()
            else:
                write_image(changed, 99)
        return outcome

    monkeypatch.setattr(_reader, "examine", examine_then_change)
    ids = {path: sha_id(path) for path in paths}
    shas = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert [(s.ref, s.reason) for s in result.skipped] == [(str(changed), reason)]
        snap = await snapshot(pod)
        assert {p["id"] for p in snap.of_type("Photo")} == set(ids.values())
        for path in (paths[0], paths[2]):
            assert await content(pod, shas[path]) == path.read_bytes()
        # The photo read before the change stays, its original without content.
        with pytest.raises(PodError):
            await pod.get_file(hashlib.sha256(read_bytes).hexdigest())
        monkeypatch.undo()
        again = await run(pod, tmp_path, [root])
        assert again.skipped == []
        photos = {p["id"] for p in (await snapshot(pod)).of_type("Photo")}
    if change == "rewrite":  # the new content is a new photo at the same path
        assert photos == {*ids.values(), sha_id(changed)}
    else:
        assert photos == set(ids.values())


async def test_a_photo_with_a_name_that_is_not_utf8_is_named_as_text_when_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pictures"
    write_image(root / "a.jpg", 1)
    data = write_image(tmp_path / "source.jpg", 2).read_bytes()
    latin1 = write_raw(root, b"caf\xe9.jpg", data)  # from an old FAT disk
    real = _reader.examine

    def examine_then_delete(candidate: Any, *args: Any) -> Any:
        outcome = real(candidate, *args)
        if candidate.path == latin1:
            latin1.unlink()
        return outcome

    monkeypatch.setattr(_reader, "examine", examine_then_delete)
    async with local_pod(tmp_path / "pod") as pod:
        result = await run(pod, tmp_path, [root])
        assert [s.ref for s in result.skipped] == [f"{root}/caf\\xe9.jpg"]
        assert result.run_id is not None
        recorded = await pod.get_item(result.run_id)
    assert recorded is not None
    assert json.loads(recorded["skipLog"]) == [
        {"ref": f"{root}/caf\\xe9.jpg", "reason": DELETED},
    ]
