"""Sparse retrieval: SPLADE (learned term weights) over ragloom's inverted index, and BM25 through bm25s.

Importing this package is cheap; torch, transformers, scipy, bm25s and PyStemmer load on first use.

- :class:`SpladeEncoder`: any masked-LM checkpoint as a SparseEncoder (max-pooled log(1+ReLU) weights, top-k
  pruning, an optional separate query model, inference-free query mode)
- :class:`SparseRetriever`: chunk → encode → :class:`ragloom.stores.sparse.SparseIndex`, hits explained by terms
- :class:`BM25Retriever`: bm25s with stemming and stopwords, persisted without pickle
- :func:`tokenizer_chunker`: chunk like a model's retriever would, so chunk ids match across a hybrid pipeline
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragloom._imports import lazy_exports

__all__ = ["BM25Retriever", "SparseRetriever", "SpladeEncoder", "tokenizer_chunker"]

_LAZY = {
    "BM25Retriever": "ragloom.adapters.sparse.bm25",
    "tokenizer_chunker": "ragloom.adapters.sparse.bm25",
    "SparseRetriever": "ragloom.adapters.sparse.retriever",
    "SpladeEncoder": "ragloom.adapters.sparse.splade",
}

if TYPE_CHECKING:
    from ragloom.adapters.sparse.bm25 import BM25Retriever, tokenizer_chunker
    from ragloom.adapters.sparse.retriever import SparseRetriever
    from ragloom.adapters.sparse.splade import SpladeEncoder


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
