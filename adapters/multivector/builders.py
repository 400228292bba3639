"""Builders that ``ragloom.recipes.config.RETRIEVER_BUILDERS`` resolves for the ``colpali`` and ``colbert`` kinds.

``spec.options`` may hold encoder settings (``dtype``, ``device``, ``batch_size``), rendering (``dpi``,
``max_side``) and compression (``pool_factor``, ``prune_k``, ``first_stage``, ``candidates``, ``compute_dtype``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragloom.compression import MultiVectorSettings
from ragloom.errors import ConfigError

__all__ = ["build_colbert", "build_colpali"]

_SETTINGS = ("pool_factor", "prune_k", "prune_min_tokens", "first_stage", "candidates", "compute_dtype")
_RENDER = ("dpi", "max_side", "max_source_pixels")


def _split(options: dict[str, Any]) -> tuple[MultiVectorSettings, dict[str, Any], dict[str, Any]]:
    settings = MultiVectorSettings(**{k: options.pop(k) for k in _SETTINGS if k in options})
    render = {k: options.pop(k) for k in _RENDER if k in options}
    return settings, render, options


def _check_store(spec: Any) -> None:
    if spec.store not in ("multivector", "memory", "chroma"):  # "chroma" is the RetrieverSpec default
        raise ConfigError(f"{spec.kind} retrievers use their own multi-vector store, not {spec.store!r}")


def build_colpali(spec: Any, directory: Path | None, allow_download: bool) -> Any:
    """A ColPaliRetriever (ColPali or ColQwen2, from the model folder) for a RetrieverSpec."""
    from ragloom.adapters.multivector.colvision import ColVisionEncoder
    from ragloom.adapters.multivector.pages import RenderSettings
    from ragloom.adapters.multivector.retriever import ColPaliRetriever

    _check_store(spec)
    settings, render, options = _split(dict(spec.options))
    encoder = ColVisionEncoder(
        spec.model, allow_download=allow_download, capture_attention=settings.prune_k is not None, **options
    )
    return ColPaliRetriever(encoder, directory, render=RenderSettings(**render), settings=settings, name=spec.name)


def build_colbert(spec: Any, directory: Path | None, allow_download: bool) -> Any:
    """A ColBERTRetriever for a RetrieverSpec."""
    from ragloom.adapters.multivector.colbert import ColBERTEncoder
    from ragloom.adapters.multivector.retriever import ColBERTRetriever

    _check_store(spec)
    settings, render, options = _split(dict(spec.options))
    if render:
        raise ConfigError(f"colbert retrievers index text; rendering options {sorted(render)} do not apply")
    encoder = ColBERTEncoder(
        spec.model, allow_download=allow_download, capture_attention=settings.prune_k is not None, **options
    )
    return ColBERTRetriever(
        encoder, directory, chunk_size=spec.chunk_size, overlap=spec.overlap, settings=settings, name=spec.name
    )
