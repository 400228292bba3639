"""The commit log of :class:`ragloom.stores.compressed.CompressedVectorStore`: its SQLite schema and the writes
that add and drop chunks inside the store's transaction (the store holds the writer lock)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.types import Chunk

__all__ = ["PARAMS", "SCHEMA", "drop_documents", "insert_chunks"]

PARAMS = 500  # SQLite host parameters per statement
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    chunk TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS segments (id INTEGER PRIMARY KEY, rows INTEGER NOT NULL, files TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (rowid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
"""The commit log: chunks (rowid = position), segments, tombstones, and settings/threshold/IVF records in meta."""


def insert_chunks(
    db: sqlite3.Connection, chunks: Sequence[Chunk], vectors: np.ndarray | None, where: Path | None
) -> np.ndarray:
    """Insert chunks (with their float32 vectors, or none when they go straight to a segment): their rowids.

    One ``executemany``: the writer lock and the open transaction make the new rowids consecutive
    (AUTOINCREMENT), which is checked rather than assumed."""
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    rows = (
        (
            c.id,
            c.doc_id,
            json.dumps(c.to_dict(), ensure_ascii=False),
            vectors[i].tobytes() if vectors is not None else None,
        )
        for i, c in enumerate(chunks)
    )
    try:
        db.executemany("INSERT INTO chunks(id, doc_id, chunk, vector) VALUES (?, ?, ?, ?)", rows)
    except sqlite3.IntegrityError as exc:
        raise InvalidInputError(f"Chunk id already indexed under another document ({exc})") from exc
    last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
    first = last - len(chunks) + 1
    found = db.execute("SELECT rowid FROM chunks WHERE id = ?", (chunks[0].id,)).fetchone()
    if found is None or int(found[0]) != first:  # pragma: no cover - SQLite guarantees it under our lock
        raise IndexCorruptError(f"{where}: rowids of a batch are not consecutive; re-index")
    return np.arange(first, last + 1, dtype=np.int64)


def drop_documents(db: sqlite3.Connection, doc_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Delete the chunks of ``doc_ids`` inside the caller's transaction: (rows in segments, rows in the tail)."""
    found: list[tuple[int, int]] = []
    for start in range(0, len(doc_ids), PARAMS):
        part = list(doc_ids[start : start + PARAMS])
        marks = ",".join("?" * len(part))
        found += db.execute(f"SELECT rowid, vector IS NULL FROM chunks WHERE doc_id IN ({marks})", part).fetchall()
        db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
    flushed = np.asarray(sorted(r for r, f in found if f), dtype=np.int64)
    db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(r),) for r in flushed])
    return flushed, np.asarray(sorted(r for r, f in found if not f), dtype=np.int64)
