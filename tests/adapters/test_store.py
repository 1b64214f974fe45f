"""The ChromaDB adapter on a real embedded store: records by id, pages, nearest neighbours."""

from pathlib import Path

import numpy as np
import pytest

from ticketflow.adapters.store import ChromaVectorStore, VectorStoreError, open_chroma_client

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path: Path) -> ChromaVectorStore:
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model="test/space",
        dimension=4,
    )
    vectors = np.array(
        [[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.9, 0.1]],
        dtype=np.float32,
    )
    store.upsert(
        [f"t{i}" for i in range(5)],
        vectors,
        [
            {"queue": q, "label_source": s}
            for q, s in [
                ("A", "model"),
                ("A", "human"),
                ("B", "model"),
                ("B", "model"),
                ("A", "imported"),
            ]
        ],
        [f"subject {i}\nbody" for i in range(5)],
    )
    return store


def test_records_by_id_leave_missing_ids_out(store: ChromaVectorStore) -> None:
    found = store.records(["t1", "nope", "t1"], vectors=True, documents=True)
    assert set(found) == {"t1"}
    assert found["t1"].metadata == {"queue": "A", "label_source": "human"}
    assert found["t1"].document == "subject 1\nbody"
    assert found["t1"].vector is not None and found["t1"].vector.shape == (4,)
    assert store.records([]) == {}
    assert store.records(["t2"])["t2"].vector is None  # vectors only when asked for


def test_pages_cover_every_record_once(store: ChromaVectorStore) -> None:
    pages = list(store.pages(page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(r.ticket_id for p in pages for r in p) == [f"t{i}" for i in range(5)]


def test_held_ids_are_the_held_records_whose_labels_are_the_models(
    store: ChromaVectorStore,
) -> None:
    held = [{"needs_review": True, "label_source": s} for s in ("model", "human", "imported")]
    store.collection.update(ids=["t0", "t1", "t4"], metadatas=held)
    store.collection.update(ids=["t2"], metadatas=[{"needs_review": False}])
    assert store.held_ids() == ["t0"]


def test_query_nearest_first_with_filters(store: ChromaVectorStore) -> None:
    query = np.array([[1, 0.05, 0, 0], [0, 0, 1, 0.05]], dtype=np.float32)
    first, second = store.query(query, 2, documents=True)
    assert [n.ticket_id for n in first] == ["t0", "t1"]
    assert first[0].distance <= first[1].distance and first[0].document == "subject 0\nbody"
    assert [n.ticket_id for n in second] == ["t3", "t4"]

    (only_b,) = store.query(query[:1], 2, where={"queue": "B"})
    assert {n.ticket_id for n in only_b} == {"t2", "t3"}
    (both,) = store.query(query[:1], 5, where={"queue": "A", "label_source": "imported"})
    assert [n.ticket_id for n in both] == ["t4"]
    (none,) = store.query(query[:1], 3, where={"queue": "C"})
    assert none == []
    assert store.query(np.zeros((0, 4), dtype=np.float32), 3) == []


def test_a_collection_of_another_vector_space_is_refused(
    store: ChromaVectorStore, tmp_path: Path
) -> None:
    with pytest.raises(VectorStoreError, match="test/space"):
        ChromaVectorStore(
            open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
            "tickets",
            embedding_model="other/space",
            dimension=4,
        )
