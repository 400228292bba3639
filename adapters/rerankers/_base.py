"""What every reranker shares: argument checks, turning scores into ranked Hits, and passage windows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ragloom.errors import InvalidInputError
from ragloom.retrieval import check_query
from ragloom.types import Hit

__all__ = ["check_rerank", "ranked_hits", "text_windows"]


def check_rerank(query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
    """Typed errors for a bad query, k or hit list; returns the hits as a list."""
    check_query(query, k)
    items = list(hits)
    for hit in items:
        if not isinstance(hit, Hit):
            raise InvalidInputError(f"Rerankers take ragloom.Hit objects (from a retriever), got {type(hit).__name__}")
    return items


def ranked_hits(
    hits: Sequence[Hit], scores: Sequence[float], k: int, name: str, notes: Sequence[str] | None = None
) -> list[Hit]:
    """The ``k`` best hits by ``scores`` (ties keep the input order), re-scored as ``rerank`` hits of ``name``.

    ``notes[i]`` becomes hit *i*'s explanation; the first stage's explanation is kept after it.
    """
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    out: list[Hit] = []
    for rank, i in enumerate(order[:k], start=1):
        hit = hits[i]
        note = notes[i] if notes else ""
        explanation = " | ".join(part for part in (note, hit.explanation) if part)
        out.append(
            dataclasses.replace(
                hit, score=float(scores[i]), score_kind="rerank", retriever=name, rank=rank, explanation=explanation
            )
        )
    return out


def text_windows(text: str, spans: Sequence[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of windows of at most ``size`` tokens (``overlap`` shared) over ``text``'s token ``spans``.

    One window covering the whole text when it fits; windows always start and end on token boundaries.
    """
    if size < 1 or not 0 <= overlap < size:
        raise InvalidInputError(f"window size {size} and overlap {overlap}: need size >= 1 and 0 <= overlap < size")
    if len(spans) <= size:
        return [(0, len(text))]
    windows = []
    step = size - overlap
    for first in range(0, len(spans), step):
        last = min(first + size, len(spans)) - 1
        windows.append((spans[first][0], spans[last][1]))
        if last == len(spans) - 1:
            break
    return windows
