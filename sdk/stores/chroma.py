"""chromadb store: embedded ``PersistentClient`` by default, ``HttpClient`` for a Chroma server.

Embeddings are always passed explicitly (no Chroma embedding function is ever created, so nothing downloads),
and telemetry is off.

Chroma has no transaction spanning a delete and an add, so replacing a document (delete its old chunks, add the
new ones) could be cut in half by a crash, losing the old version. In a local index the replacement is first
written to ``pending-replace.json`` (chunks and vectors); the next writer to open the index finishes it.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ragloom.errors import ConfigError, InvalidInputError, MissingExtraError
from ragloom.persistence import atomic_write_json, crash_point, read_json, remove_durably
from ragloom.protocols import Filters
from ragloom.types import Chunk

__all__ = ["ChromaVectorStore"]

_RESERVED = {"doc_id", "source", "page"}
PENDING_NAME = "pending-replace.json"
MIN_FREE_MB = 64
"""A local store refuses to write with less free disk than this: chromadb 1.x hangs for ever (it never fails)
when its disk fills up during a write, so ragloom stops short of that."""


def _import_chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingExtraError("chromadb", "chroma", "the chromadb store") from exc
    return chromadb


def _where(filters: Filters | None) -> dict[str, Any] | None:
    if not filters:
        return None
    clauses = [{(k if k in _RESERVED else f"m.{k}"): {"$eq": v}} for k, v in filters.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaVectorStore:
    """Chunks and vectors in a chromadb collection (cosine space for normalised vectors, else inner product)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        collection: str = "ragloom",
        metric: str = "cosine",
        headers: dict[str, str] | None = None,
        min_free_mb: int = MIN_FREE_MB,
    ) -> None:
        if metric not in ("cosine", "ip"):
            raise ConfigError(f"ChromaVectorStore metric must be 'cosine' or 'ip', got {metric!r}")
        chromadb = _import_chromadb()
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if not url:
            # Pinned: chroma's settings read CHROMA_API_IMPL from the environment, and its legacy Python segment
            # API unpickles index_metadata.pickle (code execution from a planted file). The Rust core reads that
            # file with a data-only decoder.
            settings = Settings(
                anonymized_telemetry=False, allow_reset=False, chroma_api_impl="chromadb.api.rust.RustBindingsAPI"
            )
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigError(f"Chroma server URL must look like http://host:8000, got {url!r}")
            self._client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                headers=headers,
                settings=settings,
            )
        elif path is None:
            self._client = chromadb.EphemeralClient(settings=settings)
        else:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=settings)
        self.url, self.path, self.metric, self.collection_name = url, path, metric, collection
        self.min_free_mb = min_free_mb
        self._collection = self._client.get_or_create_collection(
            name=collection,
            embedding_function=None,
            configuration={"hnsw": {"space": metric}},
        )
        self._lock = threading.RLock()
        self._pending = Path(path) / PENDING_NAME if path is not None and not url else None
        # Document ids, read once and then kept current by our own writes: only once this store has written (so
        # its process holds the index's writer lock and nobody else writes) and only when embedded (a chroma
        # server may take writes from other clients). A reader always asks chroma.
        self._known: set[str] | None = None
        self._writer = False

    @property
    def config(self) -> dict[str, object]:
        return {"kind": "chroma", "metric": self.metric, "collection": self.collection_name}

    def replace_documents(self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
            raise InvalidInputError(f"Expected {len(chunks)} vectors as a 2-D array, got shape {vectors.shape}")
        if not np.all(np.isfinite(vectors)):
            raise InvalidInputError("Vectors contain NaN or Inf; check the encoder's output")
        dropping = sorted(set(doc_ids) | {c.doc_id for c in chunks})
        with self._lock:
            self._writer = not self.url
            self._check_free_space(vectors.nbytes + sum(len(c.text) for c in chunks))
            if self._pending is not None:
                atomic_write_json(
                    self._pending,
                    {
                        "doc_ids": dropping,
                        "chunks": [c.to_dict() for c in chunks],
                        "shape": list(vectors.shape),
                        "vectors": base64.b64encode(np.ascontiguousarray(vectors).tobytes()).decode("ascii"),
                    },
                )
                crash_point("chroma.pending")
            self._apply(dropping, chunks, vectors)
            if self._pending is not None:
                remove_durably(self._pending)

    def _check_free_space(self, payload: int = 0) -> None:
        if self.url or self.path is None:
            return
        stats = os.statvfs(self.path)
        free = stats.f_bavail * stats.f_frsize
        needed = (self.min_free_mb << 20) + 4 * payload
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"Only {free / 2**20:.1f} MiB free where the chroma index at {self.path} lives (need "
                f"{needed / 2**20:.1f} MiB); chromadb hangs instead of failing when its disk fills, so nothing was "
                "written. Free some space (or lower ChromaVectorStore(min_free_mb=...)) and retry",
            )

    def _apply(self, dropping: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self.delete_documents(dropping)
        crash_point("chroma.deleted")
        batch = max(1, int(self._client.get_max_batch_size()))
        for begin in range(0, len(chunks), batch):
            part = chunks[begin : begin + batch]
            self._collection.add(
                ids=[c.id for c in part],
                embeddings=vectors[begin : begin + len(part)],
                documents=[c.text for c in part],
                metadatas=[self._metadata(c) for c in part],
            )
            if self._known is not None:
                self._known.update(c.doc_id for c in part)
            crash_point("chroma.added")

    def needs_recovery(self) -> bool:
        """True when a replacement was interrupted (call :meth:`recover` while holding the writer lock)."""
        return self._pending is not None and self._pending.exists()

    def recover(self) -> int:
        """Finish an interrupted replacement; returns the number of documents it covered."""
        if not self.needs_recovery():
            return 0
        assert self._pending is not None
        data = read_json(self._pending)
        chunks = [Chunk.from_dict(c) for c in data["chunks"]]
        shape = tuple(int(n) for n in data["shape"])
        vectors = np.frombuffer(base64.b64decode(data["vectors"]), dtype=np.float32).reshape(shape)
        if vectors.shape[0] != len(chunks):
            raise InvalidInputError(f"{self._pending}: {len(chunks)} chunks but {vectors.shape[0]} vectors")
        with self._lock:
            self._apply(list(data["doc_ids"]), chunks, vectors)
            remove_durably(self._pending)
        return len(data["doc_ids"])

    @staticmethod
    def _metadata(chunk: Chunk) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "doc_id": chunk.doc_id,
            "source": chunk.source,
            "_chunk": json.dumps({k: v for k, v in chunk.to_dict().items() if k != "text"}, ensure_ascii=False),
        }
        if chunk.page is not None:
            meta["page"] = chunk.page
        meta.update({f"m.{k}": v for k, v in chunk.metadata.items()})
        return meta

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        removed = 0
        ids = list(dict.fromkeys(doc_ids))
        with self._lock:
            self._writer = not self.url
            self._check_free_space()
            for begin in range(0, len(ids), 500):  # one query per 500 documents, not one per document
                part = ids[begin : begin + 500]
                where = {"doc_id": part[0]} if len(part) == 1 else {"doc_id": {"$in": part}}
                found = self._collection.get(where=where, include=[])
                if found["ids"]:
                    self._collection.delete(ids=found["ids"])
                    removed += len(found["ids"])
                if self._known is not None:
                    self._known.difference_update(part)
        return removed

    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None) -> list[list[tuple[Chunk, float]]]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if not np.all(np.isfinite(queries)):
            raise InvalidInputError("Query vectors contain NaN or Inf; check the encoder's output")
        count = len(self)
        if count == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        result = self._collection.query(
            query_embeddings=queries,
            n_results=min(k, count),
            where=_where(filters),
            include=["documents", "metadatas", "distances"],
        )
        out: list[list[tuple[Chunk, float]]] = []
        for docs, metas, dists in zip(result["documents"], result["metadatas"], result["distances"]):
            row = []
            for text, meta, distance in zip(docs, metas, dists):
                data = json.loads(str(meta["_chunk"]))
                data["text"] = text or ""
                row.append((Chunk.from_dict(data), 1.0 - float(distance)))
            out.append(row)
        return out

    def doc_ids(self) -> set[str]:
        with self._lock:
            if self._known is not None:
                return set(self._known)
            found = self._collection.get(include=["metadatas"])
            ids = {str(m["doc_id"]) for m in found["metadatas"] or []}
            if self._writer:
                self._known = ids
            return set(ids)

    def chunks(self) -> list[Chunk]:
        """Every chunk in the collection (read in pages of 5,000), ordered by chunk id."""
        out: list[Chunk] = []
        with self._lock:
            total = len(self)
            for offset in range(0, total, 5000):
                found = self._collection.get(include=["documents", "metadatas"], limit=5000, offset=offset)
                for text, meta in zip(found["documents"] or [], found["metadatas"] or []):
                    data = json.loads(str(meta["_chunk"]))
                    data["text"] = text or ""
                    out.append(Chunk.from_dict(data))
        return sorted(out, key=lambda c: c.id)

    def __len__(self) -> int:
        return int(self._collection.count())

    def close(self) -> None:
        # PersistentClient has no close in chromadb 1.x; dropping references releases the system
        self._collection = None  # type: ignore[assignment]
        self._client = None  # type: ignore[assignment]
