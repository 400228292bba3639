"""An inverted-file (IVF) first stage over packed sign codes: float centres pick the lists, faiss scans their codes.

One responsibility: bucket the binary codes of the live rows by their nearest of ``nlist`` float32 centres
(spherical k-means on the float vectors) and return, for a query, the ``count`` codes nearest in Hamming distance
among the ``nprobe`` lists whose centres score highest against the float query — a fraction of a flat scan's work.
The lists live in a faiss ``IndexBinaryIVF`` searched with ``search_preassigned``. Centres taken from the float
vectors, not from the bits: k-means on the sign bits (faiss's own binary quantizer) gave centres ~170 of 384 bits
from every query on clustered data, and recall@10 stalled at 0.93 with 128 of 1,024 lists probed; float centres
reached 0.97 with 16 of 256 (docs/compression.md). Needs faiss (the ``compress`` extra:
``pip install 'ragloom[compress]'``); the flat scan in :mod:`ragloom.stores.codes` is the reference and fallback.

Persistence is split so a flush never rewrites the whole index: the centres are one file written once (a faiss
``IndexFlatIP`` through ``faiss.serialize_index``: bytes, no pickle), and each segment stores the list of each of
its rows (``seg-*.lists.npy``, int32). Loading deserialises the centres and appends every segment's codes to their
recorded lists (no k-means, no re-assignment). The functions at the end are the store's glue: its options, the
centres file (written atomically, size and sha256 recorded in the store's commit log) and the candidate slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragloom.errors import IndexCorruptError, InvalidInputError
from ragloom.stores.codes import one_thread
from ragloom.stores.files import atomic_write_bytes, sha256_hex

__all__ = [
    "DEFAULT_NPROBE",
    "IVF_FILE",
    "BinaryIVF",
    "IVFParams",
    "check_ivf_options",
    "ivf_candidates",
    "open_ivf",
    "write_ivf",
]

KIND = "faiss.IndexBinaryIVF+IndexFlatIP centres"
DEFAULT_NPROBE = 16
"""Lists probed per query when ``nprobe`` is not given, from ``python -m benchmarks scale dense`` (docs/
compression.md)."""
IVF_FILE = "binary-ivf.faiss"
"""The centres file in a store folder (written once, when the first segment is flushed)."""
TRAIN_PER_LIST = 64  # training rows per cluster (faiss warns below 39; more only slows k-means)


def _faiss() -> Any:
    from ragloom._imports import require

    return require("faiss", "compress", "the binary IVF first stage (ivf_lists=...)")


@dataclass(frozen=True)
class IVFParams:
    """What the persisted index must match: its kind, vector dimension, code width in bits and number of lists."""

    dim: int
    bits: int
    nlist: int
    kind: str = KIND

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "bits": self.bits, "nlist": self.nlist}


class BinaryIVF:
    """Packed sign codes of the live rows, bucketed by their nearest of ``nlist`` binary centres.

    Row ids are the store's slots (int64). Rows are removed with ``remove_ids`` (a linear pass over the lists:
    measured in docs/compression.md), so a search never returns a deleted row and needs no over-fetching.
    """

    def __init__(self, centres: np.ndarray, bits: int) -> None:
        faiss = self._faiss = _faiss()
        self.centres = np.ascontiguousarray(centres, dtype=np.float32)
        self.params = IVFParams(int(self.centres.shape[1]), bits, int(self.centres.shape[0]))
        self._quantizer = faiss.IndexBinaryFlat(bits)  # unused (lists are preassigned), kept alive with the index
        self._index = faiss.IndexBinaryIVF(self._quantizer, bits, self.params.nlist)
        self._index.is_trained = True

    # -- building -------------------------------------------------------------------------------------------------
    @classmethod
    def train(cls, vectors: np.ndarray, nlist: int, bits: int | None = None, seed: int = 0) -> BinaryIVF:
        """Spherical k-means of a sample of the float ``vectors`` into at most ``nlist`` centres (fewer when there
        are fewer than ``TRAIN_PER_LIST`` rows a list: k-means needs points to place its centres)."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        nlist = max(1, min(nlist, vectors.shape[0] // TRAIN_PER_LIST))
        if nlist == 1:
            centre = vectors.mean(axis=0, keepdims=True)
            return cls(centre / max(float(np.linalg.norm(centre)), 1e-12), bits or dim)
        sample = vectors
        if vectors.shape[0] > nlist * TRAIN_PER_LIST:
            rng = np.random.default_rng(seed)
            sample = vectors[np.sort(rng.choice(vectors.shape[0], nlist * TRAIN_PER_LIST, replace=False))]
        kmeans = faiss.Kmeans(dim, nlist, niter=10, seed=seed, spherical=True)
        kmeans.train(sample)
        return cls(kmeans.centroids, bits or dim)

    def to_bytes(self) -> bytes:
        """The centres as a serialised faiss ``IndexFlatIP``, for ``atomic_write_bytes``."""
        flat = self._faiss.IndexFlatIP(self.centres.shape[1])
        flat.add(self.centres)
        return bytes(self._faiss.serialize_index(flat))

    @classmethod
    def from_bytes(cls, data: bytes, expected: IVFParams, where: str) -> BinaryIVF:
        """Deserialise the centres and check they are the ones the store recorded."""
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))  # already downcast
        except RuntimeError as exc:
            raise IndexCorruptError(f"{where} is not a faiss index ({exc}); re-index") from exc
        if not isinstance(index, faiss.IndexFlatIP):
            raise IndexCorruptError(f"{where} holds a {type(index).__name__}, expected IndexFlatIP centres; re-index")
        found = (int(index.d), int(index.ntotal))
        if found != (expected.dim, expected.nlist):
            raise IndexCorruptError(
                f"{where} holds {found[1]} centres of dimension {found[0]}, the store recorded "
                f"{expected.nlist} of {expected.dim}; re-index"
            )
        centres = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)
        return cls(np.asarray(centres).reshape(found[1], found[0]).copy(), expected.bits)

    def assign(self, vectors: np.ndarray, block: int = 65536) -> np.ndarray:
        """The list of each row (int32): its highest-scoring centre."""
        vectors = np.asarray(vectors, dtype=np.float32)
        out = np.empty(vectors.shape[0], dtype=np.int32)
        for start in range(0, vectors.shape[0], block):
            out[start : start + block] = np.argmax(vectors[start : start + block] @ self.centres.T, axis=1)
        return out

    def add(self, codes: np.ndarray, slots: np.ndarray, lists: np.ndarray) -> None:
        """Append rows to their recorded lists (no re-assignment)."""
        if lists.shape[0] != codes.shape[0] or slots.shape[0] != codes.shape[0]:
            raise IndexCorruptError("IVF list assignments do not match the segment's rows; re-index")
        if lists.size and (lists.min() < 0 or lists.max() >= self.params.nlist):
            raise IndexCorruptError(f"IVF list numbers outside 0..{self.params.nlist - 1}; re-index")
        order = np.argsort(lists, kind="stable")
        sorted_codes = np.ascontiguousarray(codes[order], dtype=np.uint8)
        sorted_slots = np.ascontiguousarray(slots[order], dtype=np.int64)
        bounds = np.searchsorted(lists[order], np.arange(self.params.nlist + 1))
        invlists, ptr = self._index.invlists, self._faiss.swig_ptr
        for number in np.flatnonzero(np.diff(bounds)).tolist():
            start, end = int(bounds[number]), int(bounds[number + 1])
            invlists.add_entries(number, end - start, ptr(sorted_slots[start:end]), ptr(sorted_codes[start:end]))
        self._index.ntotal += int(codes.shape[0])

    def remove(self, slots: np.ndarray) -> int:
        """Drop rows by slot (deleted documents); returns how many were found."""
        if slots.size == 0:
            return 0
        ids = np.ascontiguousarray(slots, dtype=np.int64)
        selector = self._faiss.IDSelectorBatch(ids.size, self._faiss.swig_ptr(ids))
        return int(self._index.remove_ids(selector))

    # -- search ---------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """RAM held: codes and ids in the lists plus the centres."""
        return int(self._index.ntotal) * (self.params.bits // 8 + 8) + int(self.centres.nbytes)

    def search(self, query: np.ndarray, query_bits: np.ndarray, count: int, nprobe: int) -> np.ndarray:
        """Slots of up to ``count`` rows nearest the query's bits among the ``nprobe`` lists whose centres score
        highest against the float ``query``, nearest first."""
        count = min(count, len(self))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        nprobe = max(1, min(nprobe, self.params.nlist))
        scores = self.centres @ np.asarray(query, dtype=np.float32)
        lists = np.argpartition(-scores, nprobe - 1)[:nprobe] if nprobe < scores.size else np.arange(scores.size)
        self._index.nprobe = nprobe
        with one_thread(self._faiss):
            _, slots = self._index.search_preassigned(
                np.ascontiguousarray(query_bits[None, :], dtype=np.uint8), count, lists[None, :].astype(np.int64), None
            )
        found: np.ndarray = slots[0][slots[0] >= 0].astype(np.int64)  # faiss's SWIG wrapper returns Any
        return found


# -- the compressed store's glue --------------------------------------------------------------------------------------
def check_ivf_options(first_stage: str, ivf_lists: int | None, nprobe: int | None, use_faiss: bool | None) -> None:
    """Refuse IVF options that cannot work, and a missing faiss now (naming the extra) rather than at a flush."""
    if ivf_lists is not None and (first_stage != "binary" or ivf_lists < 1 or use_faiss is False):
        raise InvalidInputError("ivf_lists (>= 1) needs first_stage='binary' and faiss (use_faiss not False)")
    if nprobe is not None and nprobe < 1:
        raise InvalidInputError(f"nprobe must be >= 1, got {nprobe}")
    if ivf_lists is not None:
        _faiss()


def write_ivf(path: Path | None, ivf: BinaryIVF, trained_rows: int) -> dict[str, Any]:
    """Write the centres atomically (``path=None``: an in-memory store, nothing written); returns the record the
    store commits (parameters, file, size, sha256)."""
    record: dict[str, Any] = {**ivf.params.to_json(), "file": IVF_FILE, "trained_rows": trained_rows}
    if path is not None:
        data = ivf.to_bytes()
        atomic_write_bytes(path / IVF_FILE, data)
        record.update(bytes=len(data), sha256=sha256_hex(data))
    return record


def open_ivf(path: Path, record: dict[str, Any]) -> BinaryIVF:
    """The trained IVF a store recorded: file size and checksum verified, kind and parameters checked."""
    file = path / record["file"]
    if not file.exists() or file.stat().st_size != record["bytes"]:
        raise IndexCorruptError(f"{file} is missing or of the wrong size; restore the directory or re-index")
    data = file.read_bytes()
    if sha256_hex(data) != record["sha256"]:
        raise IndexCorruptError(f"{file} does not match its recorded checksum; re-index")
    expected = IVFParams(int(record["dim"]), int(record["bits"]), int(record["nlist"]))
    return BinaryIVF.from_bytes(data, expected, str(file))


def ivf_candidates(
    ivf: BinaryIVF, query: np.ndarray, bits: np.ndarray, count: int, allowed: np.ndarray | None, nprobe: int
) -> np.ndarray:
    """IVF candidates: deleted rows are not in the index; a filter keeping most rows post-filters a larger IVF
    answer, a smaller one hands every allowed slot to the exact rescoring (the first stage is skipped)."""
    live = len(ivf)
    if allowed is None or allowed.size == live:
        return ivf.search(query, bits, count, nprobe)
    if allowed.size > live // 2:
        slots = ivf.search(query, bits, count + live - allowed.size, nprobe)
        kept: np.ndarray = slots[np.isin(slots, allowed, assume_unique=True)][:count]
        return kept
    return allowed
