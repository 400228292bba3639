"""Compressed dense store: a first stage over compact codes in RAM, rescoring with vectors memory-mapped from disk.

``first_stage``: ``"binary"`` (one sign bit per dimension, centred on the first segment's mean; Hamming
distance — 32x less RAM than float32), ``"int8"`` (per-dimension calibrated scalar codes, 4x less) or ``"fp32"``
(exact, the reference, memory-mapped). ``rescore``: the top ``k * oversample`` candidates are rescored with the
``"fp32"`` or ``"int8"`` vectors, read from a memory-mapped ``.npy`` so only the codes need RAM; ``None`` keeps the
first stage's scores (int8 and fp32 only). ``ivf_lists``: the binary codes go into a faiss ``IndexBinaryIVF``
(:mod:`ragloom.stores.binary_ivf`; ``nprobe`` lists searched per query) instead of a flat Hamming scan.
``middle="int8"``: a three-stage search — the binary first stage's ``k * oversample`` candidates are rescored with
int8 codes held in RAM (one byte a dimension) and only the best ``k * rescore_oversample`` go on to the fp32
rescoring from the memory map (:mod:`ragloom.stores.compressed_settings`). The settings
are recorded in the store and in the index manifest; opening with other settings raises
:class:`ragloom.errors.StoreMismatchError`.

A directory holds ``chunks.sqlite`` (chunks (rowid = position), settings, segments, tombstones: the commit log),
the segments' ``.npy`` files (:mod:`ragloom.stores.compressed_segments`) and, for the binary IVF, its centres
(``binary-ivf.faiss``, written once). The binary sign threshold and the middle stage's int8 calibration are fitted
on the first segment and recorded in SQLite.

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
from typing import Any

import numpy as np

from ragloom.errors import IndexCorruptError, InvalidInputError, StoreMismatchError
from ragloom.protocols import Filters
from ragloom.stores.binary_ivf import DEFAULT_NPROBE, BinaryIVF, ivf_candidates, open_ivf, write_ivf
from ragloom.stores.codes import (
    BinaryCodes,
    Int8Calibration,
    Int8Codes,
    Int8Rows,
    load_faiss,
    matvec,
    pack_bits,
)
from ragloom.stores.compressed_log import PARAMS, SCHEMA, drop_documents, insert_chunks
from ragloom.stores.compressed_segments import (
    OWNED,
    Segment,
    bytes_on_disk,
    encode_segment,
    open_segment,
    rescored,
    segment_candidates,
    write_segment_files,
)
from ragloom.stores.compressed_settings import (
    DEFAULT_MIDDLE_OVERSAMPLE,
    DEFAULT_OVERSAMPLE,
    FirstStage,
    Middle,
    Rescore,
    checked_middle,
    checked_oversample,
    middle_oversample,
)
from ragloom.stores.files import connect_sqlite, crash_point
from ragloom.stores.rows import check_filters, check_vectors, chunk_matches, top_k
from ragloom.types import Chunk

__all__ = ["DEFAULT_OVERSAMPLE", "CompressedVectorStore", "FirstStage", "Middle", "Rescore"]


class CompressedVectorStore:
    """Dense top-k search over compact codes with rescoring; chunks stay in SQLite (``path=None``: a temp-free,
    in-memory SQLite and RAM segments). ``oversample``: candidates rescored per result (``k * oversample``;
    default per first stage, :data:`DEFAULT_OVERSAMPLE`). ``ivf_lists``: binary first stage through a faiss
    ``IndexBinaryIVF`` of that many lists (the ``compress`` extra; worth it from ~100k rows); ``nprobe``: lists
    searched per query (default :data:`ragloom.stores.binary_ivf.DEFAULT_NPROBE`), a search-time knob.
    ``middle="int8"``: int8 rescoring of the first stage's candidates in RAM before the fp32 rescoring of the best
    ``k * rescore_oversample`` (defaults in :mod:`ragloom.stores.compressed_settings`; both oversamplings are
    search-time knobs, ``middle`` is recorded)."""

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
        ivf_lists: int | None = None,
        nprobe: int | None = None,
        middle: Middle | None = None,
        rescore_oversample: int | None = None,
    ) -> None:
        self.rescore_oversample = checked_middle(first_stage, rescore, middle, rescore_oversample)
        self._grows = middle is not None and oversample is None  # candidates grow with the store until set
        if middle is not None and oversample is None:
            oversample = DEFAULT_MIDDLE_OVERSAMPLE
        oversample = checked_oversample(
            first_stage, rescore, oversample, flush_rows, use_faiss=use_faiss, ivf_lists=ivf_lists, nprobe=nprobe
        )
        self.path = Path(path) if path is not None else None
        self.first_stage: FirstStage = first_stage
        self.rescore: Rescore | None = rescore
        self._oversample = oversample
        self.flush_rows = flush_rows
        self._use_faiss = use_faiss
        self.ivf_lists = ivf_lists
        self.nprobe = DEFAULT_NPROBE if nprobe is None else nprobe
        self._ivf: BinaryIVF | None = None
        self.middle: Middle | None = middle
        self._middle: Int8Rows | None = None  # the middle stage's codes of every segment row, by slot
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
            self._db.executescript(SCHEMA)
            self._load()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path}/chunks.sqlite is unreadable ({exc}); re-index") from exc

    # -- settings -------------------------------------------------------------------------------------------------
    @property
    def oversample(self) -> int:
        """First-stage candidates per result (a search-time knob). With the middle stage and none given, it grows
        with the store (:func:`~ragloom.stores.compressed_settings.middle_oversample`) until assigned."""
        return middle_oversample(self._rowids.size) if self._grows else self._oversample

    @oversample.setter
    def oversample(self, value: int) -> None:
        if value < 1:
            raise InvalidInputError(f"oversample must be >= 1, got {value}")
        self._oversample, self._grows = value, False

    @property
    def config(self) -> dict[str, object]:
        return {"kind": "compressed", "metric": "dot", **self._settings()}

    def _settings(self) -> dict[str, object]:
        settings: dict[str, object] = {"first_stage": self.first_stage, "rescore": self.rescore}
        if self.ivf_lists is not None:
            settings["ivf_lists"] = self.ivf_lists
        if self.middle is not None:  # absent from stores built before the three-stage search: they open unchanged
            settings["middle"] = self.middle
        return settings

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _check_settings(self) -> None:
        stored = self._meta("settings")
        if stored is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(self._settings()),))
            return
        mine = self._settings()  # over the union of keys: a store built with (or without) an IVF differs
        differences = {k: (stored.get(k), mine.get(k)) for k in {*stored, *mine} if stored.get(k) != mine.get(k)}
        if differences:
            raise StoreMismatchError(str(self.path), differences)

    # -- loading --------------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the committed state (another process wrote since this one loaded)."""
        with self._lock:
            self._segments, self._binary, self._threshold, self._ivf = [], None, None, None
            self._middle = None
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
        if self.path is None:  # an in-memory store starts empty: no files to load
            return
        threshold = self._meta("threshold")
        if threshold is not None:
            self._threshold = np.asarray(threshold, dtype=np.float32)
        ivf = self._meta("ivf")
        self._ivf = open_ivf(self.path, ivf) if ivf is not None else None
        segments = self._db.execute("SELECT id, rows, files FROM segments ORDER BY id").fetchall()
        middle = self._meta("middle_calibration")
        if middle is not None:
            self._middle = Int8Rows(Int8Calibration.from_array(np.asarray(middle, dtype=np.float32)), len(middle[0]))
            self._middle.reserve(sum(int(n_rows) for _, n_rows, _ in segments))  # one allocation, no regrowth
        elif self.middle is not None and segments:
            raise IndexCorruptError(f"{self.path}: the middle stage's calibration is missing; re-index")
        for seg_id, n_rows, files in segments:
            self._attach(open_segment(self.path, int(seg_id), int(n_rows), json.loads(files)))
        tombs = np.fromiter((r for (r,) in self._db.execute("SELECT rowid FROM tombstones")), dtype=np.int64)
        if tombs.size:
            self._alive &= ~np.isin(self._rowids, tombs)
            if self._ivf is not None:
                self._ivf.remove(np.flatnonzero(~self._alive))
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
        if self.middle is not None:
            if seg.middle is None or self._middle is None:
                raise IndexCorruptError(f"{self.path}: segment {seg.id} has no middle-stage codes; re-index")
            self._middle.add(seg.middle)
            seg.middle = None
        if self._ivf is not None and seg.codes is not None:
            if seg.lists is None:
                raise IndexCorruptError(f"{self.path}: segment {seg.id} has no IVF lists file; re-index")
            self._ivf.add(seg.codes, np.arange(seg.offset, seg.offset + seg.rows.size), seg.lists)
            seg.codes, seg.lists = None, None
        elif self.first_stage == "binary" and seg.codes is not None:
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
                flushed, unflushed = drop_documents(self._db, dropping)
                crash_point("compressed.deleted")
                new_rows = insert_chunks(self._db, chunks, None if direct else vectors, self.path)
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

    def _forget(self, flushed: np.ndarray, unflushed: np.ndarray) -> None:
        if flushed.size:
            slots = np.searchsorted(self._rowids, flushed)
            self._alive[slots] = False
            if self._ivf is not None:
                self._ivf.remove(slots)
        if unflushed.size:
            keep = ~np.isin(self._tail_rows, unflushed)
            self._tail_rows, self._tail = self._tail_rows[keep], self._tail[keep]

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        with self._lock:
            with self._db:
                flushed, unflushed = drop_documents(self._db, sorted(set(doc_ids)))
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
                for start in range(0, self._tail_rows.size, PARAMS):
                    part = self._tail_rows[start : start + PARAMS].tolist()
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
        if self.middle is not None and (self._middle is None or self._meta("middle_calibration") is None):
            self._middle = Int8Rows(Int8Calibration.fit(vectors), int(vectors.shape[1]))  # the first segment's
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('middle_calibration', ?)",
                (json.dumps(self._middle.calibration.to_array().tolist()),),
            )
        calibration = self._middle.calibration if self._middle is not None else None
        parts = encode_segment(vectors, rows, self.first_stage, self.rescore, self._threshold, calibration)
        if self.ivf_lists is not None:
            if self._ivf is None or self._meta("ivf") is None:  # the first segment (or a rolled-back one)
                self._ivf = self._train_ivf(vectors)
            parts["lists"] = self._ivf.assign(vectors)
        files = write_segment_files(self.path, seg_id, parts) if self.path is not None else {}
        crash_point("compressed.segment_written")
        self._db.execute("INSERT INTO segments VALUES (?, ?, ?)", (seg_id, int(rows.size), json.dumps(files)))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_segment', ?)", (json.dumps(seg_id + 1),))
        calibration = Int8Calibration.from_array(parts["calib"]) if "calib" in parts else None
        return Segment(
            seg_id,
            np.asarray(rows, dtype=np.int64),
            0,
            parts.get("codes"),
            parts.get("vectors"),
            calibration,
            parts.get("lists"),
            parts.get("middle"),
        )

    def _train_ivf(self, vectors: np.ndarray) -> BinaryIVF:
        """Train the IVF's centres on the first segment's vectors; its file is written atomically and recorded in the
        caller's transaction (a crash before the commit leaves a file the next first flush overwrites)."""
        assert self.ivf_lists is not None and self._dim is not None
        ivf = BinaryIVF.train(vectors, self.ivf_lists, bits=8 * ((self._dim + 7) // 8))
        record = write_ivf(self.path, ivf, int(vectors.shape[0]))
        crash_point("compressed.ivf_written")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('ivf', ?)", (json.dumps(record),))
        return ivf

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
        if k <= 0 or self._rowids.size + self._tail_rows.size == 0:  # (deleted rows are never found)
            return [[] for _ in range(queries.shape[0])]
        if queries.shape[1] != self._dim:
            raise InvalidInputError(f"Query dimension {queries.shape[1]} != index dimension {self._dim}")
        with self._lock:
            allowed, tail_allowed = self._allowed(filters)
            found = [self._search_one(q, k, allowed, tail_allowed) for q in queries]
            wanted = sorted({r for rows, _ in found for r in rows.tolist()})
            chunks = self._chunks(wanted)
        return [[(chunks[r], s) for r, s in zip(rows.tolist(), scores.tolist())] for rows, scores in found]

    def _allowed(self, filters: Filters | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Slots the first stage may return (None: every live one) and a mask over the tail (None: all)."""
        if not filters:  # the IVF holds live rows only; a flat first stage is told which slots are alive
            return (None if self._ivf is not None or self._alive.all() else np.flatnonzero(self._alive)), None
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
            if self._middle is not None and self.rescore_oversample is not None:
                keep = k * self.rescore_oversample
                if slots.size > keep:  # the int8 middle stage: only the best go on to the fp32 reads
                    approximate = self._middle.scores(query, slots)
                    slots = slots[np.argpartition(-approximate, keep - 1)[:keep]]
            rows.append(self._rowids[slots])
            scores.append(rescored(self._segments, query, slots, self.rescore is None and self.first_stage == "int8"))
        if self._tail_rows.size:
            tail_scores = matvec(self._tail, query)
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
        if self._ivf is not None:
            assert self._threshold is not None
            bits = pack_bits(query[None, :], self._threshold)[0]
            return ivf_candidates(self._ivf, query, bits, count, allowed, self.nprobe)
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

    def _chunks(self, rowids: list[int]) -> dict[int, Chunk]:
        found: dict[int, Chunk] = {}
        for start in range(0, len(rowids), PARAMS):
            part = rowids[start : start + PARAMS]
            marks = ",".join("?" * len(part))
            for rowid, text in self._db.execute(f"SELECT rowid, chunk FROM chunks WHERE rowid IN ({marks})", part):
                found[int(rowid)] = Chunk.from_dict(json.loads(text))
        return found

    # -- introspection --------------------------------------------------------------------------------------------
    def _backend(self) -> str:
        if self.first_stage == "fp32":
            return "numpy (memory-mapped)"
        if self._ivf is not None:
            return f"faiss IndexBinaryIVF (nlist {self._ivf.params.nlist}, nprobe {self.nprobe})"
        return "faiss" if load_faiss(False if self._use_faiss is False else None) is not None else "numpy"

    def doc_ids(self) -> set[str]:
        with self._lock:
            return {d for (d,) in self._db.execute("SELECT DISTINCT doc_id FROM chunks")}

    def __len__(self) -> int:
        return int(np.count_nonzero(self._alive)) + int(self._tail_rows.size)

    def stats(self) -> dict[str, Any]:
        """Rows, segments and bytes: on disk (per file kind) and in RAM (codes, row maps, tail); memory-mapped
        bytes are counted apart (the OS pages them in on demand)."""
        with self._lock:
            disk = bytes_on_disk(self.path) if self.path is not None else {}
            codes = sum(int(seg.codes.nbytes) for seg in self._segments if seg.codes is not None)  # int8
            codes += self._binary.nbytes if self._binary is not None else 0
            codes += self._ivf.nbytes if self._ivf is not None else 0
            mapped = sum(int(seg.vectors.nbytes) for seg in self._segments if seg.vectors is not None)
            ram = {
                "codes": codes,
                "row_maps": int(self._rowids.nbytes + self._alive.nbytes),
                "tail_vectors": int(self._tail.nbytes + self._tail_rows.nbytes),
            }
            if self._middle is not None:
                ram["middle_codes"] = self._middle.nbytes
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
