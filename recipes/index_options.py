"""What ``ragloom ingest``'s model options mean for an index directory that may already exist.

A new index takes them (or the defaults); an existing one already knows its models, so an option that differs
from what it was built with is an error naming both sides, never silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from ragloom.errors import ConfigError
from ragloom.recipes.config import SPEC_NAME, IndexSpec, RetrieverSpec

__all__ = ["check_index_path", "ingest_spec"]


def check_index_path(index: Path) -> None:
    """An index is a directory: a file (or anything else) at that path is a clear error."""
    if index.exists() and not index.is_dir():
        raise ConfigError(f"--index {index} is a file, not an index directory; pass a directory path (new or existing)")


def ingest_spec(index: Path, model: str | None, store: str | None, chunk_size: int | None) -> IndexSpec | None:
    """The spec for a new index (None when ``index`` already holds one, after checking the options agree with
    it)."""
    check_index_path(index)
    if not (index / SPEC_NAME).exists():
        return IndexSpec(
            retrievers=(RetrieverSpec(model=model or "minilm", store=store or "chroma", chunk_size=chunk_size),)
        )
    existing = IndexSpec.load(index)
    asked = {"--model": model, "--store": store, "--chunk-size": chunk_size}
    asked = {flag: value for flag, value in asked.items() if value is not None}
    if not asked:
        return None
    for retriever in existing.retrievers:
        built = {"--model": retriever.model, "--store": retriever.store, "--chunk-size": retriever.chunk_size}
        if all(built[flag] == value for flag, value in asked.items()):
            return None
    built_with = "; ".join(
        f"{r.name}: --model {r.model} --store {r.store} --chunk-size {r.chunk_size or 'default'}"
        for r in existing.retrievers
    )
    given = " ".join(f"{flag} {value}" for flag, value in asked.items())
    raise ConfigError(
        f"{index} was built with {built_with}, not {given}; an index keeps its models: drop these options to add "
        "to it, or pass another --index to build a new one"
    )
