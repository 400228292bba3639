"""Token inputs for encoders: the length policy and the batching every transformers encoder here shares.

Documents are never cut: an input over the model's limit is an :class:`InputTooLongError` (retrievers chunk so
this does not happen). Queries are cut to the limit with a :class:`TruncationWarning`, keeping the closing special
token. Batches are formed longest first, so inputs of similar length share a batch and padding stays small (as
sentence-transformers does).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from ragloom.errors import InputTooLongError, TruncationWarning

__all__ = ["fit_to_limit", "longest_first"]


def fit_to_limit(
    encoded: list[list[int]],
    max_length: int,
    *,
    kind: str,
    model: str,
    closing_special: bool,
    chunker: str = "the retriever",
    query_hint: str = "",
) -> list[list[int]]:
    """``encoded`` unchanged when every input fits; otherwise an error for documents, or queries cut to the limit
    (keeping the closing special token when the model has one) with a warning."""
    too_long = [i for i, ids in enumerate(encoded) if len(ids) > max_length]
    if not too_long:
        return encoded
    worst = max(len(encoded[i]) for i in too_long)
    if kind == "document":
        raise InputTooLongError(
            f"{len(too_long)} document input(s) exceed {model}'s limit of {max_length} tokens (longest: {worst}). "
            f"Chunk them first ({chunker} does) or lower the chunk size."
        )
    warnings.warn(
        f"{len(too_long)} query input(s) exceed {max_length} tokens (longest: {worst}) and were cut to the model's "
        f"limit{'; ' + query_hint if query_hint else '.'}",
        TruncationWarning,
        stacklevel=4,
    )
    tail = 1 if closing_special else 0
    return [ids if len(ids) <= max_length else ids[: max_length - tail] + ids[len(ids) - tail :] for ids in encoded]


def longest_first(encoded: list[list[int]], batch_size: int) -> Iterator[np.ndarray]:
    """Row indices of ``encoded`` in batches of ``batch_size``, longest inputs first (stable for equal lengths)."""
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    for begin in range(0, len(encoded), batch_size):
        yield order[begin : begin + batch_size]
