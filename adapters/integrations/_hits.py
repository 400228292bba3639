"""Hits and answers as framework metadata and JSON: what a LangChain Document, a LlamaIndex node or an agent tool
carries of a ragloom Hit, and the way back (ours round-trip exactly, foreign ones get neutral values)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, get_args

from ragloom.types import Answer, Chunk, Hit, MetadataValue, ScoreKind

__all__ = ["METADATA_KEYS", "answer_to_dict", "hit_from_metadata", "hit_metadata", "hit_to_dict"]

METADATA_KEYS = (
    "chunk_id",
    "doc_id",
    "source",
    "page",
    "start",
    "end",
    "score",
    "score_kind",
    "retriever",
    "rank",
    "explanation",
)
"""The keys every framework document/node built from a ragloom Hit carries in its metadata (see docs/langchain.md)."""

_SCORE_KINDS: frozenset[str] = frozenset(get_args(ScoreKind))


def hit_metadata(hit: Hit) -> dict[str, MetadataValue | None]:
    """The chunk's own metadata plus ragloom's keys (which win over a document key of the same name)."""
    shape = hit.to_dict()  # the one JSON form, flattened: its fields minus the text and the nested metadata
    metadata: dict[str, MetadataValue | None] = dict(hit.chunk.metadata)
    metadata.update({key: shape[key] for key in METADATA_KEYS if key != "explanation"})
    if hit.explanation:
        metadata["explanation"] = hit.explanation
    return metadata


def _int_or(value: object, default: int | None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def hit_from_metadata(text: str, metadata: Mapping[str, Any], *, chunk_id: str, score: float | None, rank: int) -> Hit:
    """Rebuild a Hit from a framework document/node: ours round-trip exactly, foreign ones get neutral values."""
    doc_id = str(metadata.get("doc_id") or chunk_id)
    start = _int_or(metadata.get("start"), 0) or 0
    end = _int_or(metadata.get("end"), start + len(text))
    end = max(end if end is not None else start + len(text), start)
    page = _int_or(metadata.get("page"), None)
    kind = metadata.get("score_kind")
    own = {
        k: v
        for k, v in metadata.items()
        if k not in METADATA_KEYS
        and isinstance(k, str)
        and k
        and isinstance(v, (str, int, float, bool))
        and not (isinstance(v, float) and not math.isfinite(v))
    }
    value = float(score) if score is not None and math.isfinite(float(score)) else 0.0
    chunk = Chunk(
        id=chunk_id,
        doc_id=doc_id,
        text=text,
        start=start,
        end=end,
        page=page if page and page >= 1 else None,
        source=str(metadata.get("source") or ""),
        metadata=own,
    )
    return Hit(
        chunk=chunk,
        score=value,
        score_kind=kind if kind in _SCORE_KINDS else "fused",
        retriever=str(metadata.get("retriever") or "external"),
        rank=rank,
        explanation=str(metadata.get("explanation") or ""),
    )


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    """A hit's JSON form (what agent tools return): :meth:`Hit.to_dict`."""
    return hit.to_dict()


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    """An answer's JSON form (what agent tools return): :meth:`Answer.to_dict`."""
    return answer.to_dict()
