"""Multi-vector retrievers: ColPali/ColQwen2 over page images and ColBERT over text chunks.

Both share one body: units (pages or chunks) → encoder → optional pruning and pooling → :class:`MultiVectorStore`,
with the manifest (encoder fingerprint, unit config, compression) and the writer lock of every ragloom index.
Documents are committed whole, several per store commit, so a crash loses at most the batch in flight and never
leaves half a document visible. Page hits carry the document id and page number, so they fuse with text-chunk
hits of the same page (``ReciprocalRankFusion(key="page")``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragloom.adapters.multivector.pages import RenderSettings, document_page_images
from ragloom.chunking import TokenChunker
from ragloom.compression import MemoryEstimate, MultiVectorSettings, estimate_memory, pool_tokens, prune_by_importance
from ragloom.errors import ConfigError, RagloomWarning
from ragloom.index_folder import IndexFolder
from ragloom.protocols import Filters, ImportanceEncoder, MultiVectorEncoder, TokenAwareEncoder
from ragloom.retrieval import ProgressCallback, StoredRetrieverMethods, check_documents
from ragloom.stores.multivector import MultiVectorStore
from ragloom.types import Chunk, Document, Hit, chunk_id_for_page

__all__ = ["ColBERTRetriever", "ColPaliRetriever", "MultiVectorRetriever"]

Unit = tuple[Chunk, object]


class MultiVectorRetriever(StoredRetrieverMethods):
    """The shared body; subclasses say how a Document becomes units (``_units``) and describe them (``unit_config``)."""

    kind = "multivector"
    _count_label = "units"
    commit_units = 64

    def __init__(
        self,
        encoder: MultiVectorEncoder,
        path: str | Path | None = None,
        *,
        settings: MultiVectorSettings | None = None,
        name: str | None = None,
        device: str | None = None,
        encode_batch: int = 8,
    ) -> None:
        self.encoder = encoder
        self.settings = settings or MultiVectorSettings()
        self.path = Path(path) if path is not None else None
        self._name = name or self.kind
        self._encode_batch = encode_batch
        if self.settings.prune_k is not None and not isinstance(encoder, ImportanceEncoder):
            raise ConfigError(f"prune_k needs an encoder with attention importance; {type(encoder).__name__} has none")
        self._folder = (
            IndexFolder(self.path, kind=self.kind, fingerprint=encoder.fingerprint, units=self.unit_config)
            if self.path is not None
            else None
        )
        self.store = MultiVectorStore(
            self.path / "store" if self.path else None, encoder.dim, self.settings, device=device
        )
        self._check_store_on_open()

    # -- what subclasses provide -------------------------------------------------------------------------------------
    @property
    def unit_config(self) -> Mapping[str, object]:
        """Everything that shapes the stored vectors besides the encoder (goes in the manifest's chunker slot)."""
        return {"compression": self.settings.index_config}

    def _units(self, document: Document) -> Iterator[Unit] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the Retriever contract --------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        docs = check_documents(documents)
        self._acquire_writer()
        added: list[Chunk] = []
        skipped: list[str] = []
        batch_docs: list[str] = []
        batch_chunks: list[Chunk] = []
        batch_vectors: list[np.ndarray] = []
        for done, doc in enumerate(docs, start=1):
            units = self._units(doc)
            chunks, vectors = self._encode_units(units) if units is not None else ([], [])
            if not chunks:
                skipped.append(doc.id)
            batch_docs.append(doc.id)
            batch_chunks.extend(chunks)
            batch_vectors.extend(vectors)
            if len(batch_chunks) >= self.commit_units or done == len(docs):
                self.store.replace_documents(batch_docs, batch_chunks, batch_vectors)
                added.extend(batch_chunks)
                batch_docs, batch_chunks, batch_vectors = [], [], []
                self._save_manifest()
            if progress:
                progress(done, len(docs))
        if skipped:
            warnings.warn(
                f"{len(skipped)} document(s) gave {self.kind} nothing to index ({self._skip_reason}): {skipped[:5]}",
                RagloomWarning,
                stacklevel=2,
            )
        return added

    _skip_reason = "no units"

    def _encode_units(self, units: Iterator[Unit]) -> tuple[list[Chunk], list[np.ndarray]]:
        chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        group: list[Unit] = []

        def flush() -> None:
            items = [item for _, item in group]
            if self.settings.prune_k is not None:
                assert isinstance(self.encoder, ImportanceEncoder)  # checked in __init__
                encoded = self.encoder.encode_documents_with_importance(items)
                matrices = [
                    prune_by_importance(v, w, self.settings.prune_k, self.settings.prune_min_tokens)[0]
                    for v, w in encoded
                ]
            else:
                matrices = self.encoder.encode_documents(items)
            for (chunk, _), matrix in zip(group, matrices):
                chunks.append(chunk)
                vectors.append(
                    pool_tokens(matrix, self.settings.pool_factor) if self.settings.pool_factor > 1 else matrix
                )
            group.clear()

        for unit in units:  # units (page images) are produced lazily and dropped once encoded
            group.append(unit)
            if len(group) >= self._encode_batch:
                flush()
        if group:
            flush()
        return chunks, vectors

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        if not self._searchable(queries, k):
            return [[] for _ in queries]
        rows = self.store.search(self.encoder.encode_queries(list(queries)), k, filters)
        return [
            [
                Hit(chunk=chunk, score=score, score_kind="maxsim", retriever=self._name, rank=rank)
                for rank, (chunk, score) in enumerate(row, start=1)
            ]
            for row in rows
        ]

    def estimate_memory(self, n_pages: int, tokens_per_page: int = 1030) -> MemoryEstimate:
        """What ``n_pages`` more units would cost with this retriever's settings and encoder dimension."""
        return estimate_memory(n_pages, self.settings, tokens_per_page=tokens_per_page, dim=self.encoder.dim)

    # -- persistence --------------------------------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        return {"chunks": len(self.store), "documents": len(self.store.doc_ids()), "vectors": self.store.token_count()}

    def _store_config(self) -> dict[str, object]:
        return {**self.store.config, "settings": self.settings.to_dict()}

    def compact(self) -> None:
        """Rewrite the store without deleted pages (also happens automatically)."""
        self._acquire_writer()
        self.store.compact()


class ColPaliRetriever(MultiVectorRetriever):
    """Page images of PDFs (or image files) encoded by ColPali/ColQwen2; one hit per page.

    A page chunk's text is the page's text layer when the Document has one (for generation and citations); its id
    is ``chunk_id_for_page(doc_id, page)``. Documents whose source is neither a PDF nor an image are skipped with a
    warning (index their text with a text retriever and fuse on pages).
    """

    kind = "colpali"
    _skip_reason = "their source is not a PDF or an image file"

    def __init__(
        self,
        encoder: MultiVectorEncoder,
        path: str | Path | None = None,
        *,
        render: RenderSettings | None = None,
        **kwargs: Any,
    ) -> None:
        self.render = render or RenderSettings()
        super().__init__(encoder, path, **kwargs)

    @property
    def unit_config(self) -> Mapping[str, object]:
        return {"kind": "pages", "render": self.render.config, "compression": self.settings.index_config}

    def _units(self, document: Document) -> Iterator[Unit] | None:
        images = document_page_images(document, self.render)
        if images is None:
            return None
        return (self._page_unit(document, page) for page in images)

    @staticmethod
    def _page_chunk(document: Document, number: int, dpi: float, downscaled: bool) -> Chunk:
        span = next((p for p in document.pages if p.number == number), None)
        start, end = (span.start, span.end) if span else (0, 0)
        return Chunk(
            id=chunk_id_for_page(document.id, number),
            doc_id=document.id,
            text=document.text[start:end],
            start=start,
            end=end,
            page=number,
            source=document.source,
            metadata={**document.metadata, "unit": "page_image", "render_dpi": round(dpi, 1), "downscaled": downscaled},
        )

    def _page_unit(self, document: Document, page: Any) -> Unit:
        return self._page_chunk(document, page.page, page.dpi, page.downscaled), page.image


class ColBERTRetriever(MultiVectorRetriever):
    """Text chunks (measured in the encoder's own tokens, sized to its document length) encoded by ColBERT."""

    kind = "colbert"
    commit_units = 256
    _skip_reason = "no text"

    def __init__(
        self,
        encoder: MultiVectorEncoder,
        path: str | Path | None = None,
        *,
        chunk_size: int | None = None,
        overlap: int = 32,
        **kwargs: Any,
    ) -> None:
        counter = encoder.token_counter if isinstance(encoder, TokenAwareEncoder) else None
        capacity = encoder.document_capacity if isinstance(encoder, TokenAwareEncoder) else None
        if counter is None or capacity is None:
            raise ConfigError("ColBERTRetriever needs an encoder with token_counter and document_capacity")
        if chunk_size is not None and chunk_size > capacity:
            raise ConfigError(f"chunk_size {chunk_size} exceeds the encoder's capacity of {capacity} tokens")
        size = chunk_size or capacity
        self.chunker = TokenChunker(counter, chunk_size=size, overlap=min(overlap, size // 2))
        super().__init__(encoder, path, **kwargs)

    @property
    def unit_config(self) -> Mapping[str, object]:
        return {**self.chunker.config, "compression": self.settings.index_config}

    def _units(self, document: Document) -> Iterator[Unit] | None:
        return ((chunk, chunk.text) for chunk in self.chunker.chunk(document))
