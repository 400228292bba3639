"""First-stage codes for compressed dense search: sign bits (Hamming) and calibrated scalar int8.

One responsibility: turn float32 rows into compact codes, and score a query against codes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BinaryCodes",
    "Int8Calibration",
    "Int8Codes",
    "Int8Rows",
    "hamming",
    "int8_scores",
    "matvec",
    "one_thread",
    "pack_bits",
]


_FAISS_THREADS = threading.Lock()


def load_faiss(use_faiss: bool | None) -> Any:
    """faiss (the ``compress`` extra) when installed and not refused; ``use_faiss=True`` requires it."""
    if use_faiss is False:
        return None
    try:
        import faiss

        return faiss
    except ImportError:
        if use_faiss:
            from ragloom._imports import require

            require("faiss", "compress", "faiss first-stage search")
        return None


@contextlib.contextmanager
def one_thread(faiss: Any) -> Iterator[None]:
    """Run a faiss scan on one OpenMP thread: a single query's scan is memory-bound, and on a busy machine
    OpenMP's spinning threads made it 20-30x slower (measured: 13 ms on one thread, 340 ms on two)."""
    with _FAISS_THREADS:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


GEMV_ROWS = 1024
"""Rows per matrix-vector product in :func:`matvec`: below OpenBLAS's threading threshold (~1,200 rows of 384)."""


