"""What ``ragloom ingest``'s model options mean for an index directory that may already exist.

A new index takes them (or the defaults); an existing one already knows its models, so an option that differs
from what it was built with is an error naming both sides, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError
from ragloom.recipes.config import SPEC_NAME, IndexSpec

__all__ = [
    "check_index_path",
    "check_same_layout",
    "check_same_models",
    "check_same_retrievers",
    "fusion_config",
    "plan_ingest",
]


def check_index_path(index: Path) -> None:
    """An index is a directory: a file (or anything else) at that path is a clear error."""
    if index.exists() and not index.is_dir():
        raise ConfigError(f"--index {index} is a file, not an index directory; pass a directory path (new or existing)")


def check_same_models(
    index: Path, existing: IndexSpec, model: str | None, store: str | None, chunk_size: int | None
) -> None:
    """``--model``, ``--store`` and ``--chunk-size`` given for the existing index (``existing``, its spec) must
    match one of its retrievers."""
    asked = {"--model": model, "--store": store, "--chunk-size": chunk_size}
    asked = {flag: value for flag, value in asked.items() if value is not None}
    if not asked:
        return
    for retriever in existing.retrievers:
        built = {"--model": retriever.model, "--store": retriever.store, "--chunk-size": retriever.chunk_size}
        if all(built[flag] == value for flag, value in asked.items()):
            return
    built_with = "; ".join(
        f"{r.name}: --model {r.model} --store {r.store} --chunk-size {r.chunk_size or 'default'}"
        for r in existing.retrievers
    )
    given = " ".join(f"{flag} {value}" for flag, value in asked.items())
    raise ConfigError(
        f"{index} was built with {built_with}, not {given}; an index keeps its models: drop these options to add "
        "to it, or pass another --index to build a new one"
    )


def plan_ingest(
    index: Path,
    kinds: Sequence[str] | None,
    models: Sequence[str] | None,
    *,
    store: str | None,
    chunk_size: int | None,
    fusion: str | None,
    fusion_key: str | None,
    per_page: bool | None,
    chroma: Mapping[str, str],
    allow_download: bool,
) -> IndexSpec | None:
    """The spec ``ragloom ingest`` creates ``index`` with, or None when the index exists (after checking that the
    options asked for agree with it). ``store`` None: chroma for a new index, the index's own for an existing one.
    ``chroma``: url, collection (default: named after the index), tenant, database of a Chroma server, or empty
    for the embedded store."""
    from ragloom.recipes.index_plan import chroma_collection, parse_models, plan_retrievers

    check_index_path(index)
    if (index / SPEC_NAME).exists():  # the options must agree with the index, else an error naming both sides
        existing = IndexSpec.load(index)
        check_same_retrievers(index, existing, kinds)
        bare = [m for m in models or () if "=" not in m]
        check_same_models(index, existing, bare[0] if len(bare) == 1 else None, store, chunk_size)
        check_same_layout(index, existing, fusion, fusion_key, per_page)
        return None
    wanted = list(kinds or ["dense"])
    server = dict(chroma)
    if server:
        server["collection"] = server.get("collection") or chroma_collection(index.resolve().name, "dense")
    specs = plan_retrievers(
        wanted,
        parse_models(models, wanted),
        store=store or "chroma",
        chunk_size=chunk_size,
        allow_download=allow_download,
        chroma=server,
    )
    return IndexSpec(
        retrievers=specs,
        fusion=fusion_config(fusion or "minmax", fusion_key or "chunk"),
        group_by="page" if per_page in (None, True) else "chunk",
    )


def fusion_config(kind: str, key: str) -> dict[str, Any]:
    from ragloom.fusion import fuser_from_config

    if key not in ("chunk", "page"):
        raise ConfigError(f"--fusion-key must be chunk or page, got {key!r}")
    config: dict[str, Any] = {"kind": kind, "key": key}
    if kind == "rrf":
        config["k"] = 60
    fuser_from_config(config)  # a typed error for an unknown kind, before anything is written
    return config


def check_same_layout(
    index: Path, spec: IndexSpec, fusion: str | None, fusion_key: str | None, per_page: bool | None
) -> None:
    """``--fusion``, ``--fusion-key`` and ``--per-page/--per-chunk`` given for the existing index (``spec``, its
    spec) must match it: ignoring them would leave the user believing the index changed."""
    asked = {
        "--fusion": (fusion, spec.fusion.get("kind")),
        "--fusion-key": (fusion_key, spec.fusion.get("key", "chunk")),
        "--per-page/--per-chunk": (
            None if per_page is None else ("page" if per_page else "chunk"),
            spec.group_by,
        ),
    }
    differ = {flag: (given, built) for flag, (given, built) in asked.items() if given is not None and given != built}
    if differ:
        shown = "; ".join(f"{flag} {given} (the index has {built})" for flag, (given, built) in differ.items())
        raise ConfigError(
            f"{index} already exists and keeps its fusion and grouping: {shown}. Drop these options to add to it, "
            f"refit its fusion with `ragloom tune --index {index}`, choose per query with `search/ask --per-page` "
            "or `--per-chunk`, or pass another --index to build a new one"
        )


def check_same_retrievers(index: Path, existing: IndexSpec, kinds: Sequence[str] | None) -> None:
    """Ingesting into an existing index (``existing``, its spec) uses its retrievers; asking for others is an
    error, not ignored."""
    if not kinds:
        return
    have = [r.kind for r in existing.retrievers]
    missing = [k for k in kinds if k not in have]
    if missing:
        raise ConfigError(
            f"{index} has retrievers {have}, not {missing}; add them with `ragloom index add-retriever {index} "
            + " ".join(f"-r {k}" for k in missing)
            + "`"
        )
