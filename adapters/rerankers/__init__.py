"""Rerankers behind :class:`ragloom.protocols.Reranker`: cross-encoder, LLM pointwise and listwise, and
E²Rank-style listwise reranking with the dense encoder itself.

Importing this package loads no model library; torch and transformers load when a reranker is built. The
late-interaction MaxSim reranker lives with the multi-vector adapters (``ragloom.adapters.multivector``).
"""

from __future__ import annotations

from ragloom.adapters.rerankers.cross_encoder import CrossEncoderReranker, PairScore
from ragloom.adapters.rerankers.embedding import EmbeddingListwiseReranker
from ragloom.adapters.rerankers.llm import (
    LLMListwiseReranker,
    LLMPointwiseReranker,
    parse_permutation,
    parse_yes_no,
)

__all__ = [
    "CrossEncoderReranker",
    "EmbeddingListwiseReranker",
    "LLMListwiseReranker",
    "LLMPointwiseReranker",
    "PairScore",
    "parse_permutation",
    "parse_yes_no",
]
