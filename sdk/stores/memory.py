"""Exact in-memory vector store: a float32 matrix searched by matmul, persisted in SQLite.

SQLite gives transactional, crash-safe writes (WAL) without pickle; the matrix is rebuilt from it on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.protocols import Filters
from ragloom.stores.files import connect_sqlite, crash_point
from ragloom.stores.rows import check_filters, check_vectors, chunk_matches, top_k
from ragloom.types import Chunk

__all__ = ["InMemoryVectorStore", "check_filters", "chunk_matches", "top_k"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,
    chunk TEXT NOT NULL,
    vector BLOB NOT NULL,
    crc INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
"""


def _row_crc(text: str, blob: bytes) -> int:
    """CRC-32 of a row's chunk JSON and vector bytes: damage to either is found when the store loads."""
    return zlib.crc32(blob, zlib.crc32(text.encode("utf-8", "surrogatepass")))


class InMemoryVectorStore:
    """Exact search over all vectors. ``path=None`` keeps everything in memory only."""

    def __init__(self, path: str | Path | None = None, dim: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._dim = dim
        self._lock = threading.RLock()
        self._chunks: list[Chunk] = []
        self._matrix = np.zeros((0, dim or 0), dtype=np.float32)
        self._rows_by_doc: dict[str, list[int]] = {}
        self._db: sqlite3.Connection | None = None
        self._has_crc = True
        self.state_missing = True
        """True when the store had no database file (or an empty one) when opened."""
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            database = self.path / "vectors.sqlite"
            self.state_missing = not database.exists() or database.stat().st_size == 0
            self._db = connect_sqlite(database)
            try:
                self._db.executescript(_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(chunks)")}
            except sqlite3.DatabaseError as exc:
                raise IndexCorruptError(f"{database} is unreadable ({exc}); restore it or re-index") from exc
            self._has_crc = "crc" in columns  # indexes written before ragloom checked rows have none
            self._load()

    @property
    def config(self) -> dict[str, object]:
        return {"kind": "memory", "metric": "dot"}

    def reload(self) -> None:
        """Re-read every row (another process committed since this one loaded)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        crc = "crc" if self._has_crc else "NULL"
        try:
            rows = self._db.execute(f"SELECT chunk, vector, {crc} FROM chunks ORDER BY rowid").fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path}/vectors.sqlite is unreadable ({exc}); re-index") from exc
        try:
            for text, blob, stored in rows:
                if stored is not None and _row_crc(text, blob) != stored:
                    doc = json.loads(text).get("doc_id", "?") if text.startswith("{") else "?"
                    raise IndexCorruptError(
                        f"{self.path}/vectors.sqlite: a chunk of document {doc!r} fails its checksum (its text or "
                        "vector was changed on disk). Re-ingest that document's source, or restore the index."
                    )
            chunks = [Chunk.from_dict(json.loads(text)) for text, _, _ in rows]
            vectors = [np.frombuffer(blob, dtype=np.float32) for _, blob, _ in rows]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a damaged row: never guess or unpickle
            raise IndexCorruptError(f"{self.path}/vectors.sqlite holds a malformed row ({exc}); re-index") from exc
        if rows:
            dims = {v.shape[0] for v in vectors}
            if len(dims) != 1:
                raise IndexCorruptError(f"{self.path}: vectors of different sizes {sorted(dims)}; re-index")
            self._dim = self._dim or dims.pop()
            matrix = np.vstack(vectors)
        else:
            matrix = np.zeros((0, self._dim or 0), dtype=np.float32)
        self._set(chunks, matrix)

    def _set(self, chunks: list[Chunk], matrix: np.ndarray) -> None:
        self._chunks = chunks
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        rows: dict[str, list[int]] = {}
        for row, chunk in enumerate(chunks):
            rows.setdefault(chunk.doc_id, []).append(row)
        self._rows_by_doc = rows

    def replace_documents(self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        vectors = check_vectors(chunks, vectors, self._dim)
        with self._lock:
            dropping = set(doc_ids) | {c.doc_id for c in chunks}
            if self._db is not None:
                with self._db:  # one transaction: old chunks out, new chunks in
                    if not self._has_crc:
                        self._db.execute("ALTER TABLE chunks ADD COLUMN crc INTEGER")
                        self._has_crc = True
                    self._db.executemany("DELETE FROM chunks WHERE doc_id = ?", [(d,) for d in dropping])
                    crash_point("memory.deleted")
                    rows = []
                    for c, v in zip(chunks, vectors):
                        text, blob = json.dumps(c.to_dict(), ensure_ascii=False), v.tobytes()
                        rows.append((c.id, c.doc_id, text, blob, _row_crc(text, blob)))
                    self._db.executemany(
                        "INSERT OR REPLACE INTO chunks(id, doc_id, chunk, vector, crc) VALUES (?, ?, ?, ?, ?)", rows
                    )
                    crash_point("memory.inserted")
                crash_point("memory.committed")
            keep = self._keep_mask(dropping)
            kept_chunks = [c for c, k in zip(self._chunks, keep) if k]
            if len(chunks) and self._dim is None:
                self._dim = vectors.shape[1]
            base = self._matrix[keep] if self._matrix.shape[0] else np.zeros((0, self._dim or 0), np.float32)
            matrix = np.vstack([base, vectors]) if len(chunks) else base
            self._set(kept_chunks + list(chunks), matrix)

    def _keep_mask(self, doc_ids: set[str]) -> np.ndarray:
        keep = np.ones(len(self._chunks), dtype=bool)
        for doc_id in doc_ids:
            keep[self._rows_by_doc.get(doc_id, [])] = False
        return keep

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        with self._lock:
            dropping = set(doc_ids)
            keep = self._keep_mask(dropping)
            removed = int((~keep).sum())
            if self._db is not None:
                with self._db:
                    self._db.executemany("DELETE FROM chunks WHERE doc_id = ?", [(d,) for d in dropping])
                    crash_point("memory.deleting")
            self._set([c for c, k in zip(self._chunks, keep) if k], self._matrix[keep])
            return removed

    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None) -> list[list[tuple[Chunk, float]]]:
        check_filters(filters)
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if not np.all(np.isfinite(queries)):
            raise InvalidInputError("Query vectors contain NaN or Inf; check the encoder's output")
        with self._lock:
            chunks, matrix = self._chunks, self._matrix
        if not chunks or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        if queries.shape[1] != matrix.shape[1]:
            raise InvalidInputError(f"Query dimension {queries.shape[1]} != index dimension {matrix.shape[1]}")
        rows = np.arange(len(chunks))
        if filters:
            rows = np.array([i for i, c in enumerate(chunks) if chunk_matches(c, filters)], dtype=np.int64)
            if rows.size == 0:
                return [[] for _ in range(queries.shape[0])]
            matrix = matrix[rows]
        scores = queries @ matrix.T
        results = []
        for row_scores in scores:
            best = top_k(row_scores, k)
            results.append([(chunks[int(rows[i])], float(row_scores[i])) for i in best])
        return results

    def doc_ids(self) -> set[str]:
        return set(self._rows_by_doc)

    def chunks(self) -> list[Chunk]:
        """Every chunk stored, in row order."""
        with self._lock:
            return list(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
