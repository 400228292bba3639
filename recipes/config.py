"""Index specs: what a CLI index directory holds and how to rebuild its pipeline.

An index directory keeps ``ragloom.json`` (the retrievers, fusion and generator it was built with) and one
subdirectory per retriever, so ``ragloom ask --index DIR`` needs no model flags: the index knows its models.
Builders for each retriever kind live in ``RETRIEVER_BUILDERS``; adapters register more kinds there.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError, IndexCorruptError
from ragloom.fusion import fuser_from_config
from ragloom.persistence import atomic_write_json, read_json
from ragloom.pipeline import Pipeline
from ragloom.protocols import Generator, Retriever

__all__ = [
    "RETRIEVER_BUILDERS",
    "GeneratorSpec",
    "IndexSpec",
    "RetrieverSpec",
    "build_generator",
    "build_retriever",
    "open_pipeline",
]

SPEC_NAME = "ragloom.json"
SPEC_VERSION = 1


@dataclass(frozen=True)
class RetrieverSpec:
    """One retriever of an index: its kind (dense, ...), model, store and chunking."""

    name: str = "dense"
    kind: str = "dense"
    model: str = "minilm"
    store: str = "chroma"
    chunk_size: int | None = None
    overlap: int = 32
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorSpec:
    """The generator ``ask`` uses unless told otherwise: ``local`` (transformers), ``openai`` (HTTP) or
    ``extractive`` (no model)."""

    kind: str = "local"
    model: str = "smollm2"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = 256


@dataclass(frozen=True)
class IndexSpec:
    """Everything needed to reopen an index directory as a Pipeline."""

    retrievers: tuple[RetrieverSpec, ...] = (RetrieverSpec(),)
    fusion: dict[str, Any] = field(default_factory=lambda: {"kind": "rrf", "k": 60})
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    k: int = 5
    candidates: int = 50

    def save(self, directory: Path) -> None:
        data = {"format_version": SPEC_VERSION, **asdict(self)}
        atomic_write_json(directory / SPEC_NAME, data)

    @classmethod
    def load(cls, directory: Path) -> IndexSpec:
        path = directory / SPEC_NAME
        if not path.exists():
            raise IndexCorruptError(
                f"{directory} is not a ragloom index (no {SPEC_NAME}); create one with `ragloom ingest PATH "
                f"--index {directory}`"
            )
        data = read_json(path)
        if data.get("format_version") != SPEC_VERSION:
            raise IndexCorruptError(f"{path}: unsupported format version {data.get('format_version')}")
        try:
            return cls(
                retrievers=tuple(RetrieverSpec(**r) for r in data["retrievers"]),
                fusion=dict(data.get("fusion") or {}),
                generator=GeneratorSpec(**(data.get("generator") or {})),
                k=int(data.get("k", 5)),
                candidates=int(data.get("candidates", 50)),
            )
        except (KeyError, TypeError) as exc:
            raise IndexCorruptError(f"{path} is malformed: {exc}") from exc


RetrieverBuilder = Callable[[RetrieverSpec, "Path | None", bool], Retriever]
"""Builds a retriever from its spec; ``directory`` None means in memory only."""


def _build_dense(spec: RetrieverSpec, directory: Path | None, allow_download: bool) -> Retriever:
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder

    options = dict(spec.options)
    encoder = TransformersDenseEncoder(spec.model, allow_download=allow_download, **options)
    return DenseRetriever(
        encoder, directory, store=spec.store, chunk_size=spec.chunk_size, overlap=spec.overlap, name=spec.name
    )


DEFAULT_MODELS: dict[str, str] = {
    "dense": "minilm",
    "colpali": "vidore/colqwen2-v1.0-hf",
    "colqwen2": "vidore/colqwen2-v1.0-hf",
    "colbert": "colbert-ir/colbertv2.0",
    "splade": "splade-tiny",
    "bm25": "minilm",  # the tokenizer that measures BM25 chunks (same chunk ids as the dense default)
    "late": "nomic",  # nomic-embed-text-v1.5: long context (2048 trained, 8192 with dynamic NTK RoPE)
}
"""The model each retriever kind uses when none is named."""

# kind -> builder, or "module:function" resolved on first use (adapters register their kinds here)
RETRIEVER_BUILDERS: dict[str, RetrieverBuilder | str] = {
    "dense": _build_dense,
    "colpali": "ragloom.adapters.multivector.builders:build_colpali",
    "colqwen2": "ragloom.adapters.multivector.builders:build_colpali",
    "colbert": "ragloom.adapters.multivector.builders:build_colbert",
    "splade": "ragloom.adapters.sparse.builders:build_splade",
    "bm25": "ragloom.adapters.sparse.builders:build_bm25",
    "late": "ragloom.adapters.late_chunking:build_late",
}


def build_retriever(spec: RetrieverSpec, index_dir: Path | None, allow_download: bool = False) -> Retriever:
    """Build (or reopen) the retriever ``spec`` describes, under ``index_dir / spec.name`` when given."""
    builder = RETRIEVER_BUILDERS.get(spec.kind)
    if builder is None:
        raise ConfigError(f"Unknown retriever kind {spec.kind!r}; known: {', '.join(sorted(RETRIEVER_BUILDERS))}")
    if isinstance(builder, str):
        module, _, function = builder.partition(":")
        builder = getattr(importlib.import_module(module), function)
    return builder(spec, index_dir / spec.name if index_dir is not None else None, allow_download)


def build_generator(spec: GeneratorSpec, allow_download: bool = False) -> Generator:
    if spec.kind == "local":
        from ragloom.adapters.generators.local import TransformersGenerator

        return TransformersGenerator(spec.model, max_new_tokens=spec.max_new_tokens, allow_download=allow_download)
    if spec.kind == "openai":
        from ragloom.adapters.generators.openai_http import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator(
            spec.model,
            base_url=spec.base_url or "http://127.0.0.1:8000/v1",
            api_key_env=spec.api_key_env,
            max_tokens=spec.max_new_tokens,
        )
    if spec.kind == "extractive":  # no model: the best passage sentences, verbatim and cited
        from ragloom.adapters.generators.extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    raise ConfigError(f"Unknown generator kind {spec.kind!r}; use 'local', 'openai' or 'extractive'")


def open_pipeline(
    index_dir: Path,
    *,
    spec: IndexSpec | None = None,
    with_generator: bool = False,
    generator: Generator | None = None,
    allow_download: bool = False,
) -> Pipeline:
    """Open (or create, when ``spec`` is given for a new directory) the pipeline of an index directory."""
    index_dir = Path(index_dir)
    existing = (index_dir / SPEC_NAME).exists()
    if spec is None:
        spec = IndexSpec.load(index_dir)
    elif not existing:
        index_dir.mkdir(parents=True, exist_ok=True)
        spec.save(index_dir)
    retrievers = [build_retriever(r, index_dir, allow_download) for r in spec.retrievers]
    if with_generator and generator is None:
        generator = build_generator(spec.generator, allow_download)
    fuser = fuser_from_config(spec.fusion) if len(retrievers) > 1 else None
    return Pipeline(retrievers, fuser=fuser, generator=generator, k=spec.k, candidates=spec.candidates)


def spec_summary(spec: IndexSpec) -> Mapping[str, Any]:
    return json.loads(json.dumps(asdict(spec)))
