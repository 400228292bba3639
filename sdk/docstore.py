"""The document store of a pipeline: every acknowledged document, whole, with a digest of its content.

An index directory keeps ``documents.sqlite`` beside its retrievers. A document is written here only after every
retriever committed it, so this table is the record of what has been acknowledged. It lets a re-ingest skip
documents whose content did not change, lets a failed batch put the previous version back, lets a new retriever be
built over what is already indexed, and lets ``ragloom index verify`` compare each retriever with it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ragloom.errors import IndexCorruptError
from ragloom.stores.files import connect_sqlite, crash_point
from ragloom.types import Document

__all__ = ["DOCSTORE_NAME", "DocumentStore", "document_digest", "document_from_json", "document_to_json"]

DOCSTORE_NAME = "documents.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    document TEXT NOT NULL
);
"""


def document_to_json(doc: Document) -> dict[str, Any]:
    """A Document as plain JSON (what the journal and the store keep): :meth:`Document.to_dict`."""
    return doc.to_dict()


def document_from_json(data: Mapping[str, Any]) -> Document:
    """Inverse of :func:`document_to_json`: :meth:`Document.from_dict` (InvalidInputError on a bad field)."""
    return Document.from_dict(data)


def document_digest(doc: Document) -> str:
    """sha256 of everything a retriever indexes from a document (text, pages, source, metadata)."""
    payload = json.dumps(document_to_json(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


class DocumentStore:
    """SQLite table of acknowledged documents (WAL, one transaction per batch). Safe to read from any process."""

    def __init__(self, path: str | Path | None) -> None:
        """``path`` None keeps the table in memory (a pipeline of in-memory retrievers)."""
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = connect_sqlite(self.path)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path} is unreadable ({exc}); rebuild the index from its sources") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path} is unreadable ({exc}); rebuild the index from its sources") from exc

    def digests(self, doc_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Document id -> content digest, for ``doc_ids`` (those stored) or for every document."""
        if doc_ids is None:
            return dict(self._query("SELECT id, digest FROM documents"))
        found: dict[str, str] = {}
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(self._query(f"SELECT id, digest FROM documents WHERE id IN ({marks})", part))
        return found

    def get(self, doc_ids: Iterable[str]) -> dict[str, Document]:
        """The stored documents among ``doc_ids``."""
        ids = list(doc_ids)
        out: dict[str, Document] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for doc_id, text in self._query(f"SELECT id, document FROM documents WHERE id IN ({marks})", part):
                out[doc_id] = self._decode(doc_id, text)
        return out

    def iter_documents(self, batch_size: int = 256) -> Iterator[list[Document]]:
        """Every stored document, in id order, ``batch_size`` at a time."""
        last = ""
        while True:
            rows = self._query(
                "SELECT id, document FROM documents WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
            )
            if not rows:
                return
            yield [self._decode(doc_id, text) for doc_id, text in rows]
            last = rows[-1][0]

    def _decode(self, doc_id: str, text: str) -> Document:
        try:
            return document_from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise IndexCorruptError(f"{self.path}: document {doc_id!r} is malformed ({exc}); re-ingest it") from exc

    def put(self, documents: Sequence[Document]) -> None:
        """Record ``documents`` as acknowledged (one transaction)."""
        rows = [
            (d.id, document_digest(d), json.dumps(document_to_json(d), ensure_ascii=False, sort_keys=True))
            for d in documents
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO documents(id, digest, document) VALUES (?, ?, ?)", rows)
            crash_point("docstore.put")

    def delete(self, doc_ids: Iterable[str]) -> None:
        with self._lock, self._db:
            self._db.executemany("DELETE FROM documents WHERE id = ?", [(d,) for d in doc_ids])

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM documents")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
