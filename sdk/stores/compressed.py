"""Compressed dense store: a first stage over compact codes in RAM, rescoring with vectors memory-mapped from disk.

``first_stage``: ``"binary"`` (one sign bit per dimension, centred on the first segment's mean; Hamming
distance — 32x less RAM than float32), ``"int8"`` (per-dimension calibrated scalar codes, 4x less) or ``"fp32"``
(exact, the reference, memory-mapped). ``rescore``: the top ``k * oversample`` candidates are rescored with the
``"fp32"`` or ``"int8"`` vectors, read from a memory-mapped ``.npy`` so only the codes need RAM; ``None`` keeps the
first stage's scores (int8 and fp32 only). The settings are recorded in the store and in the index manifest;
opening with other settings raises :class:`ragloom.errors.StoreMismatchError`.

A directory holds ``chunks.sqlite`` (chunks (rowid = position), settings, segments, tombstones: the commit log)
and the segments' ``.npy`` files (:mod:`ragloom.stores.compressed_segments`).

New rows live in SQLite with their float32 vector (the "tail", searched exactly in RAM) until ``flush_rows`` of
them gather; then one segment's files are written atomically and a single SQLite transaction records the segment
and drops the tail's vectors. A crash leaves either the tail or the segment, never half; unreferenced segment
files are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragloom.errors import IndexCorruptError, InvalidInputError, StoreMismatchError
from ragloom.protocols import Filters
from ragloom.stores.codes import BinaryCodes, Int8Calibration, Int8Codes, load_faiss, pack_bits
from ragloom.stores.compressed_segments import (
    OWNED,
    Segment,
    bytes_on_disk,
    encode_segment,
    open_segment,
    segment_candidates,
    write_segment_files,
)
from ragloom.stores.files import connect_sqlite, crash_point
from ragloom.stores.rows import check_filters, check_vectors, chunk_matches, top_k
from ragloom.types import Chunk

__all__ = ["CompressedVectorStore", "FirstStage", "Rescore"]

FirstStage = Literal["binary", "int8", "fp32"]
Rescore = Literal["fp32", "int8"]
_SCHEMA = """
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
_PARAMS = 500  # SQLite host parameters per statement
DEFAULT_OVERSAMPLE: dict[str, int] = {"binary": 100, "int8": 2, "fp32": 1}
"""Candidates per result when ``oversample`` is not given, from ``python -m benchmarks scale dense`` (docs/
compression.md): binary reached recall@10 1.000 of exact at 100 (0.94 at 30) on 1M clustered vectors; int8
was exact at 1."""


