"""chromadb store: embedded ``PersistentClient`` by default, ``HttpClient`` for a Chroma server.

Embeddings are always passed explicitly (no Chroma embedding function is ever created, so nothing downloads),
and telemetry is off.

Chroma has no transaction spanning a delete and an add, so replacing a document (delete its old chunks, add the
new ones) could be cut in half by a crash, losing the old version. In a local index the replacement is first
written to ``pending-replace.json`` (chunks and vectors); the next writer to open the index finishes it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import math
import os
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ragloom.errors import ConfigError, EndpointError, IndexCorruptError, InvalidInputError, MissingExtraError
from ragloom.protocols import Filters
from ragloom.stores.files import atomic_write_json, crash_point, read_json, remove_durably
from ragloom.stores.rows import check_filters
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


def _text_crc(text: str, described: str) -> int:
    return zlib.crc32(described.encode("utf-8", "surrogatepass"), zlib.crc32(text.encode("utf-8", "surrogatepass")))


def _where(filters: Filters | None) -> dict[str, Any] | None:
    check_filters(filters)
    if not filters:
        return None
    clauses = [{(k if k in _RESERVED else f"m.{k}"): {"$eq": v}} for k, v in filters.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class _ServerCalls:
    """Wraps a chromadb client or collection on a server: a dropped connection becomes an EndpointError that
    names the server and the fix, instead of an httpx traceback."""

    def __init__(self, inner: Any, url: str) -> None:
        self._inner, self._url = inner, url

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            import httpx

            try:
                return attr(*args, **kwargs)
            except httpx.TransportError as exc:
                raise EndpointError(
                    f"The Chroma server at {self._url} did not answer ({exc}); start it (`chroma run --path DIR "
                    "--port N`) or fix the URL (--chroma-url); an interrupted ingest is finished by the next "
                    "ingest or `ragloom index recover`"
                ) from exc

        return call


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
        tenant: str | None = None,
        database: str | None = None,
        min_free_mb: int = MIN_FREE_MB,
    ) -> None:
        self.state_missing = False
        """True when an embedded store had no database file (or an empty one) when opened."""
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
            server: dict[str, Any] = {"tenant": tenant} if tenant else {}
            if database:
                server["database"] = database
            try:
                self._client = chromadb.HttpClient(
                    host=parsed.hostname,
                    port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                    ssl=parsed.scheme == "https",
                    headers=headers,
                    settings=settings,
                    **server,
                )
            except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
                raise EndpointError(
                    f"The Chroma server at {url} did not answer ({exc}); start it (`chroma run --path DIR --port N`) "
                    "or fix the URL (--chroma-url)"
                ) from exc
        elif tenant or database:
            raise ConfigError("Chroma tenant and database apply to a Chroma server; pass url= as well")
        elif path is None:
            self._client = chromadb.EphemeralClient(settings=settings)
        else:
            sqlite_file = Path(path) / "chroma.sqlite3"
            self.state_missing = not sqlite_file.exists() or sqlite_file.stat().st_size == 0
            Path(path).mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(path), settings=settings)
        self.url, self.path, self.metric, self.collection_name = url, path, metric, collection
        self._settings = settings
        self.min_free_mb = min_free_mb
        if url:
            self._client = _ServerCalls(self._client, url)
        self._collection = self._client.get_or_create_collection(
            name=collection,
            embedding_function=None,
            configuration={"hnsw": {"space": metric}},
        )
        if url:
            self._collection = _ServerCalls(self._collection, url)
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

    def reload(self) -> None:
        """Another process committed since this one opened the store: forget cached document ids and, when embedded,
        reopen chroma (its in-process segments do not see another process's writes: a long-lived reader would keep
        answering from the old state, or fail with "Nothing found on disk")."""
        with self._lock:
            self._known = None
            if self.path is not None and not self.url:
                import chromadb
                from chromadb.api.shared_system_client import SharedSystemClient

                # chroma shares one system per path in a process and looks it up by path on every call: register a
                # fresh one (every client of this path moves to it); the stale one is not stopped under anyone
                SharedSystemClient._identifier_to_system.pop(self._client._identifier, None)
                self._client = chromadb.PersistentClient(path=str(self.path), settings=self._settings)
            self._collection = self._client.get_or_create_collection(
                name=self.collection_name, embedding_function=None, configuration={"hnsw": {"space": self.metric}}
            )

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
        rows, dim = (int(n) for n in data["shape"])
        vectors = np.frombuffer(base64.b64decode(data["vectors"]), dtype=np.float32).reshape(rows, dim)
        if vectors.shape[0] != len(chunks):
            raise InvalidInputError(f"{self._pending}: {len(chunks)} chunks but {vectors.shape[0]} vectors")
        with self._lock:
            self._apply(list(data["doc_ids"]), chunks, vectors)
            remove_durably(self._pending)
        return len(data["doc_ids"])

    @staticmethod
    def _metadata(chunk: Chunk) -> dict[str, Any]:
        described = json.dumps({k: v for k, v in chunk.to_dict().items() if k != "text"}, ensure_ascii=False)
        meta: dict[str, Any] = {
            "doc_id": chunk.doc_id,
            "source": chunk.source,
            "_chunk": described,
            "_crc": _text_crc(chunk.text, described),
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
        where = _where(filters)
        count = len(self)
        if count == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        with self._reading():
            result = self._collection.query(
                query_embeddings=queries,
                n_results=min(k, count),
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        out: list[list[tuple[Chunk, float]]] = []
        for docs, metas, dists in zip(result["documents"], result["metadatas"], result["distances"]):
            row = []
            for text, meta, distance in zip(docs, metas, dists):
                row.append((self._checked_chunk(text or "", meta), self._checked_score(float(distance))))
            out.append(row)
        return out

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """chroma's own errors about its files (InternalError; sqlite's DatabaseError) become IndexCorruptError."""
        import sqlite3

        from chromadb.errors import InternalError

        try:
            yield
        except (InternalError, sqlite3.DatabaseError) as exc:
            raise self._damaged(f"chroma could not read its files ({type(exc).__name__}: {exc})") from exc

    def _damaged(self, what: str) -> IndexCorruptError:
        where = self.url or self.path
        return IndexCorruptError(
            f"The chroma index at {where} is damaged: {what}. Restore it from a backup, or delete it and re-ingest the "
            "sources (`ragloom index verify` checks every retriever of an index)."
        )

    def _checked_chunk(self, text: str, meta: Mapping[str, Any]) -> Chunk:
        """The chunk a hit stands for, refused when its stored text no longer matches its checksum."""
        try:
            described = str(meta["_chunk"])
            stored = meta.get("_crc")
            if stored is not None and int(stored) != _text_crc(text, described):
                raise self._damaged(f"the text of a chunk of {meta.get('doc_id')!r} was changed on disk")
            data = json.loads(described)
            data["text"] = text
            return Chunk.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._damaged(f"a chunk's metadata is malformed ({exc})") from exc

    def _checked_score(self, distance: float) -> float:
        """1 - distance; for cosine a score outside [-1, 1] can only come from a damaged HNSW file."""
        score = 1.0 - distance
        if not math.isfinite(score) or (self.metric == "cosine" and abs(score) > 1.0 + 1e-3):
            raise self._damaged(f"a search scored {score:.3f}, outside what {self.metric} similarity can give")
        return score

    def verify(self) -> dict[str, int]:
        """Read every chunk back and check its text checksum; returns counts, raises IndexCorruptError."""
        with self._reading():
            found = self._collection.get(include=["metadatas", "documents"])
        for text, meta in zip(found["documents"] or [], found["metadatas"] or []):
            self._checked_chunk(text or "", meta)
        return {"chunks": len(found["ids"]), "documents": len({m["doc_id"] for m in found["metadatas"] or []})}

    def doc_ids(self) -> set[str]:
        with self._lock:
            if self._known is not None:
                return set(self._known)
            with self._reading():
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
        with self._reading():
            return int(self._collection.count())

    def close(self) -> None:
        # not Client.close(): that stops the system chroma shares between every client of this path in the process
        self._collection = None
        self._client = None
