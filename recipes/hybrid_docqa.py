"""Recipe: hybrid document QA — dense + SPLADE (+ BM25) over the same chunks, fused, fusion weights fitted on qrels.

Every retriever chunks with the same tokenizer (MiniLM and SPLADE share BERT's uncased WordPiece vocabulary) and
the same chunk size, so a passage has one chunk id in every index and fusion merges exactly. Fusion is RRF or
weighted score fusion; its weights can be fitted on labelled queries (grid search on nDCG@10) and are saved in
the index's ``ragloom.json``, so every later ``ask`` uses them.

Build and query a hybrid index with the CLI (any retriever kinds, one index, fused)::

    ragloom ingest FOLDER --index DIR -r dense -r splade -r bm25
    ragloom ask "Your question?" --index DIR

This script fits and compares fusions::

    python -m ragloom.recipes.hybrid_docqa fit BEIR_DIR --index DIR --split train      # fit and save weights
    python -m ragloom.recipes.hybrid_docqa eval BEIR_DIR --index DIR --fit-split train  # members vs fusions

In code::

    from ragloom.recipes.hybrid_docqa import build_hybrid
    pipeline = build_hybrid("my-index", with_generator=True)
    pipeline.ingest(["docs/"])
    print(pipeline.ask("What does the contract say about termination?").text)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError, RagloomError
from ragloom.eval import BeirDataset, aggregate_to_documents, evaluate_run, load_beir
from ragloom.fusion import fit_weights, fuser_from_config, fuser_to_config
from ragloom.pipeline import Pipeline
from ragloom.protocols import Closeable, Fuser, Retriever
from ragloom.recipes.config import (
    DEFAULT_MODELS,
    GeneratorSpec,
    IndexSpec,
    RetrieverSpec,
    build_retriever,
    open_pipeline,
)
from ragloom.routing import RoutedFusion
from ragloom.types import Hit

__all__ = [
    "HYBRID_CHUNK_SIZE",
    "FusionFit",
    "build_hybrid",
    "compare_fusions",
    "fit_fusion",
    "hybrid_spec",
    "main",
    "save_fusion",
]

HYBRID_CHUNK_SIZE = 254
"""MiniLM's capacity (256 tokens less [CLS] and [SEP]); SPLADE-tiny takes up to 510, so this size fits both."""

DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def hybrid_spec(
    *,
    dense: str | None = "minilm",
    splade: str | None = "splade-tiny",
    bm25: bool = True,
    chunk_size: int = HYBRID_CHUNK_SIZE,
    overlap: int = 32,
    dense_store: str = "memory",
    fusion: Mapping[str, Any] | None = None,
    llm: str = "smollm2",
) -> IndexSpec:
    """The index spec of a hybrid pipeline: one chunking for all retrievers, RRF (k=60) unless told otherwise.

    BM25 chunks with the dense model's tokenizer (or SPLADE's when there is no dense retriever).
    """
    retrievers = []
    if dense:
        retrievers.append(RetrieverSpec("dense", "dense", dense, dense_store, chunk_size, overlap))
    if splade:
        retrievers.append(RetrieverSpec("splade", "splade", splade, "sparse", chunk_size, overlap))
    if bm25:
        tokenizer = dense or splade or DEFAULT_MODELS["bm25"]
        retrievers.append(RetrieverSpec("bm25", "bm25", tokenizer, "bm25s", chunk_size, overlap))
    if len(retrievers) < 2:
        raise ConfigError("A hybrid pipeline needs at least two retrievers (dense, splade, bm25)")
    return IndexSpec(
        retrievers=tuple(retrievers),
        fusion=dict(fusion or {"kind": "minmax"}),
        generator=GeneratorSpec(kind="local", model=llm),
    )


def build_hybrid(
    index_dir: str | Path,
    *,
    spec: IndexSpec | None = None,
    with_generator: bool = False,
    allow_download: bool = False,
) -> Pipeline:
    """Open the hybrid pipeline of ``index_dir``, creating it from ``spec`` (default :func:`hybrid_spec`)."""
    index = Path(index_dir)
    existing = (index / "ragloom.json").exists()
    return open_pipeline(
        index,
        spec=None if existing else (spec or hybrid_spec()),
        with_generator=with_generator,
        allow_download=allow_download,
    )


