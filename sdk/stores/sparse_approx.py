"""Approximate learned-sparse search over the inverted index: Seismic-style query and postings pruning with exact
rescoring.

Seismic (Bruch et al., 2024) keeps, per term, only the postings with the largest weights, and queries with only
the query's largest terms; the few documents reached are then scored exactly. Here the same two knobs act at
query time over the existing segments, so the exact index stays the reference and nothing is re-indexed:

- ``query_terms``: the query's terms with the largest possible contribution (query weight × the term's largest
  posting weight) — Seismic's ``q_cut``;
- ``postings``: per term, only its ``postings`` largest weights are scanned — Seismic's ``λ``. Each segment keeps
  the head of every long postings list in weight order (computed on first use, at most ``head`` postings a term,
  about a third more memory than the postings for SPLADE at 1M documents);
- ``rescore``: the ``k * rescore`` best partial scores are rescored exactly over all query terms.

``python -m benchmarks scale sparse`` prints recall@10 against the exact answer next to the latency of each
setting; :data:`DEFAULT` is chosen from that table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragloom.errors import InvalidInputError

__all__ = ["DEFAULT", "ApproxSearch", "approx_top_rows"]


@dataclass(frozen=True)
class ApproxSearch:
    """The recall/speed knob of approximate sparse search (see the module docstring)."""

    query_terms: int | None = 8
    postings: int = 1024
    rescore: int = 5

    def __post_init__(self) -> None:
        if self.query_terms is not None and self.query_terms < 1:
            raise InvalidInputError(f"query_terms must be >= 1 or None, got {self.query_terms}")
        if self.postings < 1 or self.rescore < 1:
            raise InvalidInputError("postings and rescore must be >= 1")


DEFAULT = ApproxSearch()
"""The default approximate setting, from the ``benchmarks scale sparse`` table (docs/compression.md): at 1M
synthetic SPLADE-like documents it kept recall@10 1.000 (0.999 at 300k) at the lowest latency of the settings
measured."""

_HEADS_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Heads:
    """Per term, the first ``cap`` postings in decreasing weight: rows and weights, and where each term starts."""

    cap: int
    indptr: np.ndarray  # int64 (n_terms + 1,)
    rows: np.ndarray  # int32
    weights: np.ndarray  # float32


def _heads(seg: Any, cap: int) -> _Heads:
    """The segment's impact-ordered heads for lists longer than ``cap`` (cached on the segment)."""
    cached: dict[int, _Heads] = seg.__dict__.setdefault("_impact_heads", {})
    found = cached.get(cap)
    if found is not None:
        return found
    with _HEADS_LOCK:
        if cap in cached:
            return cached[cap]
        indptr, rows, data = seg.postings.indptr, seg.postings.indices, seg.postings.data
        lengths = np.diff(indptr)
        long_terms = np.flatnonzero(lengths > cap)
        head_len = np.zeros(lengths.size, dtype=np.int64)
        head_len[long_terms] = cap
        head_ptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(head_len, out=head_ptr[1:])
        head_rows = np.empty(int(head_ptr[-1]), dtype=np.int32)
        head_weights = np.empty(int(head_ptr[-1]), dtype=np.float32)
        for term in long_terms.tolist():
            start, end = int(indptr[term]), int(indptr[term + 1])
            span = data[start:end]
            top = np.argpartition(-span, cap - 1)[:cap]
            top = top[np.argsort(-span[top], kind="stable")]
            at = int(head_ptr[term])
            head_rows[at : at + cap] = rows[start:end][top]
            head_weights[at : at + cap] = span[top]
        found = _Heads(cap, head_ptr, head_rows, head_weights)
        cached[cap] = found
        return found


_LOCAL = threading.local()


def _accumulator(seg: Any) -> np.ndarray:
    """A zeroed float32 score array for ``seg``, reused across this thread's queries (a fresh 4 MB array per
    query at 1M rows cost page faults that dominated the latency under memory pressure)."""
    arrays: dict[int, np.ndarray] = _LOCAL.__dict__.setdefault("arrays", {})
    found = arrays.get(id(seg))
    if found is None or found.size != seg.n_rows:
        if len(arrays) > 64:  # segments come and go with merges: forget old ones
            arrays.clear()
        found = arrays[id(seg)] = np.zeros(seg.n_rows, dtype=np.float32)
    return found


def _head_cap(postings: int) -> int:
    """Heads are built for the next power of two at or above ``postings`` (one cache serves nearby settings)."""
    return 1 << max(8, (postings - 1).bit_length())


def approx_top_rows(
    seg: Any, terms: np.ndarray, weights: np.ndarray, k: int, allowed: np.ndarray | None, settings: ApproxSearch
) -> np.ndarray:
    """Candidate rows of one segment (about ``k * rescore``, unordered) for the query ``terms``/``weights``
    (already restricted to the segment's vocabulary), by pruned accumulation."""
    if terms.size == 0:
        return np.zeros(0, dtype=np.int64)
    largest, _ = seg.bounds()
    if settings.query_terms is not None and terms.size > settings.query_terms:
        keep = np.argsort(-(weights * largest[terms]), kind="stable")[: settings.query_terms]
        terms, weights = terms[keep], weights[keep]
    heads = _heads(seg, _head_cap(settings.postings))
    indptr, rows, data = seg.postings.indptr, seg.postings.indices, seg.postings.data
    scores = _accumulator(seg)
    try:
        reached = []
        for term, weight in zip(terms.tolist(), weights.tolist()):
            start, end = int(indptr[term]), int(indptr[term + 1])
            if end - start > heads.cap:
                at = int(heads.indptr[term])
                span_rows = heads.rows[at : at + settings.postings]
                span = heads.weights[at : at + settings.postings]
            else:
                span_rows, span = rows[start:end], data[start:end]
                if end - start > settings.postings:
                    top = np.argpartition(-span, settings.postings - 1)[: settings.postings]
                    span_rows, span = span_rows[top], span[top]
            np.add.at(scores, span_rows, span * np.float32(weight))
            reached.append(span_rows)
        touched = np.concatenate(reached)
        partial = scores[touched]
    except BaseException:
        _LOCAL.__dict__.get("arrays", {}).pop(id(seg), None)  # never reuse a half-filled accumulator
        raise
    scores[touched] = 0.0  # back to all zeros for the next query (cheaper than a fresh array per query)
    if allowed is not None:
        partial = np.where(allowed[touched], partial, np.float32(0))
    want = k * settings.rescore
    pool = want * len(reached)  # a row appears at most once per term: this many hold `want` distinct rows
    if touched.size > pool:
        best = np.argpartition(-partial, pool - 1)[:pool]
        touched, partial = touched[best], partial[best]
    candidates, first = np.unique(touched, return_index=True)
    partial = partial[first]
    keep = partial > 0
    candidates, partial = candidates[keep], partial[keep]
    if candidates.size > want:
        candidates = candidates[np.argpartition(-partial, want - 1)[:want]]
    result: np.ndarray = candidates.astype(np.int64)
    return result
