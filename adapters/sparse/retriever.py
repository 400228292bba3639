"""SparseRetriever: chunk → sparse-encode → inverted index (ragloom.stores.sparse), behind the Retriever contract.

Works with any :class:`ragloom.protocols.SparseEncoder` (SPLADE here, or a user's own). Documents are chunked with
the encoder's own tokenizer into inputs that fit the model, so nothing is cut; with the same tokenizer and chunk
size as a dense retriever the chunk ids are identical and hybrid fusion merges exactly. Every hit explains itself
with the terms that contributed most to its score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ragloom.chunking import TokenChunker
from ragloom.index_folder import IndexFolder, stored_chunk_size
from ragloom.protocols import Filters, SparseEncoder
from ragloom.retrieval import (
    ProgressCallback,
    StoredRetrieverMethods,
    check_documents,
    chunk_batches,
    default_chunker,
    warn_empty,
)
from ragloom.stores.sparse import SparseIndex, SparseMatch
from ragloom.stores.sparse_approx import DEFAULT as DEFAULT_APPROX
from ragloom.stores.sparse_approx import ApproxSearch
from ragloom.types import Chunk, Document, Hit, ScoreKind

__all__ = ["SparseRetriever", "explain_terms"]


def explain_terms(terms: Sequence[tuple[Any, float]], name: Callable[[Any], str] = str) -> str:
    """``"terms: galaxy 2.31 · cluster 1.2"`` — the contributions behind a sparse score, largest first."""
    if not terms:
        return ""
    return "terms: " + " · ".join(f"{name(term)} {weight:.3g}" for term, weight in terms)


class SparseRetriever(StoredRetrieverMethods):
    """Chunk documents with the encoder's tokenizer, encode the chunks, and search a sparse inverted index.

    ``path=None`` keeps the index in memory. ``explain`` is the number of top contributing terms each hit names
    in ``Hit.explanation`` (0 turns explanations off). ``approximate``: ``True`` (the default setting) or an
    :class:`ragloom.stores.sparse_approx.ApproxSearch` for Seismic-style approximate search (a search-time choice:
    the index is the same; ``None`` is exact).
    """

    kind = "sparse"

    def __init__(
        self,
        encoder: SparseEncoder,
        path: str | Path | None = None,
        *,
        chunker: TokenChunker | None = None,
        chunk_size: int | None = None,
        overlap: int = 32,
        name: str | None = None,
        explain: int = 5,
        manifest_extra: Mapping[str, Any] | None = None,
        approximate: ApproxSearch | bool | None = None,
    ) -> None:
        self.encoder = encoder
        self.approximate = DEFAULT_APPROX if approximate is True else (approximate or None)
        self.path = Path(path) if path is not None else None
        self.chunker = chunker or default_chunker(encoder, chunk_size, overlap, stored=stored_chunk_size(path))
        family = str(encoder.fingerprint.get("family", ""))
        self._name = name or (family or self.kind)
        self._score_kind: ScoreKind = "splade" if family == "splade" else "dot"
        self.explain = explain
        self._folder = (
            IndexFolder(
                self.path,
                kind=self.kind,
                fingerprint=encoder.fingerprint,
                units=self.chunker.config,
                extra=manifest_extra,
            )
            if self.path is not None
            else None
        )
        self.store = SparseIndex(self.path / "sparse" if self.path is not None else None)
        self._check_store_on_open()

    # -- the Retriever contract ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        """Index documents in batches of about 256 chunks, each committed on its own (a crash loses one batch)."""
        docs = check_documents(documents)
        self._acquire_writer()
        pairs = [(doc, self.chunker.chunk(doc)) for doc in docs]
        warn_empty(pairs)
        added: list[Chunk] = []
        done = 0
        for batch in chunk_batches(pairs):
            chunks = [c for _, cs in batch for c in cs]
            vectors = self.encoder.encode_documents([c.text for c in chunks]) if chunks else []
            self.store.replace_documents([doc.id for doc, _ in batch], chunks, vectors)
            added.extend(chunks)
            done += len(batch)
            self._save_manifest()
            if progress:
                progress(done, len(docs))
        return added

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        if not self._searchable(queries, k):
            return [[] for _ in queries]
        vectors = self.encoder.encode_queries(list(queries))
        return [
            self._hits(matches)
            for matches in self.store.search(vectors, k, filters, explain=self.explain, approx=self.approximate)
        ]

    def _hits(self, matches: list[SparseMatch]) -> list[Hit]:
        name = getattr(self.encoder, "term", str)
        return [
            Hit(
                chunk=match.chunk,
                score=match.score,
                score_kind=self._score_kind,
                retriever=self._name,
                rank=rank,
                explanation=explain_terms(match.terms, name),
            )
            for rank, match in enumerate(matches, start=1)
        ]

    def compact(self) -> None:
        """Merge the index into one segment without deleted rows (see SparseIndex.compact)."""
        self._acquire_writer()
        self.store.compact()
