"""Pending edges through bulks the Pod refuses and the engine resends, against a real store."""

from __future__ import annotations

from pathlib import Path

from importer import Edge

from .connectors import Note, note_id
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
