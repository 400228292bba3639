"""The shared body of every chunk-and-embed retriever: chunker + encoder + vector store + manifest + lock.

Documents are indexed in small batches, each written in one store step, so an interrupted ingest loses at most
the batch in flight. The first write takes the index directory's writer lock and holds it until ``close()``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ragloom._fields import _SURROGATE
from ragloom.chunking import TokenChunker, WordTokenizer
from ragloom.errors import ConfigError, InvalidInputError, RagloomWarning
from ragloom.index_folder import IndexFolder, stored_chunk_size
from ragloom.persistence import Manifest
from ragloom.protocols import (
    AsyncQueryEncoder,
    ChunkListing,
    DenseEncoder,
    Filters,
    PersistentStore,
    ProgressCallback,
    TokenAwareEncoder,
)
from ragloom.stores import InMemoryVectorStore, VectorStore
from ragloom.stores.files import crash_point
from ragloom.types import Chunk, Document, Hit, ScoreKind, escape_undecodable

__all__ = [
    "DEFAULT_CHUNK_TOKENS",
    "STORE_NAMES",
    "ChunkEmbedder",
    "ChunkedVectorRetriever",
    "ProgressCallback",
    "RetrieverMethods",
    "StoredRetrieverMethods",
    "check_documents",
    "check_query",
    "chunk_batches",
    "default_chunker",
    "warn_empty",
]

ChunkEmbedder = Callable[[Sequence[tuple[Document, list[Chunk]]]], np.ndarray]
"""Embeds the chunks of several documents at once (rows in document, then chunk order)."""

_BATCH_CHUNKS = 256

COMPRESSED_STORES: dict[str, dict[str, Any]] = {
    "binary": {"first_stage": "binary", "rescore": "fp32"},
    "int8": {"first_stage": "int8", "rescore": "fp32"},
    "compressed": {},
}
"""Store names served by :class:`ragloom.stores.compressed.CompressedVectorStore` and the settings each implies
(``store_options`` override them)."""
STORE_NAMES = ("chroma", "memory", *COMPRESSED_STORES)
"""Every store a chunked vector retriever accepts by name."""

DEFAULT_CHUNK_TOKENS = 512
"""The chunk size when none is given: a long-context encoder (nomic: 8,192 tokens) would otherwise make chunks too
large to cite or to fit several in a prompt."""
_R = TypeVar("_R", bound="RetrieverMethods")


def check_query(query: object, k: object) -> None:
    """Typed errors for the two most common search mistakes."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"A query must be a non-empty string, got {query!r}")
    if not query.isascii() and _SURROGATE.search(query) is not None:
        raise InvalidInputError(
            f"The query {escape_undecodable(query)!r} holds bytes that are not valid UTF-8 (shown as \\xNN); "
            "re-type it or convert it to UTF-8 (e.g. with iconv)"
        )
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")


def check_documents(documents: Sequence[Document]) -> list[Document]:
    """Documents only, ids unique within the batch."""
    if isinstance(documents, Document):
        documents = [documents]
    docs = list(documents)
    for doc in docs:
        if not isinstance(doc, Document):
            raise InvalidInputError(
                f"Retrievers index ragloom.Document objects, got {type(doc).__name__}; "
                "use ragloom.loaders.load_file or Document(id=..., text=...)"
            )
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise InvalidInputError(f"Duplicate document ids in one batch: {dupes[:5]}")
    return docs


def chunk_batches(
    pairs: list[tuple[Document, list[Chunk]]], size: int = _BATCH_CHUNKS
) -> Iterator[list[tuple[Document, list[Chunk]]]]:
    """Whole documents with their chunks, about ``size`` chunks a batch: the unit a retriever commits at once."""
    batch: list[tuple[Document, list[Chunk]]] = []
    count = 0
    for pair in pairs:
        batch.append(pair)
        count += len(pair[1])
        if count >= size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def warn_empty(pairs: Sequence[tuple[Document, list[Chunk]]]) -> None:
    """One warning naming the documents that have no text to index (they are skipped, not an error)."""
    empty = [doc.id for doc, chunks in pairs if not chunks]
    if empty:
        warnings.warn(
            f"{len(empty)} document(s) have no text and add nothing to the index: {empty[:5]}",
            RagloomWarning,
            stacklevel=3,
        )


