"""``ragloom index stats DIR`` and ``ragloom ingest --dry-run``: bytes on disk and in RAM, measured or estimated.

Two plain functions, ready to mount as Typer commands (``index_app.command("stats")(stats)``)::

    ragloom index stats .ragloom/index            # a table per retriever and component
    ragloom index stats .ragloom/index --json     # the same as JSON
    python -m ragloom.recipes.stats_cli .ragloom/index
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ragloom.errors import RagloomError

__all__ = ["dry_run", "estimate_for", "estimate_spec", "stats"]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


def _print_table(stats: list[Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from ragloom.stats import human

    table = Table(title=title)
    for column in ("retriever", "component", "on disk", "in RAM", "memory-mapped", "note"):
        table.add_column(column, justify="right" if column in ("on disk", "in RAM", "memory-mapped") else "left")
    for item in stats:
        for row, part in enumerate(item.components):
            approx = "≈ " if part.estimated else ""
            table.add_row(
                f"{item.name} ({item.kind}, {item.store}, {item.chunks:,} chunks)" if row == 0 else "",
                part.name,
                approx + human(part.disk) if part.disk else "",
                approx + human(part.ram) if part.ram else "",
                approx + human(part.mapped) if part.mapped else "",
                part.note,
            )
        table.add_row("[bold]total[/]", "", human(item.disk), human(item.ram), human(item.mapped), "")
        table.add_section()
    Console().print(table)
    print(
        f"all retrievers: {human(sum(s.disk for s in stats))} on disk, {human(sum(s.ram for s in stats))} in RAM, "
        f"{human(sum(s.mapped for s in stats))} memory-mapped (models not included)"
    )


def stats(
    index: Annotated[Path, typer.Argument(help="Index directory (with ragloom.json, or one retriever's manifest).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Bytes on disk, in RAM and memory-mapped, per retriever and component (reads no model, loads no index)."""
    from ragloom.stats import index_stats, to_json

    try:
        found = index_stats(index)
    except RagloomError as exc:
        _fail(str(exc))
    if json_output:
        print(to_json(found))
    else:
        _print_table(found, f"{index}")


def estimate_for(
    characters: int, documents: int, retrievers: list[dict[str, Any]], json_output: bool = False
) -> list[Any]:
    """Print (and return) the estimate for ``characters`` of text in ``documents`` indexed by ``retrievers``."""
    from ragloom.stats import estimate_ingest, to_json

    found = estimate_ingest(characters, documents, retrievers)
    if json_output:
        print(to_json(found))
    else:
        _print_table(found, f"estimate for {documents:,} documents, {characters:,} characters")
    return found


def _model_dim(model: str, options: dict[str, Any]) -> int | None:
    """The encoder's output dimension from its local config.json (no weights loaded), if it resolves offline."""
    if options.get("truncate_dim"):
        return int(options["truncate_dim"])
    try:
        from ragloom.models import resolve_model

        config = json.loads((resolve_model(model) / "config.json").read_text(encoding="utf-8"))
    except (RagloomError, OSError, ValueError):
        return None
    return int(config.get("hidden_size") or config.get("d_model") or 0) or None


def dry_run(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders that would be indexed.")],
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory.")] = Path(".ragloom/index"),
    model: Annotated[str, typer.Option(help="Dense encoder: alias, hub id or folder.")] = "minilm",
    store: Annotated[str, typer.Option(help="chroma, memory, binary, int8 or compressed.")] = "chroma",
    chunk_size: Annotated[int | None, typer.Option(help="Tokens per chunk.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """What ``ragloom ingest PATHS --index DIR`` would cost: documents are loaded (text extracted) but nothing is
    encoded or written. Retrievers come from the index's ``ragloom.json`` when it exists, else from the flags."""
    from ragloom.recipes.config import IndexSpec, RetrieverSpec

    try:
        spec = (
            IndexSpec.load(index)
            if (index / "ragloom.json").exists()
            else IndexSpec(retrievers=(RetrieverSpec(model=model, store=store, chunk_size=chunk_size),))
        )
    except RagloomError as exc:
        _fail(str(exc))
    estimate_spec(spec, paths, include, json_output)


def estimate_spec(spec: Any, paths: list[Path], include: list[str] | None, json_output: bool = False) -> list[Any]:
    """Load ``paths`` (text extracted, nothing encoded or written) and print what indexing them with the
    retrievers of ``spec`` (an :class:`~ragloom.recipes.config.IndexSpec`) would cost; ``ingest --dry-run``."""
    from ragloom.loaders import load_paths

    try:
        report = load_paths(paths, include=include)
    except RagloomError as exc:
        _fail(str(exc))
    characters = sum(len(doc.text) for doc in report.documents)
    retrievers = []
    for r in spec.retrievers:
        dim = _model_dim(r.model, r.options)
        retrievers.append(
            {
                "name": r.name,
                "kind": r.kind,
                "store": r.store,
                "dim": dim or 384,
                "chunk_size": r.chunk_size or 256,
                "overlap": r.overlap,
                **{k: v for k, v in r.options.items() if k in ("first_stage", "rescore")},
            }
        )
        if dim is None and r.kind in ("dense", "late"):
            print(f"note: {r.model} does not resolve offline; assuming 384 dimensions", file=sys.stderr)
    found = estimate_for(characters, len(report.documents), retrievers, json_output)
    if report.failures:
        print(f"{len(report.failures)} file(s) could not be read and are not counted", file=sys.stderr)
    return found


if __name__ == "__main__":  # pragma: no cover
    typer.run(stats)
