"""Builders that ``ragloom.recipes.config.RETRIEVER_BUILDERS`` resolves for the kinds ``splade`` and ``bm25``.

A spec's ``model`` names the SPLADE checkpoint, or for BM25 the tokenizer whose tokens measure chunks (so BM25
chunks, and their ids, match the dense and SPLADE retrievers of the same index). ``options`` pass through to
:class:`SpladeEncoder` (plus ``explain``) or :class:`BM25Retriever`. Sparse retrievers keep their own index, so
the spec's ``store`` is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ragloom.errors import ConfigError

__all__ = ["build_bm25", "build_splade"]


class _Spec(Protocol):
    """The fields of ``ragloom.recipes.config.RetrieverSpec`` a builder reads (adapters never import recipes)."""

    name: str
    model: str
    chunk_size: int | None
    overlap: int
    options: dict[str, Any]


def build_splade(spec: _Spec, directory: Path | None, allow_download: bool) -> Any:
    from ragloom.adapters.sparse.retriever import SparseRetriever
    from ragloom.adapters.sparse.splade import SpladeEncoder

    options = dict(spec.options)
    explain = int(options.pop("explain", 5))
    try:
        encoder = SpladeEncoder(spec.model or "splade-tiny", allow_download=allow_download, **options)
    except TypeError as exc:
        raise ConfigError(f"Unknown SPLADE option in {sorted(options)}: {exc}") from exc
    return SparseRetriever(
        encoder, directory, chunk_size=spec.chunk_size, overlap=spec.overlap, name=spec.name, explain=explain
    )


def build_bm25(spec: _Spec, directory: Path | None, allow_download: bool) -> Any:
    from ragloom.adapters.sparse.bm25 import BM25Retriever, tokenizer_chunker

    options = dict(spec.options)
    chunker = None
    if spec.model:
        chunker = tokenizer_chunker(spec.model, spec.chunk_size, spec.overlap, allow_download=allow_download)
    elif spec.chunk_size:
        options.setdefault("chunk_size", spec.chunk_size)
    try:
        return BM25Retriever(directory, chunker=chunker, overlap=spec.overlap, name=spec.name, **options)
    except TypeError as exc:
        raise ConfigError(f"Unknown BM25 option in {sorted(options)}: {exc}") from exc
