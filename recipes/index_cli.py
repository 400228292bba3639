"""``ragloom index …``: manage an index directory's retrievers.

``ragloom index add-retriever DIR -r bm25`` builds a new retriever over the documents the index already holds
(its document store, ``documents.sqlite``), with the index's chunk size so fusion merges the new retriever's chunks
with the old ones, then records it in ``ragloom.json``; every later ``search``/``ask``/``eval``/``mcp`` fuses it in.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["add_retriever", "app"]

app = typer.Typer(help="Manage an index directory (its retrievers).", no_args_is_help=True)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def _offset(progress: Callable[[int, int], None], before: int, total: int) -> Callable[[int, int], None]:
    return lambda done, _: progress(before + done, total)


@app.command("add-retriever")
def add_retriever(
    index: Annotated[Path, typer.Argument(help="Index directory (made by `ragloom ingest`).")],
    retriever: Annotated[list[str], typer.Option("--retriever", "-r", help="Retriever kind to add (repeatable).")],
    model: Annotated[
        list[str] | None, typer.Option(help="Model per new retriever: KIND=MODEL, or a bare MODEL for the first.")
    ] = None,
    store: Annotated[str, typer.Option(help="Vector store of a dense/late retriever: chroma or memory.")] = "chroma",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download models.")] = False,
) -> None:
    """Build new retrievers over the documents already in an index and add them to its spec."""
    from ragloom.docstore import DOCSTORE_NAME
    from ragloom.errors import ConfigError, RagloomError
    from ragloom.ingest import STATE_LOCK
    from ragloom.journal import JOURNAL_NAME
    from ragloom.persistence import IndexLock
    from ragloom.recipes.config import IndexSpec
    from ragloom.recipes.index_plan import parse_models, plan_retrievers

    try:
        spec = IndexSpec.load(index)
        store_path = index / DOCSTORE_NAME
        if not store_path.exists():
            raise ConfigError(
                f"{index} has no document store ({DOCSTORE_NAME}); it was built before ragloom kept one. "
                f"Re-ingest its sources with `ragloom ingest PATHS --index {index}`, then add retrievers"
            )
        if (index / JOURNAL_NAME).exists():
            raise ConfigError(
                f"A write to {index} was interrupted; finish it first with `ragloom index recover {index}`"
            )
        new = plan_retrievers(
            retriever, parse_models(model, retriever), store=store, allow_download=not offline, existing=spec.retrievers
        )
        lock = IndexLock(index, name=STATE_LOCK)  # no ingest may change the documents while they are read
        lock.acquire()
        try:
            total, chunks = _build_all(index, spec, new, quiet=quiet, allow_download=not offline)
        finally:
            lock.release()
    except RagloomError as exc:
        _fail(str(exc))
        return
    names = ", ".join(f"{name}: {n} chunks" for name, n in chunks.items())
    print(f"Added {', '.join(s.name for s in new)} over {total} documents ({names}) → {index}")


def _build_all(
    index: Path, spec: Any, new: Sequence[Any], *, quiet: bool, allow_download: bool
) -> tuple[int, dict[str, int]]:
    """Index every stored document into each new retriever, recording each in the spec once it holds them all."""
    from ragloom.docstore import DOCSTORE_NAME, DocumentStore
    from ragloom.protocols import Closeable
    from ragloom.recipes.config import build_retriever
    from ragloom.recipes.progress import progress_reporter

    documents = DocumentStore(index / DOCSTORE_NAME)
    total = len(documents)
    chunks: dict[str, int] = {}
    try:
        for retriever_spec in new:
            built = build_retriever(retriever_spec, index, allow_download=allow_download)
            try:
                done = 0
                with progress_reporter(f"Indexing ({retriever_spec.name})", quiet=quiet) as progress:
                    for batch in documents.iter_documents():
                        added = built.add(batch, progress=_offset(progress, done, total))
                        chunks[retriever_spec.name] = chunks.get(retriever_spec.name, 0) + len(added)
                        done += len(batch)
            finally:
                if isinstance(built, Closeable):
                    built.close()
            spec = dataclasses.replace(spec, retrievers=(*spec.retrievers, retriever_spec))
            spec.save(index)  # recorded only once the retriever holds every document
    finally:
        documents.close()
    return total, chunks
