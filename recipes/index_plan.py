"""Plan a multi-retriever index from CLI flags: which retrievers, which model each, one chunking for all.

``ragloom ingest PATHS -r dense -r splade -r bm25 --model splade=splade-tiny`` becomes one :class:`RetrieverSpec`
per kind. Text retrievers of one index share one chunk size (the smallest capacity among their models, at most
512 tokens) so a passage has the same chunk id in every index and fusion merges it exactly; BM25 chunks with the
dense (else SPLADE, else ColBERT) model's tokenizer for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragloom.errors import ConfigError
from ragloom.recipes.config import CHROMA_KINDS, DEFAULT_MODELS, RETRIEVER_BUILDERS, IndexSpec, RetrieverSpec
from ragloom.retrieval import STORE_NAMES

__all__ = [
    "PAGE_KINDS",
    "TEXT_KINDS",
    "chroma_collection",
    "parse_models",
    "plan_retrievers",
    "spec_with_chroma_url",
    "store_for",
]

TEXT_KINDS = ("dense", "splade", "bm25", "late", "colbert")
"""Kinds that cut documents into token chunks (their chunk ids must agree for fusion)."""
PAGE_KINDS = ("colpali", "colqwen2")
"""Kinds that index whole pages (page images): they fuse with text on (document, page)."""
LATE_DEFAULT_CHUNK = 256


def parse_models(values: Sequence[str] | None, kinds: Sequence[str]) -> dict[str, str]:
    """``--model`` values: ``KIND=MODEL`` for one kind, or a bare ``MODEL`` for the first ``-r`` kind."""
    models: dict[str, str] = {}
    for value in values or ():
        kind, sep, model = value.partition("=")
        if sep and kind in RETRIEVER_BUILDERS:
            if kind not in kinds:
                raise ConfigError(f"--model {value}: no -r {kind} retriever given; add `-r {kind}`")
            models[kind] = model
        elif kinds[0] in models:
            raise ConfigError(
                f"--model {value}: a bare model applies to the first retriever ({kinds[0]}), which already has one; "
                f"write --model KIND=MODEL (kinds: {', '.join(kinds)})"
            )
        else:
            models[kinds[0]] = value
    return models


def store_for(kind: str, vector_store: str) -> str:
    """The store a kind keeps its index in: dense and late use ``vector_store`` (chroma or memory)."""
    if kind in ("splade",):
        return "sparse"
    if kind == "bm25":
        return "bm25s"
    if kind in ("colpali", "colqwen2", "colbert"):
        return "multivector"
    return vector_store


def _capacity(kind: str, model: str, allow_download: bool) -> int:
    """The chunk size a kind's model takes by default (its tokenizer's capacity, at most 512)."""
    if kind == "late":
        return LATE_DEFAULT_CHUNK
    from ragloom.adapters.sparse.bm25 import tokenizer_chunker

    return int(tokenizer_chunker(model, None, allow_download=allow_download).chunk_size)


def plan_retrievers(
    kinds: Sequence[str],
    models: dict[str, str] | None = None,
    *,
    store: str = "chroma",
    chunk_size: int | None = None,
    allow_download: bool = False,
    existing: Sequence[RetrieverSpec] = (),
    chroma: dict[str, str] | None = None,
) -> tuple[RetrieverSpec, ...]:
    """One spec per kind (named after it). Text kinds share ``chunk_size``: the one given, else the one
    ``existing`` text retrievers use, else the smallest default among the models. ``chroma`` (a Chroma server:
    url, collection, tenant, database) goes to the kinds that store vectors there."""
    models = dict(models or {})
    chroma = {k: v for k, v in (chroma or {}).items() if v}
    if chroma and not any(k in CHROMA_KINDS for k in kinds):
        raise ConfigError(
            f"A Chroma server stores the vectors of {', '.join(CHROMA_KINDS)} retrievers; none of {list(kinds)} "
            "is one (add `-r dense`, or drop --chroma-url)"
        )
    if store not in STORE_NAMES:  # before any folder is made
        raise ConfigError(f"Unknown store {store!r}; use one of {', '.join(STORE_NAMES)}")
    unknown = [k for k in kinds if k not in RETRIEVER_BUILDERS]
    if unknown:
        raise ConfigError(f"Unknown retriever kind(s) {unknown}; known: {', '.join(sorted(RETRIEVER_BUILDERS))}")
    taken = {s.name for s in existing}
    duplicates = sorted({k for k in kinds if list(kinds).count(k) > 1} | (set(kinds) & taken))
    if duplicates:
        raise ConfigError(f"Retriever(s) {duplicates} given twice (or already in the index); each kind once")
    chosen = {kind: models.get(kind) or DEFAULT_MODELS.get(kind, "") for kind in kinds}
    if "bm25" in chosen and "bm25" not in models:  # chunk BM25 with a sibling's tokenizer: same chunk ids
        siblings = {s.kind: s.model for s in existing} | chosen
        chosen["bm25"] = next((siblings[k] for k in ("dense", "splade", "colbert") if k in siblings), chosen["bm25"])
    text = [k for k in kinds if k in TEXT_KINDS]
    size = chunk_size
    if size is None:
        size = next((s.chunk_size for s in existing if s.kind in TEXT_KINDS and s.chunk_size), None)
    if size is None and text:
        size = min(_capacity(k, chosen[k], allow_download) for k in text)
    return tuple(
        RetrieverSpec(
            name=kind,
            kind=kind,
            model=chosen[kind],
            store=store_for(kind, store),
            chunk_size=size if kind in TEXT_KINDS else None,
            chroma=dict(chroma) if chroma and kind in CHROMA_KINDS else {},
        )
        for kind in kinds
    )


def chroma_collection(index: str, name: str) -> str:
    """A Chroma collection name for one retriever of one index (3-512 of [a-zA-Z0-9._-], alphanumeric ends)."""
    import re

    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"ragloom-{index}-{name}").strip("-._")
    return slug[:512]


def spec_with_chroma_url(index: Path, url: str | None) -> IndexSpec | None:
    """The index's spec with its Chroma server replaced by ``url`` (the server moved), or None without one.

    The caller names this server, so it is also the one ``RAGLOOM_CHROMA_TOKEN`` may be sent to."""
    if not url:
        return None
    import dataclasses
    import os

    from ragloom.recipes.config import CHROMA_URL_ENV

    spec = IndexSpec.load(index)
    if not any(r.chroma for r in spec.retrievers):
        raise ConfigError(f"{index} keeps no vectors on a Chroma server; --chroma-url applies to indexes that do")
    os.environ[CHROMA_URL_ENV] = url
    retrievers = tuple(
        dataclasses.replace(r, chroma={**r.chroma, "url": url}) if r.chroma else r for r in spec.retrievers
    )
    return dataclasses.replace(spec, retrievers=retrievers)
