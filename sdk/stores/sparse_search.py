"""Exact top-k over a sparse segment's postings: term-at-a-time score accumulation (``np.add.at`` into a float32
accumulator), optional MaxScore-style pruning, exact float64 rescoring of the winners, and the terms that explain
each match. :class:`ragloom.stores.sparse.SparseIndex` runs these per segment and merges the results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ragloom.types import SparseVector

if TYPE_CHECKING:
    from ragloom.stores.sparse import _Segment

__all__ = ["contributions_of", "largest_terms", "query_terms", "top_rows"]


def query_terms(seg: _Segment, query: SparseVector) -> tuple[np.ndarray, np.ndarray]:
    """The query's terms that have postings in ``seg``, and their weights."""
    indices = query.indices.astype(np.int64)
    inside = indices < seg.postings.shape[0]
    terms, weights = indices[inside], query.values[inside]
    indptr = seg.postings.indptr
    keep = (indptr[terms + 1] > indptr[terms]) & (weights != 0)
    return terms[keep], weights[keep]


def top_rows(seg: _Segment, query: SparseVector, k: int, allowed: np.ndarray | None, prune: bool) -> np.ndarray:
    """Rows of ``seg`` holding the ``k`` best scores for ``query`` (unordered), by term-at-a-time accumulation.

    Every query term's postings are added into a float32 accumulator. With ``prune`` (and no negative weights)
    terms are taken in decreasing order of their largest possible contribution (query weight × the term's largest
    posting weight), and before a long postings list the k-th best partial
    score θ among the rows reached so far is taken; when the terms left could add less than θ in total, no row
    outside the candidates (partial score + what is left ≥ θ) can reach the top ``k``, so the remaining terms only
    look those candidates up by binary search instead of scanning their postings (MaxScore-style pruning).
    """
    terms, weights = query_terms(seg, query)
    if terms.size == 0:
        return np.zeros(0, dtype=np.int64)
    postings = seg.postings
    indptr, rows, data = postings.indptr, postings.indices, postings.data
    scores = np.zeros(seg.n_rows, dtype=np.float32)
    largest, smallest = seg.bounds() if prune else (None, -1.0)
    if largest is None or smallest < 0 or not bool(np.all(weights > 0)):
        for start, end, weight in zip(indptr[terms].tolist(), indptr[terms + 1].tolist(), weights.tolist()):
            span = data[start:end]
            np.add.at(scores, rows[start:end], span if weight == 1.0 else span * np.float32(weight))
        return _best(scores, allowed, k)
    bounds = weights.astype(np.float64) * largest[terms]
    order = np.argsort(-bounds, kind="stable")
    left = np.cumsum(bounds[order][::-1])[::-1]  # left[i]: the most that terms order[i:] can still add
    long_list = max(256, seg.n_rows // 256)
    reached: list[np.ndarray] = []
    reached_size = 0
    for i, j in enumerate(order.tolist()):
        start, end = int(indptr[terms[j]]), int(indptr[terms[j] + 1])
        if i and end - start >= long_list and reached_size <= seg.n_rows // 8:
            candidates = _candidates(scores, reached, allowed, k, float(left[i]))
            if candidates is not None:
                partial = scores[candidates].astype(np.float64)
                for jj in order[i:].tolist():
                    partial += _lookup(indptr, rows, data, int(terms[jj]), candidates) * float(weights[jj])
                return candidates[np.argpartition(-partial, k - 1)[:k]] if partial.size > k else candidates
        np.add.at(scores, rows[start:end], data[start:end] * weights[j])
        reached.append(rows[start:end])
        reached_size += end - start
    return _best(scores, allowed, k)


def _best(scores: np.ndarray, allowed: np.ndarray | None, k: int) -> np.ndarray:
    """Rows of the ``k`` largest non-zero scores among the allowed rows (unordered)."""
    if allowed is not None:
        scores[~allowed] = 0.0
    top = np.argpartition(-scores, k - 1)[:k] if scores.size > k else np.arange(scores.size)
    result: np.ndarray = top[scores[top] != 0]
    return result


def _candidates(
    scores: np.ndarray, reached: list[np.ndarray], allowed: np.ndarray | None, k: int, left: float
) -> np.ndarray | None:
    """The rows that can still make the top ``k`` when the terms left add at most ``left``; None if all can.

    Only rows in a processed postings list have a partial score (weights are positive). A postings list holds
    distinct rows, so the k-th best partial score within any one of them is a lower bound θ of the final k-th
    best; a row needs partial + left ≥ θ to matter.
    """
    theta = 0.0
    for span in reached:
        values = scores[span] if allowed is None else scores[span[allowed[span]]]
        if values.size >= k:
            theta = max(theta, float(np.partition(values, values.size - k)[values.size - k]))
    theta *= 1 - 1e-5
    if not left < theta:
        return None
    rows = np.concatenate(reached)
    rows = np.sort(rows[scores[rows] >= theta - left])
    rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]  # unique (sort-based: faster than hashing here)
    return rows if allowed is None else rows[allowed[rows]]


def _lookup(indptr: np.ndarray, rows: np.ndarray, data: np.ndarray, term: int, wanted: np.ndarray) -> np.ndarray:
    """Weights of ``term`` in the ``wanted`` rows (0 where absent), by binary search in its sorted postings."""
    start, end = int(indptr[term]), int(indptr[term + 1])
    found = np.zeros(wanted.size, dtype=np.float64)
    if end == start or wanted.size == 0:
        return found
    span = rows[start:end]
    where = np.searchsorted(span, wanted)
    inside = where < span.size
    hit = np.zeros(wanted.size, dtype=bool)
    hit[inside] = span[where[inside]] == wanted[inside]
    found[hit] = data[start + where[hit]]
    return found


def contributions_of(seg: _Segment, query: SparseVector, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The query's terms in ``seg`` and each one's contribution (query weight × posting weight) to each row.

    Row sums are the exact scores (float64, added in term order, so they do not depend on how the index is
    segmented or on the order terms were accumulated in)."""
    terms, weights = query_terms(seg, query)
    postings = seg.postings
    contributions = np.zeros((rows.size, terms.size))
    for column, (term, weight) in enumerate(zip(terms.tolist(), weights.tolist())):
        contributions[:, column] = _lookup(postings.indptr, postings.indices, postings.data, term, rows) * weight
    return terms, contributions


def largest_terms(
    terms: np.ndarray, contributions: np.ndarray, position: int, top: int
) -> tuple[tuple[int, float], ...]:
    """The ``top`` largest contributions to one row, as (term, contribution); ties by smaller term id."""
    row = contributions[position]
    best = np.argsort(-row, kind="stable")[:top]
    return tuple((int(terms[b]), float(row[b])) for b in best if row[b] != 0)
