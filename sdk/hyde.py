"""HyDE (Gao et al., 2022): a generator writes a hypothetical passage answering the query; dense search uses it.

``mode="passage"`` searches with the passage's document embedding alone (the paper's form); ``mode="average"``
with the mean of the query and passage embeddings, renormalised — safer when the generator is small or the
query is already specific. Wraps a chunk-and-embed retriever (:class:`~ragloom.retrieval.ChunkedVectorRetriever`,
e.g. ``DenseRetriever``) and keeps its name, so fusion weights and a calibrated fuser apply unchanged.

Costs one generation per query (seconds on a CPU even for SmolLM2-135M): worth it for short, underspecified
queries over a corpus whose vocabulary differs from the queries'; not for keyword or identifier lookups, where
BM25 already wins, nor in a latency budget of milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ragloom.errors import ConfigError, InputTooLongError, RagloomWarning
from ragloom.protocols import Filters, Generator
from ragloom.retrieval import ChunkedVectorRetriever, ProgressCallback, RetrieverMethods, check_query
from ragloom.types import Chunk, Document, Hit, Message

__all__ = ["HydeRetriever"]

HYDE_PROMPT = "Write a short passage (two or three sentences) that answers the question.\n\nQuestion: {query}\nPassage:"


class HydeRetriever(RetrieverMethods):
    """Search ``retriever``'s index with a generated hypothetical passage (see the module docs).

    Indexing, deletes and listing go straight to the wrapped retriever.
    """

    def __init__(
        self,
        retriever: ChunkedVectorRetriever,
        generator: Generator,
        *,
        mode: Literal["average", "passage"] = "average",
        prompt: str = HYDE_PROMPT,
    ) -> None:
        if not isinstance(retriever, ChunkedVectorRetriever):
            raise ConfigError("HyDE needs a chunk-and-embed retriever (DenseRetriever: one with encoder and store)")
        if mode not in ("average", "passage"):
            raise ConfigError(f"HyDE mode must be 'average' or 'passage', got {mode!r}")
        if "{query}" not in prompt:
            raise ConfigError("The HyDE prompt must contain '{query}'")
        self.retriever, self.generator, self.mode, self.prompt = retriever, generator, mode, prompt
        self._name = str(retriever.name)
        self.path = retriever.path  # the wrapped index's directory (the ingest journal's)

    @property
    def name(self) -> str:
        return str(self.retriever.name)

    def passage(self, query: str) -> str:
        """The hypothetical passage the generator writes for ``query``."""
        return self.generator.generate([Message("user", self.prompt.format(query=query))]).strip()

    def query_vector(self, query: str) -> np.ndarray:
        """The vector searched for ``query``: the passage's, or its mean with the query's."""
        encoder = self.retriever.encoder
        q = np.asarray(encoder.encode_queries([query])[0], dtype=np.float32)
        text = self.passage(query)
        try:
            p = np.asarray(encoder.encode_documents([text])[0], dtype=np.float32) if text else None
        except InputTooLongError as exc:
            warnings.warn(f"HyDE passage too long for the encoder ({exc}); searching with the query", RagloomWarning, 2)
            p = None
        if p is None:
            return q
        vector = (
            p
            if self.mode == "passage"
            else q / max(float(np.linalg.norm(q)), 1e-12) + p / max(float(np.linalg.norm(p)), 1e-12)
        )
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        for query in queries:
            check_query(query, k)
        if not queries or len(self.retriever) == 0:
            return [[] for _ in queries]
        vectors = np.vstack([self.query_vector(q) for q in queries])
        kind = self.retriever.score_kind  # same score kind as the wrapped retriever's hits
        return [
            [
                Hit(chunk=chunk, score=score, score_kind=kind, retriever=self.name, rank=rank, explanation="hyde")
                for rank, (chunk, score) in enumerate(row, start=1)
            ]
            for row in self.retriever.store.search(vectors, k, filters)
        ]

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        chunks: list[Chunk] = self.retriever.add(documents, progress=progress)
        return chunks

    def delete(self, doc_ids: Sequence[str]) -> int:
        return int(self.retriever.delete(doc_ids))

    def doc_ids(self) -> set[str]:
        ids: set[str] = self.retriever.doc_ids()
        return ids

    def chunks(self) -> list[Chunk]:
        chunks: list[Chunk] = self.retriever.chunks()
        return chunks

    def __len__(self) -> int:
        return len(self.retriever)

    def close(self) -> None:
        self.retriever.close()