# -- fusion fitting ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FusionFit:
    """Fitted fusion: its config (ready for ``IndexSpec.fusion``), nDCG@10 with it and with equal weights."""

    config: dict[str, Any]
    ndcg: float
    equal_weights_ndcg: float
    queries: int


def _runs(retrievers: Sequence[Retriever], queries: list[str], k: int) -> dict[str, list[list[Hit]]]:
    """Each retriever's hits for every query (batched)."""
    runs: dict[str, list[list[Hit]]] = {}
    for retriever in retrievers:
        hits: list[list[Hit]] = []
        for begin in range(0, len(queries), 64):
            hits.extend(retriever.search_many(queries[begin : begin + 64], k))
        runs[retriever.name] = hits
    return runs


def _ndcg(dataset: BeirDataset, fused: Sequence[Sequence[Hit]]) -> float:
    run = {qid: aggregate_to_documents(hits, 100) for qid, hits in zip(dataset.queries, fused)}
    return evaluate_run(run, dataset.qrels)[0]["nDCG@10"]


def _fuse_all(fuser: Fuser, runs: Mapping[str, Sequence[Sequence[Hit]]], k: int) -> list[list[Hit]]:
    count = len(next(iter(runs.values())))
    return [fuser.fuse({name: hits[i] for name, hits in runs.items()}, k) for i in range(count)]


def fit_fusion(
    retrievers: Sequence[Retriever],
    dataset: BeirDataset,
    *,
    kind: str = "rrf",
    candidates: int = 100,
    grid: Sequence[float] = DEFAULT_GRID,
    runs: Mapping[str, Sequence[Sequence[Hit]]] | None = None,
) -> FusionFit:
    """Grid-search per-retriever fusion weights (relative to the first retriever) for nDCG@10 on ``dataset``.

    Fit on one split (e.g. BEIR's train qrels) and report on another: weights fitted on the test queries
    overstate what they are worth.
    """
    if len(retrievers) < 2:
        raise ConfigError("Fitting fusion weights needs at least two retrievers")
    fuser = fuser_from_config({"kind": kind})
    if isinstance(fuser, RoutedFusion):
        raise ConfigError("Fitting fusion weights needs rrf, minmax or zscore, not a routed fusion")
    runs = runs or _runs(retrievers, list(dataset.queries.values()), candidates)
    weights, best = fit_weights(fuser, runs, lambda fused: _ndcg(dataset, fused), grid=grid, k=candidates)
    equal = _ndcg(dataset, _fuse_all(fuser, runs, candidates))
    config = fuser_to_config(fuser.with_weights(weights))
    return FusionFit(config=config, ndcg=best, equal_weights_ndcg=equal, queries=len(dataset.queries))


def save_fusion(index_dir: str | Path, config: Mapping[str, Any]) -> IndexSpec:
    """Store a fusion config (e.g. ``FusionFit.config``) in the index's ``ragloom.json``; returns the new spec."""
    index = Path(index_dir)
    spec = dataclasses.replace(IndexSpec.load(index), fusion=dict(config))
    fuser_from_config(spec.fusion)  # refuse to save what cannot be reopened
    spec.save(index)
    return spec


def compare_fusions(
    retrievers: Sequence[Retriever],
    test: BeirDataset,
    *,
    fit: BeirDataset | None = None,
    kinds: Sequence[str] = ("rrf", "minmax"),
    candidates: int = 300,
) -> list[dict[str, Any]]:
    """nDCG@10 / Recall@100 / MRR@10 on ``test`` of every retriever alone and of each fusion, equal weights and
    (with ``fit``) weights fitted on ``fit``. Every retriever searches each query once."""
    runs = _runs(retrievers, list(test.queries.values()), candidates)
    fit_runs = _runs(retrievers, list(fit.queries.values()), 100) if fit is not None else None
    rows: list[dict[str, Any]] = []

    def report(label: str, lists: Sequence[Sequence[Hit]], weights: Mapping[str, float] | None = None) -> None:
        run = {qid: aggregate_to_documents(hits, 100) for qid, hits in zip(test.queries, lists)}
        metrics = evaluate_run(run, test.qrels)[0]
        rows.append({"system": label, **{k: round(v, 4) for k, v in metrics.items()}, "weights": weights or {}})

    for retriever in retrievers:
        report(retriever.name, runs[retriever.name])
    for kind in kinds:
        fuser = fuser_from_config({"kind": kind})
        report(f"{kind} (equal weights)", _fuse_all(fuser, runs, candidates))
        if fit is not None and fit_runs is not None:
            fitted = fit_fusion(retrievers, fit, kind=kind, runs=fit_runs)
            tuned = fuser_from_config(fitted.config)
            label = f"{kind} (weights fitted on {len(fit.queries)} other queries)"
            report(label, _fuse_all(tuned, runs, candidates), fitted.config["weights"])
    return rows


