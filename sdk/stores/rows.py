"""What every store shares about its rows: the equality filters and their checks, top-k selection, the checks on
a batch of vectors, and chunks as JSON lines on disk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from ragloom.errors import InvalidInputError
from ragloom.protocols import Filters
from ragloom.types import Chunk

__all__ = [
    "check_filters",
    "check_token_matrices",
    "check_vectors",
    "chunk_matches",
    "chunks_jsonl",
    "read_chunks_jsonl",
    "top_k",
]


def check_filters(filters: object) -> None:
    """Refuse what no store supports, identically in every store: filters are ``{key: value}`` equality tests
    (all must match) on ``doc_id``, ``source``, ``page`` or a metadata key, with a str, int, float or bool value.
    Operators (``$in``, ``$or``...), lists and nested objects raise instead of being misread or silently matching
    nothing."""
    if filters is None:
        return
    if not isinstance(filters, Mapping):
        raise InvalidInputError(
            f"filters must be a mapping of key -> value, got {type(filters).__name__}; e.g. {{'doc_id': 'a.pdf'}}"
        )
    for key, value in filters.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"filter keys must be non-empty strings, got {key!r}")
        if key.startswith("$"):
            raise InvalidInputError(
                f"filter operator {key!r} is not supported: filters are equality tests that must all match, e.g. "
                "{'doc_id': 'a.pdf', 'lang': 'en'}; run one search per alternative and fuse the results instead"
            )
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidInputError(
                f"filter {key!r}: value must be a str, int, float or bool, got {type(value).__name__} ({value!r}); "
                "operators such as $in or lists of values are not supported, run one search per value instead"
            )


def chunk_matches(chunk: Chunk, filters: Filters) -> bool:
    """Equality filters on doc_id, source, page or a metadata key; all must match."""
    for key, value in filters.items():
        if key == "doc_id":
            actual: object = chunk.doc_id
        elif key == "source":
            actual = chunk.source
        elif key == "page":
            actual = chunk.page
        else:
            actual = chunk.metadata.get(key)
        if actual != value:
            return False
    return True


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties by index, so results are deterministic)."""
    n = scores.shape[0]
    candidates = np.arange(n) if k >= n else np.argpartition(scores, n - k)[n - k :]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def check_vectors(chunks: Sequence[Chunk], vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """``vectors`` as float32, one row per chunk, of the store's dimension ``dim`` (None: not fixed yet), finite,
    for distinct chunk ids; anything else raises InvalidInputError."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        raise InvalidInputError(f"Expected {len(chunks)} vectors as a 2-D array, got shape {vectors.shape}")
    if dim is not None and len(chunks) and vectors.shape[1] != dim:
        raise InvalidInputError(f"Vectors have dimension {vectors.shape[1]}; this store holds {dim}")
    if not np.all(np.isfinite(vectors)):
        raise InvalidInputError("Vectors contain NaN or Inf; check the encoder's output")
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("Duplicate chunk ids in one batch")
    return vectors


_FP16_MAX = 65504.0


def check_token_matrices(chunks: Sequence[Chunk], vectors: Sequence[np.ndarray], dim: int) -> list[np.ndarray]:
    """One (tokens >= 1, ``dim``) float16/float32 matrix per chunk, finite and within the float16 range (what a
    multi-vector store keeps), for distinct chunk ids; anything else raises InvalidInputError."""
    if len(chunks) != len(vectors):
        raise InvalidInputError(f"{len(chunks)} chunks but {len(vectors)} vector matrices")
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("Duplicate chunk ids in one batch")
    checked = []
    for chunk, matrix in zip(chunks, vectors):
        array = np.asarray(matrix)
        if array.dtype not in (np.float16, np.float32):
            array = array.astype(np.float32)
        if array.ndim != 2 or array.shape[1] != dim or array.shape[0] < 1:
            raise InvalidInputError(f"{chunk.id}: expected a (tokens >= 1, {dim}) matrix, got shape {array.shape}")
        if not np.all(np.isfinite(array)) or np.abs(array).max() > _FP16_MAX:
            raise InvalidInputError(f"{chunk.id}: vectors contain NaN/Inf or exceed the float16 range")
        checked.append(array)
    return checked


def chunks_jsonl(chunks: Sequence[Chunk]) -> bytes:
    """Chunks as UTF-8 JSON lines, one chunk a line."""
    return "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in chunks).encode("utf-8")


def read_chunks_jsonl(text: str) -> list[Chunk]:
    """The chunks of :func:`chunks_jsonl`'s output (blank lines skipped)."""
    return [Chunk.from_dict(json.loads(line)) for line in text.splitlines() if line]
