"""An inverted-file (IVF) first stage over packed sign codes: faiss ``IndexBinaryIVF`` (Hamming).

One responsibility: hold the binary codes of the live rows in ``nlist`` Hamming clusters and return, for a query,
the ``count`` nearest codes among the ``nprobe`` nearest clusters — a fraction of a flat scan's work. Needs faiss
(the ``compress`` extra: ``pip install 'ragloom[compress]'``); the flat scan in :mod:`ragloom.stores.codes` is the
reference and the fallback.

Persistence is split so a flush never rewrites the whole index: the *trained, empty* index (the cluster centres and
the parameters) is one file written once with ``faiss.serialize_index_binary`` (bytes, no pickle), and each
segment stores the cluster of each of its rows (``seg-*.lists.npy``, int32). Loading deserialises the centres and
appends every segment's codes to their recorded lists (no k-means, no re-assignment).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragloom.errors import IndexCorruptError
from ragloom.stores.codes import one_thread

__all__ = ["DEFAULT_NPROBE", "BinaryIVF", "IVFParams"]

KIND = "faiss.IndexBinaryIVF"
DEFAULT_NPROBE = 16
"""Clusters probed per query when ``nprobe`` is not given, from ``python -m benchmarks scale dense`` (docs/
compression.md): at 1M × 384 with 1,024 lists and oversample 100 it reached recall@10 ≥ 0.99 of exact."""
TRAIN_PER_LIST = 64  # training rows per cluster (faiss warns below 39; more only slows k-means)


def _faiss() -> Any:
    from ragloom._imports import require

    return require("faiss", "compress", "the binary IVF first stage (ivf_lists=...)")


@dataclass(frozen=True)
class IVFParams:
    """What the persisted index must match: its kind, code width in bits and number of lists."""

    bits: int
    nlist: int
    kind: str = KIND

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": self.bits, "nlist": self.nlist}


class BinaryIVF:
    """Packed sign codes of the live rows, bucketed by their nearest of ``nlist`` binary centres.

    Row ids are the store's slots (int64). Rows are removed with ``remove_ids`` (a linear pass over the lists:
    measured in docs/compression.md), so a search never returns a deleted row and needs no over-fetching.
    """

    def __init__(self, index: Any, params: IVFParams) -> None:
        self._faiss = _faiss()
        self._index = index
        self.params = params

    # -- building -------------------------------------------------------------------------------------------------
    @classmethod
    def train(cls, codes: np.ndarray, nlist: int, seed: int = 0) -> BinaryIVF:
        """Cluster a sample of ``codes`` into at most ``nlist`` lists (fewer when there are fewer than
        ``TRAIN_PER_LIST`` rows a list: k-means needs points to place its centres)."""
        faiss = _faiss()
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        bits = codes.shape[1] * 8
        nlist = max(1, min(nlist, codes.shape[0] // TRAIN_PER_LIST))
        sample = codes
        if codes.shape[0] > nlist * TRAIN_PER_LIST:
            rng = np.random.default_rng(seed)
            sample = codes[np.sort(rng.choice(codes.shape[0], nlist * TRAIN_PER_LIST, replace=False))]
        quantizer = faiss.IndexBinaryFlat(bits)
        index = faiss.IndexBinaryIVF(quantizer, bits, nlist)
        index.own_fields = True
        quantizer.this.disown()  # the index owns (and frees) its quantizer
        if nlist > 1:
            index.cp.seed = seed
            index.train(sample)
        else:
            index.quantizer.add(sample[:1])
            index.is_trained = True
        return cls(index, IVFParams(bits, nlist))

    def to_bytes(self) -> bytes:
        """The trained index without its rows (centres + parameters), for ``atomic_write_bytes``."""
        faiss = self._faiss
        empty = faiss.IndexBinaryIVF(self._index.quantizer, self.params.bits, self.params.nlist)
        empty.is_trained = True
        return bytes(faiss.serialize_index_binary(empty))

    @classmethod
    def from_bytes(cls, data: bytes, expected: IVFParams, where: str) -> BinaryIVF:
        """Deserialise a trained index and check it is the one the store recorded."""
        faiss = _faiss()
        try:
            index = faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))  # already downcast
        except RuntimeError as exc:
            raise IndexCorruptError(f"{where} is not a faiss binary index ({exc}); re-index") from exc
        if not isinstance(index, faiss.IndexBinaryIVF):
            raise IndexCorruptError(f"{where} holds a {type(index).__name__}, expected {KIND}; re-index")
        found = IVFParams(int(index.d), int(index.nlist))
        if found != expected or index.ntotal != 0:
            raise IndexCorruptError(
                f"{where} holds {found.to_json()} with {index.ntotal} rows, the store recorded "
                f"{expected.to_json()} with 0; re-index"
            )
        return cls(index, expected)

    @staticmethod
    def checksum(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def assign(self, codes: np.ndarray) -> np.ndarray:
        """The list of each row (int32): its nearest centre in Hamming distance."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.int32)
        with one_thread(self._faiss):
            _, lists = self._index.quantizer.search(codes, 1)
        return lists[:, 0].astype(np.int32)

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
        return int(self._index.ntotal) * (self.params.bits // 8 + 8) + self.params.nlist * self.params.bits // 8

    def search(self, query_bits: np.ndarray, count: int, nprobe: int) -> np.ndarray:
        """Slots of up to ``count`` rows nearest the query among the ``nprobe`` nearest lists, nearest first."""
        count = min(count, len(self))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        self._index.nprobe = max(1, min(nprobe, self.params.nlist))
        with one_thread(self._faiss):
            _, slots = self._index.search(np.ascontiguousarray(query_bits[None, :], dtype=np.uint8), count)
        return slots[0][slots[0] >= 0].astype(np.int64)
