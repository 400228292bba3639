"""Sparse inverted index: immutable postings segments + tombstones on disk, exact top-k by score accumulation.

A segment holds the postings of a batch of chunks: for every term, the rows (chunks) that carry it and their
weights — a CSC matrix (terms × rows stored term-major), i.e. postings lists. On disk a directory holds::

    state.json                  the commit point: live segments, their tombstones, sizes and sha256 checksums
    seg-000001.indptr.npy       int64, one entry per term + 1
    seg-000001.rows.npy         int32 row of each posting, sorted within a term
    seg-000001.weights.npy      float32 weight of each posting
    seg-000001.chunks.jsonl     one chunk (JSON) per row
    seg-000001.del-000004.npy   int32 rows of the segment deleted since it was written (a tombstone file)

Files are written once (atomic write) and never changed; every write commits by atomically replacing
``state.json``, then removes the files the new state no longer names. A crash before the commit leaves the
previous state whole. Adding appends a segment; deleting writes tombstones; small segments are merged as they
accumulate (a binary-counter policy keeps about log2(n) segments) and a segment mostly deleted is rewritten.

Search accumulates scores term at a time over the postings of the query's terms only (``np.add.at`` into a
float32 accumulator; measured faster here than scipy's sparse product or ``np.bincount``), drops deleted and
filtered rows, keeps the top ``k`` with ``argpartition``, and rescores those exactly (float64, term order), which
also explains each match. MaxScore-style pruning is available (``prune=True``) but off: it measured slower.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.protocols import Filters
from ragloom.stores.files import atomic_write_bytes, atomic_write_json, npy_bytes, read_json, sha256_hex
from ragloom.stores.rows import check_filters, chunk_matches, chunks_jsonl, read_chunks_jsonl
from ragloom.stores.sparse_approx import ApproxSearch, approx_top_rows
from ragloom.stores.sparse_search import contributions_of, largest_terms, query_terms, top_rows
from ragloom.types import Chunk, SparseVector

__all__ = ["SparseIndex", "SparseMatch", "sparse_matrix"]

STATE_NAME = "state.json"
STATE_FORMAT = 1
_OWNED = re.compile(r"^(\.?seg-\d{6}\..*|\.state\.json\..*\.tmp)$")  # ours: segment files and temp files


def _sparse() -> Any:
    return require("scipy.sparse", "sparse", "the sparse inverted index")


def sparse_matrix(vectors: Sequence[SparseVector], n_terms: int | None = None) -> Any:
    """Rows of SparseVectors as a scipy CSR matrix (float32); ``n_terms`` columns (default: max term + 1)."""
    sp = _sparse()
    lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate([v.indices for v in vectors]) if vectors else np.zeros(0, np.int32)
    values = np.concatenate([v.values for v in vectors]) if vectors else np.zeros(0, np.float32)
    if indices.size and int(indices.min()) < 0:
        raise InvalidInputError("SparseVector term ids must be >= 0")
    width = max(int(indices.max()) + 1 if indices.size else 0, n_terms or 0)
    return sp.csr_matrix((values.astype(np.float32), indices.astype(np.int32), indptr), shape=(len(vectors), width))


@dataclass(frozen=True, slots=True)
class SparseMatch:
    """One chunk matched by a query: its score and the terms that contributed most, best first."""

    chunk: Chunk
    score: float
    terms: tuple[tuple[int, float], ...] = ()


@dataclass
class _Segment:
    """An immutable batch of rows: chunks and their postings (terms × rows), plus the rows deleted since."""

    id: int
    chunks: list[Chunk]
    postings: Any  # scipy csr_matrix, shape (n_terms, n_rows): row t = postings list of term t
    deleted: np.ndarray  # bool per row
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    tombstone: str | None = None
    _bounds: tuple[np.ndarray, float] | None = None

    def bounds(self) -> tuple[np.ndarray, float]:
        """The largest weight in each term's postings (MaxScore's upper bounds) and the smallest weight overall."""
        if self._bounds is None:
            indptr, data = self.postings.indptr, self.postings.data
            largest = np.zeros(self.postings.shape[0], dtype=np.float32)
            nonempty = np.flatnonzero(np.diff(indptr))
            if nonempty.size:
                largest[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
            self._bounds = (largest, float(data.min()) if data.size else 0.0)
        return self._bounds

    @property
    def n_rows(self) -> int:
        return len(self.chunks)

    @property
    def n_live(self) -> int:
        return self.n_rows - int(self.deleted.sum())


class SparseIndex:
    """An inverted index of chunks and their sparse vectors. ``path=None`` keeps everything in memory.

    Writers must hold the index directory's lock (the owning retriever takes it); readers see the state committed
    when they opened the index. ``merge_factor``: a new segment is merged into its predecessor while the
    predecessor has at most this many times its live rows. ``max_deleted``: a segment with a larger fraction of
    deleted rows is rewritten without them.
    """

    def __init__(self, path: str | Path | None = None, *, merge_factor: float = 1.0, max_deleted: float = 0.3) -> None:
        self.path = Path(path) if path is not None else None
        self.merge_factor = merge_factor
        self.max_deleted = max_deleted
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._next_id = 1
        self._rows_by_doc: dict[str, list[tuple[int, int]]] = {}  # doc -> (segment id, row)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._load()

    @property
    def config(self) -> dict[str, object]:
        return {"kind": "sparse", "format": STATE_FORMAT, "layout": "postings segments + tombstones"}

    # -- loading ----------------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the committed state (another process wrote since this one loaded)."""
        assert self.path is not None
        with self._lock:
            self._segments, self._next_id, self._rows_by_doc = [], 1, {}
            self._load()

    @property
    def state_missing(self) -> bool:
        """True when no committed state file exists (a new index, or one whose state was deleted)."""
        return self.path is None or not (self.path / STATE_NAME).exists()

    def _load(self) -> None:
        assert self.path is not None
        state_path = self.path / STATE_NAME
        for attempt in range(3):
            if not state_path.exists():
                return
            raw = state_path.read_bytes()
            try:
                self._load_state(read_json(state_path))
                return
            except IndexCorruptError:
                # a writer may have committed (and removed the files we were reading) meanwhile: retry on a new state
                if attempt == 2 or state_path.read_bytes() == raw:
                    raise

    def _load_state(self, state: Any) -> None:
        assert self.path is not None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise IndexCorruptError(
                f"{self.path / STATE_NAME} is not a sparse index state of format {STATE_FORMAT}; re-index into a "
                "new directory"
            )
        try:
            self._next_id = int(state["next_id"])
            self._segments = [self._load_segment(entry) for entry in state["segments"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"{self.path / STATE_NAME} is malformed ({exc!r}); re-index") from exc
        self._reindex_docs()

    def _read_checked(self, name: str, expected: str) -> bytes:
        assert self.path is not None
        try:
            data = (self.path / name).read_bytes()
        except OSError as exc:
            raise IndexCorruptError(
                f"{self.path}: {name} is missing ({exc}); restore the directory or re-index"
            ) from exc
        if sha256_hex(data) != expected:
            raise IndexCorruptError(f"{self.path}: {name} fails its sha256 check; restore the directory or re-index")
        return data

    def _load_segment(self, entry: dict[str, Any]) -> _Segment:
        sp = _sparse()
        seg_id, files = int(entry["id"]), {str(k): str(v) for k, v in dict(entry["files"]).items()}
        prefix = f"seg-{seg_id:06d}"

        def array(part: str) -> np.ndarray:
            name = f"{prefix}.{part}.npy"
            result: np.ndarray = np.load(io.BytesIO(self._read_checked(name, files[name])), allow_pickle=False)
            return result

        indptr, rows, weights = array("indptr"), array("rows"), array("weights")
        text = self._read_checked(f"{prefix}.chunks.jsonl", files[f"{prefix}.chunks.jsonl"]).decode("utf-8")
        chunks = read_chunks_jsonl(text)
        if indptr.size < 1 or int(indptr[-1]) != rows.size or rows.size != weights.size:
            raise IndexCorruptError(f"{self.path}: segment {seg_id} has inconsistent postings arrays; re-index")
        if rows.size and int(rows.max()) >= len(chunks):
            raise IndexCorruptError(f"{self.path}: segment {seg_id} points past its {len(chunks)} chunks; re-index")
        postings = sp.csr_matrix((weights, rows, indptr), shape=(indptr.size - 1, len(chunks)))
        deleted = np.zeros(len(chunks), dtype=bool)
        tombstone = entry.get("tombstone")
        if tombstone:
            deleted[np.load(io.BytesIO(self._read_checked(tombstone, files[tombstone])), allow_pickle=False)] = True
        return _Segment(seg_id, chunks, postings, deleted, files, tombstone)

    def _reindex_docs(self) -> None:
        rows: dict[str, list[tuple[int, int]]] = {}
        for seg in self._segments:
            for row, chunk in enumerate(seg.chunks):
                if not seg.deleted[row]:
                    rows.setdefault(chunk.doc_id, []).append((seg.id, row))
        self._rows_by_doc = rows

    # -- writing ----------------------------------------------------------------------------------------------------
    def _new_segment(self, chunks: list[Chunk], matrix: Any) -> _Segment:
        """A segment from chunks and their (rows × terms) CSR matrix; files are written when persisted."""
        postings = matrix.T.tocsr()  # terms × rows, row indices sorted within each term
        postings.sort_indices()
        seg = _Segment(self._take_id(), chunks, postings, np.zeros(len(chunks), dtype=bool))
        if self.path is not None:
            prefix = f"seg-{seg.id:06d}"
            payloads = {
                f"{prefix}.indptr.npy": npy_bytes(postings.indptr.astype(np.int64)),
                f"{prefix}.rows.npy": npy_bytes(postings.indices.astype(np.int32)),
                f"{prefix}.weights.npy": npy_bytes(postings.data.astype(np.float32)),
                f"{prefix}.chunks.jsonl": chunks_jsonl(chunks),
            }
            for name, data in payloads.items():
                atomic_write_bytes(self.path / name, data)
                seg.files[name] = sha256_hex(data)
        return seg

    def _take_id(self) -> int:
        """A fresh number for a segment or a tombstone generation (file names are never reused)."""
        self._next_id += 1
        return self._next_id - 1

    def _write_tombstone(self, seg: _Segment) -> None:
        seg.files = {k: v for k, v in seg.files.items() if k != seg.tombstone}
        seg.tombstone = None
        if self.path is None or not seg.deleted.any():
            return
        name = f"seg-{seg.id:06d}.del-{self._take_id():06d}.npy"
        data = npy_bytes(np.flatnonzero(seg.deleted).astype(np.int32))
        atomic_write_bytes(self.path / name, data)
        seg.tombstone = name
        seg.files[name] = sha256_hex(data)

    def _commit(self, segments: list[_Segment]) -> None:
        """Make ``segments`` the index: one atomic replace of state.json, then drop unreferenced files."""
        if self.path is not None:
            entries = []
            for seg in segments:
                entry: dict[str, Any] = {"id": seg.id, "rows": seg.n_rows, "live": seg.n_live, "files": seg.files}
                if seg.tombstone:
                    entry["tombstone"] = seg.tombstone
                entries.append(entry)
            atomic_write_json(
                self.path / STATE_NAME, {"format": STATE_FORMAT, "next_id": self._next_id, "segments": entries}
            )
            referenced = {name for seg in segments for name in seg.files}
            for file in self.path.iterdir():
                if _OWNED.match(file.name) and file.name not in referenced:
                    with contextlib.suppress(OSError):
                        file.unlink()
        self._segments = segments
        self._reindex_docs()

    def replace_documents(
        self, doc_ids: Iterable[str], chunks: Sequence[Chunk], vectors: Sequence[SparseVector] | Any
    ) -> None:
        """Drop every chunk of ``doc_ids`` (and of the chunks' documents) and add ``chunks`` in one commit.

        ``vectors``: one SparseVector per chunk, or a scipy CSR matrix with one row per chunk.
        """
        matrix = self._check(chunks, vectors)
        with self._lock:
            dropping = set(doc_ids) | {c.doc_id for c in chunks}
            segments = self._tombstoned(dropping)
            if chunks:
                segments.append(self._new_segment(list(chunks), matrix))
            self._commit(segments)
            self._maintain()

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        with self._lock:
            dropping = set(doc_ids)
            removed = sum(len(self._rows_by_doc.get(d, ())) for d in dropping)
            if removed:
                self._commit(self._tombstoned(dropping))
                self._maintain()
            return removed

    def _tombstoned(self, dropping: set[str]) -> list[_Segment]:
        """The current segments with every row of ``dropping`` marked deleted (changed ones get new tombstones)."""
        touched: dict[int, list[int]] = {}
        for doc_id in dropping:
            for seg_id, row in self._rows_by_doc.get(doc_id, ()):
                touched.setdefault(seg_id, []).append(row)
        segments = []
        for old in self._segments:
            seg = old
            if old.id in touched:
                deleted = old.deleted.copy()
                deleted[touched[old.id]] = True
                seg = _Segment(old.id, old.chunks, old.postings, deleted, dict(old.files), old.tombstone)
                self._write_tombstone(seg)
            if seg.n_live:
                segments.append(seg)
        return segments

    def _maintain(self) -> None:
        """Rewrite mostly-deleted segments and merge small trailing segments (each step its own commit)."""
        for i in range(len(self._segments)):
            seg = self._segments[i]
            if seg.n_rows - seg.n_live > self.max_deleted * seg.n_rows:
                self._commit([*self._segments[:i], self._merged([seg]), *self._segments[i + 1 :]])
        while len(self._segments) >= 2 and self._segments[-2].n_live <= self.merge_factor * self._segments[-1].n_live:
            self._commit([*self._segments[:-2], self._merged(self._segments[-2:])])

    def _merged(self, segments: list[_Segment]) -> _Segment:
        sp = _sparse()
        chunks: list[Chunk] = []
        blocks = []
        width = max(seg.postings.shape[0] for seg in segments)
        for seg in segments:
            live = np.flatnonzero(~seg.deleted)
            rows = seg.postings.T.tocsr()[live]
            rows.resize((live.size, width))
            blocks.append(rows)
            chunks.extend(seg.chunks[i] for i in live)
        return self._new_segment(chunks, sp.vstack(blocks, format="csr"))

    def compact(self) -> None:
        """Merge every segment into one without deleted rows (faster search after many small writes)."""
        with self._lock:
            if len(self._segments) > 1 or any(seg.n_live < seg.n_rows for seg in self._segments):
                self._commit([self._merged(self._segments)] if self._segments else [])

    def _check(self, chunks: Sequence[Chunk], vectors: Sequence[SparseVector] | Any) -> Any:
        sp = _sparse()
        if sp.issparse(vectors):
            matrix = sp.csr_matrix(vectors, dtype=np.float32)
        else:
            vectors = list(vectors)
            if any(not isinstance(v, SparseVector) for v in vectors):
                raise InvalidInputError("SparseIndex stores ragloom.SparseVector values (one per chunk)")
            matrix = sparse_matrix(vectors)
        if matrix.shape[0] != len(chunks):
            raise InvalidInputError(f"Expected {len(chunks)} sparse vectors, got {matrix.shape[0]}")
        if matrix.nnz and not np.all(np.isfinite(matrix.data)):
            raise InvalidInputError("Sparse vectors contain NaN or Inf; check the encoder's output")
        ids = [c.id for c in chunks]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("Duplicate chunk ids in one batch")
        return matrix

    # -- search -----------------------------------------------------------------------------------------------------
    def search(
        self,
        queries: Sequence[SparseVector],
        k: int,
        filters: Filters | None = None,
        explain: int = 0,
        prune: bool = False,
        approx: ApproxSearch | None = None,
    ) -> list[list[SparseMatch]]:
        """Top ``k`` chunks by dot product for each query, best first; ``explain`` top terms per match.

        Chunks sharing no term with the query are never returned. ``prune`` turns on MaxScore-style pruning, which
        skips postings that cannot change the top ``k`` (same result); it is off by default because on SPLADE
        data it measured slower than plain accumulation (``python -m benchmarks sparse_search``). Scores are
        recomputed exactly (float64, term order) for the returned chunks, so they do not depend on how the index is
        segmented; ties are broken by insertion order. ``approx`` switches to approximate search (Seismic-style
        query and postings pruning, then the same exact rescoring; see :mod:`ragloom.stores.sparse_approx`).
        """
        check_filters(filters)
        with self._lock:
            segments = list(self._segments)
        if not segments or not queries or k <= 0:
            return [[] for _ in queries]
        allowed = [self._allowed(seg, filters) for seg in segments]
        results = []
        for query in queries:
            found: list[tuple[float, int, int, int]] = []  # (-score, segment order, row, position)
            scored: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # segment order -> (terms, contributions)
            for order, (seg, mask) in enumerate(zip(segments, allowed)):
                if mask is not None and not mask.any():
                    continue
                if approx is not None:
                    rows = approx_top_rows(seg, *query_terms(seg, query), k, mask, approx)
                else:
                    rows = top_rows(seg, query, k, mask, prune)
                terms, contributions = contributions_of(seg, query, rows)
                scored[order] = (terms, contributions)
                scores = (-contributions.sum(axis=1)).tolist()
                found.extend(zip(scores, [order] * rows.size, rows.tolist(), range(rows.size)))
            found.sort()
            results.append(
                [
                    SparseMatch(
                        segments[order].chunks[row],
                        -neg,
                        largest_terms(*scored[order], position, explain) if explain else (),
                    )
                    for neg, order, row, position in found[:k]
                ]
            )
        return results

    @staticmethod
    def _allowed(seg: _Segment, filters: Filters | None) -> np.ndarray | None:
        """Rows a search may return (None: all of them)."""
        if not filters:
            return ~seg.deleted if seg.deleted.any() else None
        matches = np.fromiter((chunk_matches(c, filters) for c in seg.chunks), dtype=bool, count=seg.n_rows)
        result: np.ndarray = matches & ~seg.deleted
        return result

    # -- introspection ----------------------------------------------------------------------------------------------
    def doc_ids(self) -> set[str]:
        return set(self._rows_by_doc)

    def chunks(self) -> list[Chunk]:
        """Every live chunk, segment by segment in row order."""
        segments = list(self._segments)
        return [c for seg in segments for c, dead in zip(seg.chunks, seg.deleted) if not dead]

    def __len__(self) -> int:
        return sum(seg.n_live for seg in self._segments)

    @property
    def stats(self) -> dict[str, int]:
        """Segments, rows (live and deleted), postings and bytes on disk."""
        on_disk = 0
        if self.path is not None:
            on_disk = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {
            "segments": len(self._segments),
            "rows": len(self),
            "deleted_rows": sum(seg.n_rows - seg.n_live for seg in self._segments),
            "postings": sum(int(seg.postings.nnz) for seg in self._segments),
            "bytes_on_disk": on_disk,
        }

    def close(self) -> None:
        """Nothing to release: every write is committed when it returns."""