# -- command line -------------------------------------------------------------------------------------------------
def _open_members(index: Path, kinds: Sequence[str], models: Sequence[str], chunk_size: int) -> list[Retriever]:
    """Retrievers laid out as ``ragloom eval --index`` lays them out (so its indexes are reused)."""
    specs = [
        RetrieverSpec(kind, kind, models[i] if i < len(models) else DEFAULT_MODELS.get(kind, ""), "memory", chunk_size)
        for i, kind in enumerate(kinds)
    ]
    return [build_retriever(spec, index) for spec in specs]


def _eval(args: argparse.Namespace) -> None:
    test = load_beir(args.dataset, args.split)
    fit = load_beir(args.dataset, args.fit_split) if args.fit_split else None
    retrievers = _open_members(args.index, args.retriever, args.model, args.chunk_size)
    started = time.perf_counter()
    for retriever in retrievers:
        if len(retriever) == 0:
            retriever.add(list(test.documents))
    indexed = time.perf_counter() - started
    rows = compare_fusions(retrievers, test, fit=fit, kinds=args.fusion)
    for retriever in retrievers:
        if isinstance(retriever, Closeable):
            retriever.close()
    print(
        f"# {test.name} {args.split} ({len(test.queries)} queries, {len(test.documents)} docs), "
        f"chunk size {args.chunk_size}, indexing {indexed:.0f}s"
    )
    print("| system | nDCG@10 | Recall@100 | MRR@10 | weights |\n|---|---|---|---|---|")
    for row in rows:
        weights = ", ".join(f"{k} {v:g}" for k, v in row["weights"].items())
        print(f"| {row['system']} | {row['nDCG@10']:.4f} | {row['Recall@100']:.4f} | {row['MRR@10']:.4f} | {weights} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit fusion weights on a BEIR folder's qrels and save them with the index")
    fit.add_argument("dataset", type=Path)
    fit.add_argument("--split", default="train")
    fit.add_argument("--kind", default="rrf", choices=["rrf", "minmax", "zscore"])
    evaluate = sub.add_parser("eval", help="each retriever alone vs their fusions on a BEIR folder")
    evaluate.add_argument("dataset", type=Path)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--fit-split", default=None, help="fit fusion weights on this split (e.g. train)")
    evaluate.add_argument("-r", "--retriever", action="append", help="dense, splade, bm25 (repeat)")
    evaluate.add_argument("--model", action="append", default=[], help="model per retriever, in -r order")
    evaluate.add_argument("--fusion", action="append", help="rrf, minmax, zscore (repeat; default rrf, minmax)")
    evaluate.add_argument("--chunk-size", type=int, default=HYBRID_CHUNK_SIZE)
    for command in (fit, evaluate):
        command.add_argument("--index", type=Path, default=Path(".ragloom/hybrid"))
        command.add_argument("--offline", action="store_true", help="never download models")
    args = parser.parse_args(argv)
    try:
        if args.command == "eval":
            args.retriever = args.retriever or ["dense", "splade", "bm25"]
            args.fusion = args.fusion or ["rrf", "minmax"]
            _eval(args)
            return
        with open_pipeline(args.index, allow_download=not args.offline) as pipe:  # made by `ragloom ingest`
            result = fit_fusion(pipe.retrievers, load_beir(args.dataset, args.split), kind=args.kind)
            save_fusion(args.index, result.config)
            print(json.dumps(dataclasses.asdict(result), indent=2))
    except RagloomError as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
