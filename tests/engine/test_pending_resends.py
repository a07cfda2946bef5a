"""Pending edges through bulks the Pod refuses and the engine resends, against a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from importer import Edge
from importer.engine._run import _Run
from importer.testing import local_pod, run_connector, snapshot

from .connectors import LinkedThenSeen, Note, note_id
from .stepped import SteppedPod, open_store, run_batches


def _note(i: int) -> Note:
    return Note(externalId=f"note-{i}", title=f"Note {i}")


async def test_a_resent_bulk_stores_no_pending_edge_for_an_edge_in_the_pod(tmp_path: Path) -> None:
    """An edge held back for a later bulk, which the Pod refuses: the edge is there.

    A run before this one landed both notes and the edge, not its checkpoint.
    The edge comes in the batch after its source, while the bulk creating
    that source is unanswered, so it is held back and carried by a later
    bulk. Both bulks are refused (409). Resolving the carrier again, the
    engine did not ask the Pod about the edge's target (it had never cached
    it) and stored the edge as pending: a PendingEdge stayed beside its edge.
    """
    source, target = note_id(0), note_id(1)
    with open_store(tmp_path / "pod") as store:
        store.bulk(
            {
                "createItems": [_note(0).to_pod(), _note(1).to_pod()],
                "createEdges": [{"_source": source, "_name": "answers", "_target": target}],
            }
        )
        pod = SteppedPod(store)
        await run_batches(pod, [[_note(0)], [Edge(source, "answers", target)]])
        assert pod.pending_edges() == set()
        assert pod.has_edge(source, "answers", target)


async def test_a_resent_bulk_still_drops_a_pending_edge_another_writer_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk that drops a PendingEdge whose edge is in the Pod is refused and resent.

    Another writer adds the missing note and links it; then the source
    yields that note too. The engine finds the edge in the Pod and plans to
    delete the PendingEdge along with creating the note, which the Pod
    refuses (the note exists). The resent bulk skipped the edge as known
    before looking whether it was pending, and the PendingEdge stayed.
    """

    async def no_second_pass(self: Any) -> int:
        return -1

    # The end-of-run pass would hide what the bulks left.
    monkeypatch.setattr(_Run, "_sweep_pending", no_second_pass)
    async with local_pod(tmp_path / "pod") as pod:
        connector = LinkedThenSeen(pod)
        first = await run_connector(connector, {}, client=pod, data_dir=tmp_path)
        assert first.error is None
        assert len(await pod.search({"type": "PendingEdge", "deleted": False})) == 1
        second = await run_connector(connector, {}, client=pod, data_dir=tmp_path)
        assert second.error is None
        snap = await snapshot(pod)
        assert snap.edges[(note_id(0), "answers", note_id(1))] == 1
        assert await pod.search({"type": "PendingEdge", "deleted": False}) == []