def matvec(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``rows @ query`` in blocks of :data:`GEMV_ROWS` rows, int8 rows converted to float32 a block at a time.

    A single product over more rows makes OpenBLAS start its threads, and on a busy machine their spinning made
    3,000 × 384 take 12-19 ms instead of 0.5 ms (measured here; see docs/compression.md)."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], GEMV_ROWS):
        out[start : start + GEMV_ROWS] = rows[start : start + GEMV_ROWS].astype(np.float32, copy=False) @ query
    return out


def pack_bits(vectors: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """One bit per dimension (1 where the value exceeds ``threshold``), packed 8 to a byte: (n, ceil(dim/8))."""
    return np.packbits(np.asarray(vectors, dtype=np.float32) > threshold, axis=1)


@dataclass(frozen=True)
class Int8Calibration:
    """Per-dimension affine int8 code: ``x ≈ low + step * (code + 128)``.

    Calibrated on the rows it encodes: the 0.1% and 99.9% quantiles per dimension (min/max under 1,000 rows),
    values outside clipped — robust to outliers without wasting the 256 levels on them.
    """

    low: np.ndarray  # float32 (dim,)
    step: np.ndarray  # float32 (dim,)

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Int8Calibration:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] >= 1000:
            low, high = np.quantile(vectors, [0.001, 0.999], axis=0)
        else:
            low, high = vectors.min(axis=0), vectors.max(axis=0)
        step = np.maximum((high - low) / 255.0, 1e-12)
        return cls(low.astype(np.float32), step.astype(np.float32))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        levels = np.rint((np.asarray(vectors, dtype=np.float32) - self.low) / self.step)
        result: np.ndarray = (np.clip(levels, 0, 255) - 128).astype(np.int8)
        return result

    def decode(self, codes: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.low + self.step * (codes.astype(np.float32) + 128.0)
        return result

    def to_array(self) -> np.ndarray:
        return np.stack([self.low, self.step]).astype(np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Int8Calibration:
        return cls(np.ascontiguousarray(array[0], np.float32), np.ascontiguousarray(array[1], np.float32))


def int8_scores(query: np.ndarray, codes: np.ndarray, calibration: Int8Calibration, block: int = 32768) -> np.ndarray:
    """Inner products of one float32 query with int8-coded rows (asymmetric: the query stays float32).

    ``q·x ≈ q·(low + 128·step) + (q·step)·code``; rows are converted to float32 a block at a time so the
    temporary stays in cache-sized pieces rather than a copy of the whole matrix.
    """
    weights = (query * calibration.step).astype(np.float32)
    offset = float(query @ (calibration.low + 128.0 * calibration.step))
    out = np.empty(codes.shape[0], dtype=np.float32)
    for start in range(0, codes.shape[0], block):
        out[start : start + block] = codes[start : start + block].astype(np.float32) @ weights
    out += offset
    return out


class BinaryCodes:
    """Packed sign codes held in RAM (one numpy array), searched by Hamming distance.

    ``faiss.knn_hamming`` (the ``compress`` extra) scans them with SIMD popcount and a heap when installed; numpy's
    ``bitwise_count`` plus ``argpartition`` is the fallback (same neighbours, slower).
    """

    def __init__(self, n_bytes: int, use_faiss: bool | None = None) -> None:
        self.n_bytes = n_bytes
        self._faiss = load_faiss(use_faiss)
        self._codes = np.zeros((0, n_bytes), dtype=np.uint8)

    @property
    def backend(self) -> str:
        return "faiss" if self._faiss is not None else "numpy"

    def __len__(self) -> int:
        return int(self._codes.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self._codes.nbytes)

    def add(self, codes: np.ndarray) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        self._codes = np.concatenate([self._codes, codes]) if len(self._codes) else codes

    def search(self, query_bits: np.ndarray, count: int, subset: np.ndarray | None = None) -> np.ndarray:
        """Slots (or positions in ``subset``) of the ``count`` rows nearest in Hamming distance, nearest first."""
        codes = self._codes if subset is None else self._codes[subset]
        count = min(count, codes.shape[0])
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        if self._faiss is not None:
            with one_thread(self._faiss):
                _, slots = self._faiss.knn_hamming(np.ascontiguousarray(query_bits[None, :]), codes, count)
            result: np.ndarray = slots[0][slots[0] >= 0].astype(np.int64)
            return result
        distances = hamming(codes, query_bits)
        best = np.argpartition(distances, count - 1)[:count] if count < distances.size else np.arange(distances.size)
        return best[np.lexsort((best, distances[best]))]


def hamming(codes: np.ndarray, query_bits: np.ndarray) -> np.ndarray:
    """Hamming distance of each packed row to the packed query (uint64 words when the width allows)."""
    if codes.shape[1] % 8 == 0:
        words, query = codes.view(np.uint64), np.ascontiguousarray(query_bits).view(np.uint64)
    else:
        words, query = codes, query_bits
    result: np.ndarray = np.bitwise_count(words ^ query).sum(axis=1, dtype=np.int32)
    return result


class Int8Codes:
    """One segment's int8 codes, scanned by inner product with the float32 query.

    With faiss, the codes live only in an ``IndexScalarQuantizer`` (8-bit, per-dimension ranges set to this
    calibration) whose SIMD scan is ~9x faster than numpy's blocked conversion here; faiss reconstructs a code at
    the middle of its step, which shifts every score of a query by the same constant (ranking unchanged), and
    :meth:`decode` removes that shift.
    """

    def __init__(self, codes: np.ndarray, calibration: Int8Calibration, use_faiss: bool | None = None) -> None:
        self.calibration = calibration
        self._faiss = load_faiss(use_faiss)
        self._codes: np.ndarray | None = None
        self._index: Any = None
        self.n_rows = int(codes.shape[0])
        if self._faiss is None:
            self._codes = np.ascontiguousarray(codes, dtype=np.int8)
            return
        faiss = self._faiss
        dim = codes.shape[1]
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        trained = np.concatenate([calibration.low, calibration.step * 255.0]).astype(np.float32)
        faiss.copy_array_to_vector(trained, index.sq.trained)
        index.is_trained = True
        index.add_sa_codes((codes.astype(np.int16) + 128).astype(np.uint8))
        self._index = index

    @property
    def nbytes(self) -> int:
        return self.n_rows * int(self.calibration.low.size)

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Rows of the ``count`` largest approximate scores (unordered)."""
        count = min(count, self.n_rows)
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        if self._index is not None:
            with one_thread(self._faiss):
                _, rows = self._index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), count)
            result: np.ndarray = rows[0][rows[0] >= 0].astype(np.int64)
            return result
        assert self._codes is not None
        scores = int8_scores(query, self._codes, self.calibration)
        return np.argpartition(-scores, count - 1)[:count] if count < scores.size else np.arange(scores.size)

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """The float32 vectors the codes of ``rows`` stand for."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._index is not None:
            result: np.ndarray = self._index.reconstruct_batch(rows) - 0.5 * self.calibration.step
            return result
        assert self._codes is not None
        return self.calibration.decode(self._codes[rows])


class Int8Rows:
    """Int8 codes of every row under one calibration, held in RAM, scored for a few thousand rows at a time (the
    middle stage of a three-stage search: a gather and one float32 matrix-vector product, no Python loop).

    Rows are appended (capacity doubles, so a store of many segments is not copied once per segment); ``reserve``
    sizes the buffer once when the row count is known (opening a store)."""

    def __init__(self, calibration: Int8Calibration, dim: int) -> None:
        self.calibration = calibration
        self._codes = np.zeros((0, dim), dtype=np.int8)
        self._rows = 0
        self._base = calibration.low + 128.0 * calibration.step  # q·x ≈ q·base + (q·step)·code

    def __len__(self) -> int:
        return self._rows

    @property
    def nbytes(self) -> int:
        return int(self._codes.nbytes)

    def reserve(self, rows: int) -> None:
        if rows > self._codes.shape[0]:
            grown = np.empty((rows, self._codes.shape[1]), dtype=np.int8)
            grown[: self._rows] = self._codes[: self._rows]
            self._codes = grown

    def add(self, codes: np.ndarray) -> None:
        end = self._rows + codes.shape[0]
        if end > self._codes.shape[0]:
            self.reserve(max(end, 2 * self._codes.shape[0]))
        self._codes[self._rows : end] = codes
        self._rows = end

    def scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Approximate inner products of the float32 ``query`` with the coded ``rows`` (the query stays float32)."""
        weights = (query * self.calibration.step).astype(np.float32)
        result = matvec(self._codes[rows], weights)
        result += np.float32(query @ self._base)
        return result
