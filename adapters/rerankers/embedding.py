"""E²Rank-style listwise reranking with the dense encoder itself: no extra model, one extra encoder call.

E²Rank (Liu et al., 2025) re-scores candidates with an embedding model whose query representation has been
enriched by the top candidates — listwise pseudo-relevance feedback in embedding space. Here the enrichment is
Rocchio's: the query vector plus ``beta`` times the mean vector of the first stage's top ``feedback`` candidates,
renormalised; every candidate is re-scored by cosine with that vector and blended (``mix``) with its first-stage
score, both min-max normalised over the list. The candidates' vectors come from one batched
``encode_documents`` call (chunks already fit the encoder: they were cut with its tokenizer).

Why it helps: the top candidates carry the vocabulary and topic of relevant passages that a short query lacks;
why it can hurt: when the first stage's top is wrong, feedback drifts towards it (keep ``feedback`` small).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragloom.adapters.rerankers._base import check_rerank, ranked_hits
from ragloom.errors import ConfigError
from ragloom.protocols import DenseEncoder
from ragloom.types import Hit

__all__ = ["EmbeddingListwiseReranker"]


def _minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return np.ones_like(values) if hi - lo < 1e-12 else (values - lo) / (hi - lo)


@dataclass(frozen=True)
class EmbeddingListwiseReranker:
    """Rerank with ``encoder`` (a :class:`~ragloom.protocols.DenseEncoder`, e.g. the index's own) and a query
    vector enriched by the first stage's top ``feedback`` candidates (see the module docs)."""

    encoder: DenseEncoder
    feedback: int = 3
    beta: float = 1.0
    mix: float = 0.5
    name: str = "e2rank"

    def __post_init__(self) -> None:
        if self.feedback < 0 or self.beta < 0 or not 0.0 <= self.mix <= 1.0:
            raise ConfigError(
                f"Need feedback >= 0, beta >= 0 and 0 <= mix <= 1, got {self.feedback}, {self.beta}, {self.mix}"
            )

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """Re-score ``hits`` (in first-stage order, best first) and keep the best ``k``."""
        items = check_rerank(query, hits, k)
        with_text = [i for i, h in enumerate(items) if h.chunk.text.strip()]
        if not with_text:
            return ranked_hits(items, [h.score for h in items], k, self.name)
        vectors = self.encoder.encode_documents([items[i].chunk.text for i in with_text]).astype(np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        q = self.encoder.encode_queries([query])[0].astype(np.float64)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        top = vectors[: self.feedback]
        enriched = q + self.beta * top.mean(axis=0) if len(top) else q
        enriched /= max(float(np.linalg.norm(enriched)), 1e-12)
        cosine = vectors @ enriched
        first = np.array([items[i].score for i in with_text], dtype=np.float64)
        blended = (1 - self.mix) * _minmax(cosine) + self.mix * _minmax(first)
        scores = np.full(len(items), -1.0)  # passages without text (page images) go last, in their order
        scores[with_text] = blended
        notes = [""] * len(items)
        for position, i in enumerate(with_text):
            notes[i] = f"e2rank cos {cosine[position]:.3f}"
        return ranked_hits(items, scores.tolist(), k, self.name, notes)