class CompressedVectorStore:
    """Dense top-k search over compact codes with rescoring; chunks stay in SQLite (``path=None``: a temp-free,
    in-memory SQLite and RAM segments). ``oversample``: candidates rescored per result (``k * oversample``;
    default per first stage, :data:`DEFAULT_OVERSAMPLE`)."""

    def __init__(
        self,
        path: str | Path | None = None,
        dim: int | None = None,
        *,
        first_stage: FirstStage = "binary",
        rescore: Rescore | None = "fp32",
        oversample: int | None = None,
        flush_rows: int = 50_000,
        use_faiss: bool | None = None,
    ) -> None:
        if first_stage not in ("binary", "int8", "fp32"):
            raise InvalidInputError(f"first_stage must be 'binary', 'int8' or 'fp32', got {first_stage!r}")
        if rescore not in ("fp32", "int8", None):
            raise InvalidInputError(f"rescore must be 'fp32', 'int8' or None, got {rescore!r}")
        if first_stage == "binary" and rescore is None:
            raise InvalidInputError("A binary first stage needs rescore='int8' or 'fp32' (Hamming is not a score)")
        if first_stage == "fp32" and rescore is not None:
            raise InvalidInputError("The fp32 first stage is exact already; use rescore=None")
        if first_stage == rescore:
            raise InvalidInputError(f"rescore={rescore!r} repeats the first stage; use rescore=None")
        oversample = DEFAULT_OVERSAMPLE[first_stage] if oversample is None else oversample
        if oversample < 1 or flush_rows < 1:
            raise InvalidInputError("oversample and flush_rows must be >= 1")
        self.path = Path(path) if path is not None else None
        self.first_stage: FirstStage = first_stage
        self.rescore: Rescore | None = rescore
        self.oversample = oversample
        self.flush_rows = flush_rows
        self._use_faiss = use_faiss
        self._dim = dim
        self._lock = threading.RLock()
        self._segments: list[Segment] = []
        self._binary: BinaryCodes | None = None
        self._threshold: np.ndarray | None = None
        self._rowids = np.zeros(0, dtype=np.int64)  # slot -> rowid over all segments
        self._alive = np.zeros(0, dtype=bool)
        self._tail_rows = np.zeros(0, dtype=np.int64)
        self._tail = np.zeros((0, dim or 0), dtype=np.float32)
        self.state_missing = True
        """True when the store had no database file (or an empty one) when opened."""
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            database = self.path / "chunks.sqlite"
            self.state_missing = not database.exists() or database.stat().st_size == 0
            self._db = connect_sqlite(database)
        else:
            self._db = connect_sqlite(None)
        try:
            self._db.executescript(_SCHEMA)
            self._load()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path}/chunks.sqlite is unreadable ({exc}); re-index") from exc

    # -- settings -------------------------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, object]:
        return {"kind": "compressed", "metric": "dot", "first_stage": self.first_stage, "rescore": self.rescore}

    def _settings(self) -> dict[str, object]:
        return {"first_stage": self.first_stage, "rescore": self.rescore}

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _check_settings(self) -> None:
        stored = self._meta("settings")
        if stored is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(self._settings()),))
            return
        differences = {k: (stored.get(k), v) for k, v in self._settings().items() if stored.get(k) != v}
        if differences:
            raise StoreMismatchError(str(self.path), differences)

    # -- loading --------------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the committed state (another process wrote since this one loaded)."""
        with self._lock:
            self._segments, self._binary, self._threshold = [], None, None
            self._rowids, self._alive = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
            self._tail_rows = np.zeros(0, dtype=np.int64)
            self._tail = np.zeros((0, self._dim or 0), dtype=np.float32)
            try:
                self._load()
            except sqlite3.DatabaseError as exc:
                raise IndexCorruptError(f"{self.path}/chunks.sqlite is unreadable ({exc}); re-index") from exc

    def _load(self) -> None:
        self._check_settings()
        dim = self._meta("dim")
        if dim is not None:
            if self._dim is not None and self._dim != dim:
                raise StoreMismatchError(str(self.path), {"dim": (dim, self._dim)})
            self._dim = int(dim)
        self._db.execute("BEGIN")  # one read snapshot: a concurrent writer's commit lands wholly or not at all
        try:
            self._load_snapshot()
        finally:
            self._db.execute("COMMIT")

    def _load_snapshot(self) -> None:
        assert self.path is not None  # only a store kept in a directory has a snapshot to load
        threshold = self._meta("threshold")
        if threshold is not None:
            self._threshold = np.asarray(threshold, dtype=np.float32)
        for seg_id, n_rows, files in self._db.execute("SELECT id, rows, files FROM segments ORDER BY id").fetchall():
            self._attach(open_segment(self.path, int(seg_id), int(n_rows), json.loads(files)))
        tombs = np.fromiter((r for (r,) in self._db.execute("SELECT rowid FROM tombstones")), dtype=np.int64)
        if tombs.size:
            self._alive &= ~np.isin(self._rowids, tombs)
        rows = self._db.execute("SELECT rowid, vector FROM chunks WHERE vector IS NOT NULL ORDER BY rowid").fetchall()
        if rows:
            self._tail_rows = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
            self._tail = np.vstack([np.frombuffer(v, dtype=np.float32) for _, v in rows])
            if self._tail.shape[1] != self._dim:
                raise IndexCorruptError(f"{self.path}: stored vectors are not of dimension {self._dim}; re-index")
        else:
            self._tail = np.zeros((0, self._dim or 0), dtype=np.float32)

    def _binary_codes(self) -> BinaryCodes:
        if self._binary is None:
            assert self._dim is not None
            self._binary = BinaryCodes((self._dim + 7) // 8, use_faiss=self._use_faiss)
        return self._binary

    def _attach(self, seg: Segment) -> None:
        """Append a segment to the searchable set (binary codes move into the one concatenated code matrix)."""
        seg.offset = self._rowids.size
        if self.first_stage == "binary" and seg.codes is not None:
            self._binary_codes().add(seg.codes)
            seg.codes = None
        elif self.first_stage == "int8" and isinstance(seg.codes, np.ndarray):
            assert seg.calibration is not None
            seg.codes = Int8Codes(seg.codes, seg.calibration, self._use_faiss)
        self._segments.append(seg)
        self._rowids = np.concatenate([self._rowids, seg.rows])
        self._alive = np.concatenate([self._alive, np.ones(seg.rows.size, dtype=bool)])

    # -- writing --------------------------------------------------------------------------------------------------
    def replace_documents(self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Drop every chunk of ``doc_ids`` (and of the chunks' documents) and add ``chunks`` in one transaction.

        A batch of ``flush_rows`` or more goes straight into a new segment (its vectors never enter SQLite)."""
        vectors = check_vectors(chunks, vectors, self._dim)
        with self._lock:
            dropping = sorted(set(doc_ids) | {c.doc_id for c in chunks})
            if len(chunks) and self._dim is None:
                self._dim = int(vectors.shape[1])
                self._tail = self._tail.reshape(0, self._dim)
            direct = len(chunks) >= self.flush_rows
            with self._db:  # one transaction: old chunks out, new chunks in (and their segment, if direct)
                if self._meta("dim") is None and self._dim is not None:
                    self._db.execute("INSERT INTO meta VALUES ('dim', ?)", (json.dumps(self._dim),))
                flushed, unflushed = self._drop(dropping)
                crash_point("compressed.deleted")
                new_rows = self._insert(chunks, None if direct else vectors)
                crash_point("compressed.inserted")
                segment = self._write_segment(vectors, new_rows) if direct else None
            crash_point("compressed.committed")
            self._forget(flushed, unflushed)
            if segment is not None:
                self._attach(segment)
            elif len(chunks):
                self._tail_rows = np.concatenate([self._tail_rows, new_rows])
                self._tail = np.vstack([self._tail, vectors])
            if self._tail_rows.size >= self.flush_rows:
                self.flush()

    def _insert(self, chunks: Sequence[Chunk], vectors: np.ndarray | None) -> np.ndarray:
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
            self._db.executemany("INSERT INTO chunks(id, doc_id, chunk, vector) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError(f"Chunk id already indexed under another document ({exc})") from exc
        last = int(self._db.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - len(chunks) + 1
        found = self._db.execute("SELECT rowid FROM chunks WHERE id = ?", (chunks[0].id,)).fetchone()
        if found is None or int(found[0]) != first:  # pragma: no cover - SQLite guarantees it under our lock
            raise IndexCorruptError(f"{self.path}: rowids of a batch are not consecutive; re-index")
        return np.arange(first, last + 1, dtype=np.int64)

    def _drop(self, doc_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Delete the chunks of ``doc_ids`` inside the caller's transaction: (rows in segments, rows in the tail)."""
        found: list[tuple[int, int]] = []
        for start in range(0, len(doc_ids), _PARAMS):
            part = list(doc_ids[start : start + _PARAMS])
            marks = ",".join("?" * len(part))
            found += self._db.execute(
                f"SELECT rowid, vector IS NULL FROM chunks WHERE doc_id IN ({marks})", part
            ).fetchall()
            self._db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
        flushed = np.asarray(sorted(r for r, f in found if f), dtype=np.int64)
        self._db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(r),) for r in flushed])
        return flushed, np.asarray(sorted(r for r, f in found if not f), dtype=np.int64)

    def _forget(self, flushed: np.ndarray, unflushed: np.ndarray) -> None:
        if flushed.size:
            self._alive[np.searchsorted(self._rowids, flushed)] = False
        if unflushed.size:
            keep = ~np.isin(self._tail_rows, unflushed)
            self._tail_rows, self._tail = self._tail_rows[keep], self._tail[keep]

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        with self._lock:
            with self._db:
                flushed, unflushed = self._drop(sorted(set(doc_ids)))
                crash_point("compressed.deleting")
            self._forget(flushed, unflushed)
            return int(flushed.size + unflushed.size)

    def flush(self) -> None:
        """Compress the tail into a segment now (it happens by itself every ``flush_rows`` new rows)."""
        with self._lock:
            if not self._tail_rows.size:
                return
            with self._db:
                segment = self._write_segment(self._tail, self._tail_rows)
                for start in range(0, self._tail_rows.size, _PARAMS):
                    part = self._tail_rows[start : start + _PARAMS].tolist()
                    marks = ",".join("?" * len(part))
                    self._db.execute(f"UPDATE chunks SET vector = NULL WHERE rowid IN ({marks})", part)
            crash_point("compressed.flushed")
            self._attach(segment)
            self._tail_rows = np.zeros(0, dtype=np.int64)
            self._tail = np.zeros((0, self._dim or 0), dtype=np.float32)

    def _write_segment(self, vectors: np.ndarray, rows: np.ndarray) -> Segment:
        """Encode rows into a new segment: files written atomically, recorded inside the caller's transaction
        (a crash before its commit leaves unreferenced files, which ``recover`` removes)."""
        if self._threshold is None and self.first_stage == "binary":
            self._threshold = vectors.mean(axis=0).astype(np.float32)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('threshold', ?)", (json.dumps(self._threshold.tolist()),)
            )
        seg_id = max(1 + max((s.id for s in self._segments), default=0), int(self._meta("next_segment") or 1))
        parts = encode_segment(vectors, rows, self.first_stage, self.rescore, self._threshold)
        files = write_segment_files(self.path, seg_id, parts) if self.path is not None else {}
        crash_point("compressed.segment_written")
        self._db.execute("INSERT INTO segments VALUES (?, ?, ?)", (seg_id, int(rows.size), json.dumps(files)))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)", (json.dumps(seg_id + 1),))
        calibration = Int8Calibration.from_array(parts["calib"]) if "calib" in parts else None
        return Segment(
            seg_id, np.asarray(rows, dtype=np.int64), 0, parts.get("codes"), parts.get("vectors"), calibration
        )

    def recover(self) -> None:
        """Remove segment files no committed segment names (a writer killed between writing and committing)."""
        if self.path is None:
            return
        known = {name for (files,) in self._db.execute("SELECT files FROM segments") for name in json.loads(files)}
        for file in self.path.iterdir():
            if OWNED.match(file.name) and file.name not in known:
                with contextlib.suppress(OSError):
                    file.unlink()

    # -- search ---------------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None) -> list[list[tuple[Chunk, float]]]:
        check_filters(filters)
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if not np.all(np.isfinite(queries)):
            raise InvalidInputError("Query vectors contain NaN or Inf; check the encoder's output")
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        if queries.shape[1] != self._dim:
            raise InvalidInputError(f"Query dimension {queries.shape[1]} != index dimension {self._dim}")
        with self._lock:
            allowed, tail_allowed = self._allowed(filters)
            found = [self._search_one(q, k, allowed, tail_allowed) for q in queries]
            wanted = sorted({r for rows, _ in found for r in rows.tolist()})
            chunks = self._chunks(wanted)
        return [[(chunks[int(r)], float(s)) for r, s in zip(rows, scores)] for rows, scores in found]

    def _allowed(self, filters: Filters | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Slots the first stage may return (None: every live one) and a mask over the tail (None: all)."""
        if not filters:
            return (None if self._alive.all() else np.flatnonzero(self._alive)), None
        matching = np.fromiter(
            (r for r, text in self._db.execute("SELECT rowid, chunk FROM chunks") if self._matches(text, filters)),
            dtype=np.int64,
        )
        slots = np.flatnonzero(np.isin(self._rowids, matching) & self._alive)
        return slots, np.isin(self._tail_rows, matching)

    @staticmethod
    def _matches(text: str, filters: Filters) -> bool:
        return chunk_matches(Chunk.from_dict(json.loads(text)), filters)

    def _search_one(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None, tail_allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rowids, scores) of the best ``k``, best first."""
        rows: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        if self._segments and (allowed is None or allowed.size):
            slots = self._first_stage(query, k, allowed)
            rows.append(self._rowids[slots])
            scores.append(self._rescored(query, slots))
        if self._tail_rows.size:
            tail_scores = self._tail @ query
            if tail_allowed is not None:
                rows.append(self._tail_rows[tail_allowed])
                scores.append(tail_scores[tail_allowed])
            else:
                rows.append(self._tail_rows)
                scores.append(tail_scores)
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        all_rows, all_scores = np.concatenate(rows), np.concatenate(scores)
        order = np.argsort(all_rows, kind="stable")  # ties broken by insertion order
        all_rows, all_scores = all_rows[order], all_scores[order]
        best = top_k(all_scores, k)
        return all_rows[best], all_scores[best]

    def _first_stage(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Candidate slots: the exact top ``k`` (fp32, or int8 without rescoring) or ``k * oversample``."""
        count = k if self.rescore is None else k * self.oversample
        if self.first_stage == "binary":
            assert self._binary is not None and self._threshold is not None
            bits = pack_bits(query[None, :], self._threshold)[0]
            if allowed is None:
                return self._binary.search(bits, count)
            if allowed.size > len(self._binary) // 2:  # few rows gone: search all, drop the dead, ask for more
                slots = self._binary.search(bits, count + len(self._binary) - allowed.size)
                return slots[np.isin(slots, allowed, assume_unique=True)][:count]
            result: np.ndarray = allowed[self._binary.search(bits, count, subset=allowed)]
            return result
        found = [segment_candidates(seg, query, count, allowed, self.first_stage) for seg in self._segments]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _rescored(self, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Scores of the candidate ``slots``: rescored from the memory-mapped vectors (or the first stage's)."""
        out = np.empty(slots.size, dtype=np.float32)
        offsets = np.asarray([seg.offset for seg in self._segments])
        owners = np.searchsorted(offsets, slots, side="right") - 1
        for index in np.unique(owners).tolist():
            seg = self._segments[index]
            mine = np.flatnonzero(owners == index)
            local = slots[mine] - seg.offset
            order = np.argsort(local)  # ascending reads from the memory map
            if self.rescore is None and self.first_stage == "int8":
                vectors = seg.codes.decode(local[order])
            else:
                assert seg.vectors is not None
                block = np.asarray(seg.vectors[local[order]])
                vectors = block if block.dtype == np.float32 else seg.calibration.decode(block)
            out[mine[order]] = vectors @ query
        return out

    def _chunks(self, rowids: list[int]) -> dict[int, Chunk]:
        found: dict[int, Chunk] = {}
        for start in range(0, len(rowids), _PARAMS):
            part = rowids[start : start + _PARAMS]
            marks = ",".join("?" * len(part))
            for rowid, text in self._db.execute(f"SELECT rowid, chunk FROM chunks WHERE rowid IN ({marks})", part):
                found[int(rowid)] = Chunk.from_dict(json.loads(text))
        return found

    # -- introspection --------------------------------------------------------------------------------------------
    def _backend(self) -> str:
        if self.first_stage == "fp32":
            return "numpy (memory-mapped)"
        return "faiss" if load_faiss(False if self._use_faiss is False else None) is not None else "numpy"

    def doc_ids(self) -> set[str]:
        with self._lock:
            return {d for (d,) in self._db.execute("SELECT DISTINCT doc_id FROM chunks")}

    def __len__(self) -> int:
        return int(self._alive.sum()) + int(self._tail_rows.size)

    def stats(self) -> dict[str, Any]:
        """Rows, segments and bytes: on disk (per file kind) and in RAM (codes, row maps, tail); memory-mapped
        bytes are counted apart (the OS pages them in on demand)."""
        with self._lock:
            disk = bytes_on_disk(self.path) if self.path is not None else {}
            codes = sum(int(seg.codes.nbytes) for seg in self._segments if seg.codes is not None)  # int8
            codes += self._binary.nbytes if self._binary is not None else 0
            mapped = sum(int(seg.vectors.nbytes) for seg in self._segments if seg.vectors is not None)
            ram = {
                "codes": codes,
                "row_maps": int(self._rowids.nbytes + self._alive.nbytes),
                "tail_vectors": int(self._tail.nbytes + self._tail_rows.nbytes),
            }
            if self.path is None:
                ram["rescoring_vectors"] = mapped
            return {
                "kind": "compressed",
                **self._settings(),
                "rows": len(self),
                "segments": len(self._segments),
                "deleted_rows": int((~self._alive).sum()),
                "tail_rows": int(self._tail_rows.size),
                "first_stage_backend": self._backend(),
                "bytes_on_disk": disk,
                "bytes_in_ram": ram,
                "bytes_memory_mapped": mapped if self.path is not None else 0,
            }

    def close(self) -> None:
        """Nothing to write: committed rows are in SQLite (the tail) or in segments."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]  # closed for good: no method runs after close()
