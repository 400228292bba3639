"""ChromaVectorStore's document-id bookkeeping: a writer keeps its ids current without rereading chroma, and a
reader of the same directory always sees what was written."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ragloom.stores.chroma import ChromaVectorStore
from ragloom.types import Chunk, chunk_id_for_span


def _chunks(doc_id: str, n: int) -> list[Chunk]:
    return [Chunk(chunk_id_for_span(doc_id, i * 10, i * 10 + 5), doc_id, "text", i * 10, i * 10 + 5) for i in range(n)]


def _ids_in_chroma(store: ChromaVectorStore) -> set[str]:
    found = store._collection.get(include=["metadatas"])
    return {str(m["doc_id"]) for m in found["metadatas"] or []}


def test_writer_and_reader_agree_with_chroma_through_random_writes(tmp_path: Path) -> None:
    writer = ChromaVectorStore(tmp_path / "chroma")
    reader = ChromaVectorStore(tmp_path / "chroma")
    rng = random.Random(0)
    vectors = np.random.default_rng(0)
    try:
        for step in range(40):
            docs = [f"d{rng.randrange(12)}" for _ in range(rng.randrange(1, 4))]
            if rng.random() < 0.3:
                writer.delete_documents(docs)
            else:
                chunks = [c for doc in dict.fromkeys(docs) for c in _chunks(doc, rng.randrange(0, 3))]
                writer.replace_documents(docs, chunks, vectors.normal(size=(len(chunks), 8)).astype(np.float32))
            truth = _ids_in_chroma(writer)
            assert writer.doc_ids() == truth, step  # kept current by its own writes
            assert reader.doc_ids() == truth, step  # a reader always asks chroma
    finally:
        writer.close()
        reader.close()
