"""The core's stores. Dense vectors: exact in-memory (persisted in SQLite), compressed (binary/int8 codes +
rescoring) and chromadb, behind :class:`VectorStore`; also the sparse inverted index (``stores.sparse``,
``stores.sparse_approx``) and the multi-vector store (``stores.multivector``).

A store keeps chunks with their vectors and answers top-k queries. It knows nothing about encoders: the
retriever that owns it writes the manifest and checks the encoder fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragloom._imports import lazy_exports
from ragloom.protocols import Filters
from ragloom.stores.memory import InMemoryVectorStore
from ragloom.stores.rows import chunk_matches
from ragloom.types import Chunk

__all__ = ["ChromaVectorStore", "CompressedVectorStore", "InMemoryVectorStore", "VectorStore", "chunk_matches"]


@runtime_checkable
class VectorStore(Protocol):
    """What a dense retriever needs from a store."""

    @property
    def config(self) -> dict[str, object]: ...

    def replace_documents(self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Drop every chunk of ``doc_ids`` and add ``chunks`` in one step."""
        ...

    def delete_documents(self, doc_ids: Sequence[str]) -> int: ...

    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None) -> list[list[tuple[Chunk, float]]]:
        """Top ``k`` chunks by inner product for each query row, best first."""
        ...

    def doc_ids(self) -> set[str]: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ChromaVectorStore": "ragloom.stores.chroma",
        "CompressedVectorStore": "ragloom.stores.compressed",
    },  # chromadb loads only when asked for
    __all__,
)