def default_chunker(
    encoder: object, chunk_size: int | None, overlap: int, *, stored: int | None = None
) -> TokenChunker:
    """Chunks measured in the encoder's own tokens, at most its capacity (so nothing is ever cut). Without
    ``chunk_size``: the size an existing index was built with (``stored``) when it fits, else the capacity capped
    at :data:`DEFAULT_CHUNK_TOKENS` (256 when the capacity is unknown). By words, with a warning, for an encoder
    that exposes no tokenizer."""
    counter = encoder.token_counter if isinstance(encoder, TokenAwareEncoder) else None
    capacity = encoder.document_capacity if isinstance(encoder, TokenAwareEncoder) else None
    if chunk_size is None and stored and (not capacity or stored <= capacity):
        chunk_size = stored
    if counter is None:
        warnings.warn(
            f"{type(encoder).__name__} exposes no tokenizer; chunking by words instead of model tokens",
            RagloomWarning,
            stacklevel=3,
        )
        return TokenChunker(WordTokenizer(), chunk_size=chunk_size or 128, overlap=min(overlap, 16))
    if chunk_size and capacity and chunk_size > capacity:
        raise ConfigError(f"chunk_size {chunk_size} exceeds the encoder's capacity of {capacity} tokens")
    size = chunk_size or (min(capacity, DEFAULT_CHUNK_TOKENS) if capacity else 256)
    return TokenChunker(counter, chunk_size=size, overlap=min(overlap, size // 2))


class RetrieverMethods:
    """What every retriever derives from its own ``search_many``, ``close`` and ``__len__``: ``search``, the async
    twins (in a worker thread, so the event loop keeps running while a model encodes), the context manager and a
    repr. A flat mixin with no state."""

    _name: str
    path: Path | None
    _count_label = "chunks"

    def search_many(  # pragma: no cover - every retriever defines its own
        self, queries: Sequence[str], k: int = 10, filters: Filters | None = None
    ) -> list[list[Hit]]:
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every retriever defines its own
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - every retriever defines its own
        raise NotImplementedError

    def search(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        return self.search_many([query], k, filters)[0]

    async def asearch(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        return await asyncio.to_thread(self.search, query, k, filters)

    async def asearch_many(
        self, queries: Sequence[str], k: int = 10, filters: Filters | None = None
    ) -> list[list[Hit]]:
        return await asyncio.to_thread(self.search_many, queries, k, filters)

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"{type(self).__name__}(name={self._name!r}, {where}, {self._count_label}={len(self)})"


class StoredRetrieverMethods(RetrieverMethods):
    """What every retriever over a ragloom store shares: ``delete``, ``doc_ids``, ``len``, the manifest and writer
    lock of its :class:`IndexFolder`, and ``close``. Needs ``store`` and ``_folder`` (None in memory); a retriever
    whose manifest records more overrides ``_store_config`` or ``_counts``."""

    store: Any
    _folder: IndexFolder | None

    @property
    def manifest(self) -> Manifest | None:
        """The index's manifest (None in memory, or before the first write to a new directory)."""
        return self._folder.manifest if self._folder is not None else None

    def delete(self, doc_ids: Sequence[str]) -> int:
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        self._acquire_writer()
        removed: int = self.store.delete_documents(list(doc_ids))
        self._save_manifest()
        return removed

    def doc_ids(self) -> set[str]:
        ids: set[str] = self.store.doc_ids()
        return ids

    def chunks(self) -> list[Chunk]:
        """Every chunk indexed (with its text), in index order; what label-free calibration samples from."""
        if not isinstance(self.store, ChunkListing):
            raise ConfigError(f"The {type(self.store).__name__} store cannot list its chunks")
        return self.store.chunks()

    def __len__(self) -> int:
        return len(self.store)

    def _searchable(self, queries: Sequence[str], k: int) -> bool:
        """Typed errors for bad queries; False when there is nothing to search (no queries, an empty index). A
        reader first picks up what another process committed since it loaded."""
        for query in queries:
            check_query(query, k)
        if self._folder is not None:
            self._folder.refresh(self._reload_store)
        return bool(queries) and len(self.store) > 0

    def _store_config(self) -> dict[str, Any]:
        return dict(self.store.config)

    def _counts(self) -> dict[str, int]:
        return {"chunks": len(self.store), "documents": len(self.store.doc_ids())}

    def acquire_writer(self) -> None:
        """Take the index directory's writer lock (held until ``close``), reloading what another process committed
        since this one opened the index; raises IndexLockedError while another process writes."""
        self._acquire_writer()

    def _acquire_writer(self) -> None:
        if self._folder is not None:  # the manifest goes down before the first vector
            self._folder.acquire(self.store, self._store_config(), self._counts, reload=self._reload_store)

    def _reload_store(self) -> None:
        if isinstance(self.store, PersistentStore):
            self.store.reload()

    def _check_store_on_open(self) -> None:
        """A store whose files vanished under a manifest that counts chunks is damage, not an empty index."""
        if self._folder is not None and isinstance(self.store, PersistentStore) and self.store.state_missing:
            self._folder.check_not_emptied(len(self), str(self.store.path or self.path))

    def _save_manifest(self) -> None:
        if self._folder is not None:
            self._folder.save(self._store_config(), self._counts())

    def close(self) -> None:
        """Release the store and the writer lock (every write is already committed)."""
        self.store.close()
        if self._folder is not None:
            self._folder.release()


class ChunkedVectorRetriever(StoredRetrieverMethods):
    """Chunk → embed → store, behind the :class:`ragloom.protocols.Retriever` contract."""

    kind = "vector"

    def __init__(
        self,
        encoder: DenseEncoder,
        path: str | Path | None = None,
        *,
        store: str | VectorStore = "memory",
        chunker: TokenChunker | None = None,
        chunk_size: int | None = None,
        overlap: int = 32,
        name: str | None = None,
        chroma_url: str | None = None,
        chroma_collection: str = "ragloom",
        chunk_embedder: ChunkEmbedder | None = None,
        manifest_extra: Mapping[str, Any] | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.encoder = encoder
        self.path = Path(path) if path is not None else None
        self._name = name or self.kind
        self.chunker = chunker or default_chunker(encoder, chunk_size, overlap, stored=stored_chunk_size(path))
        self._embed = chunk_embedder or self._embed_texts
        normalized = bool(encoder.fingerprint.get("normalize", False))
        self._score_kind: ScoreKind = "cosine" if normalized else "dot"
        self._folder: IndexFolder | None = None
        if self.path is not None:
            self._folder = IndexFolder(
                self.path,
                kind=self.kind,
                fingerprint=encoder.fingerprint,
                units=self.chunker.config,
                extra=manifest_extra,
            )
            if self._folder.manifest is not None:
                stored_store = self._folder.manifest.store.get("kind")
                wanted = store if isinstance(store, str) else store.config.get("kind")
                wanted = "compressed" if wanted in COMPRESSED_STORES else wanted
                if stored_store and wanted != stored_store and not chroma_url:
                    raise ConfigError(
                        f"The index at {self.path} uses the {stored_store!r} store; open it with store="
                        f"{stored_store!r} (asked for {wanted!r})"
                    )
        self.store = self._make_store(store, normalized, chroma_url, chroma_collection, store_options or {})
        self._check_store_on_open()  # a reader never writes: an interrupted store write is finished by a writer

    # -- construction helpers -----------------------------------------------------------------------------------
    def _make_store(
        self, store: str | VectorStore, normalized: bool, url: str | None, collection: str, options: Mapping[str, Any]
    ) -> VectorStore:
        if not isinstance(store, str):
            return store
        if options and store not in COMPRESSED_STORES:
            raise ConfigError(
                f"store_options apply to the compressed stores {sorted(COMPRESSED_STORES)}, not {store!r}"
            )
        if store in COMPRESSED_STORES:
            from ragloom.stores.compressed import CompressedVectorStore

            settings = {**COMPRESSED_STORES[store], **options}
            try:
                return CompressedVectorStore(
                    self.path / "compressed" if self.path else None, dim=self.encoder.dim, **settings
                )
            except TypeError as exc:
                raise ConfigError(
                    f"Unknown store option ({exc}); use first_stage, rescore, oversample, flush_rows, use_faiss"
                ) from exc
        if store == "memory":
            return InMemoryVectorStore(self.path / "memory" if self.path else None, dim=self.encoder.dim)
        if store == "chroma":
            from ragloom.stores.chroma import ChromaVectorStore

            return ChromaVectorStore(
                self.path / "chroma" if self.path else None,
                url=url,
                collection=collection,
                metric="cosine" if normalized else "ip",
            )
        raise ConfigError(f"Unknown store {store!r}; use one of {', '.join(STORE_NAMES)} or a VectorStore instance")

    def _embed_texts(self, pairs: Sequence[tuple[Document, list[Chunk]]]) -> np.ndarray:
        return self.encoder.encode_documents([c.text for _, chunks in pairs for c in chunks])

    # -- the Retriever contract ---------------------------------------------------------------------------------
    @property
    def score_kind(self) -> ScoreKind:
        """What its hits' scores are: ``cosine`` for a normalising encoder, else ``dot``."""
        return self._score_kind

    @property
    def name(self) -> str:
        return self._name

    def add(self, documents: Sequence[Document], *, progress: ProgressCallback | None = None) -> list[Chunk]:
        docs = check_documents(documents)
        self._acquire_writer()
        pairs = [(doc, self.chunker.chunk(doc)) for doc in docs]
        warn_empty(pairs)
        added: list[Chunk] = []
        done = 0
        for batch in chunk_batches(pairs):
            chunks = [c for _, cs in batch for c in cs]
            vectors = self._embed(batch) if chunks else np.zeros((0, self.encoder.dim), dtype=np.float32)
            self.store.replace_documents([doc.id for doc, _ in batch], chunks, vectors)
            crash_point("retrieval.stored")
            added.extend(chunks)
            done += len(batch)
            self._save_manifest()
            crash_point("retrieval.manifest")
            if progress:
                progress(done, len(docs))
        return added

    def search_many(self, queries: Sequence[str], k: int = 10, filters: Filters | None = None) -> list[list[Hit]]:
        if not self._searchable(queries, k):
            return [[] for _ in queries]
        vectors = self.encoder.encode_queries(list(queries))
        return self._hits(self.store.search(vectors, k, filters))

    async def asearch_many(
        self, queries: Sequence[str], k: int = 10, filters: Filters | None = None
    ) -> list[list[Hit]]:
        """Async search; an encoder with ``aencode_queries`` (a framework's async embeddings) is awaited, the rest
        runs in a worker thread."""
        if not isinstance(self.encoder, AsyncQueryEncoder):
            return await asyncio.to_thread(self.search_many, queries, k, filters)
        if not self._searchable(queries, k):
            return [[] for _ in queries]
        vectors = await self.encoder.aencode_queries(list(queries))
        return self._hits(await asyncio.to_thread(self.store.search, vectors, k, filters))

    async def asearch(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        return (await self.asearch_many([query], k, filters))[0]

    def _hits(self, rows: Sequence[Sequence[tuple[Chunk, float]]]) -> list[list[Hit]]:
        return [
            [
                Hit(chunk=chunk, score=score, score_kind=self._score_kind, retriever=self._name, rank=rank)
                for rank, (chunk, score) in enumerate(row, start=1)
            ]
            for row in rows
        ]
