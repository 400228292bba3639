"""``ragloom eval`` as a library function: build (or open) the retrievers, index a BEIR corpus, optionally fit or
calibrate fusion, and score the queries with pytrec_eval. The CLI only parses arguments and prints the result."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragloom.errors import ConfigError
from ragloom.retrieval import ProgressCallback

__all__ = ["EvalOptions", "EvalRun", "Reporter", "evaluate_beir"]

Reporter = Callable[[str, str], AbstractContextManager[ProgressCallback | None]]
"""``reporter(label, unit)``: a context giving a progress callback (the CLI's progress bar), or None."""


@dataclass(frozen=True)
class EvalOptions:
    """What ``ragloom eval`` was asked: retriever kinds and models (in order), fusion, how to fit or calibrate it,
    the qrels split, where indexes live, and the encoders' settings."""

    kinds: tuple[str, ...] = ()  # none given: an existing index's own retrievers, else dense
    models: tuple[str, ...] = ()
    fusion: str = "rrf"
    fit_split: str | None = None
    tune: bool = False
    split: str = "test"
    index: Path | None = None
    chunk_size: int | None = None
    batch_size: int = 32
    dtype: str = "auto"
    limit_queries: int | None = None
    allow_download: bool = True


@dataclass(frozen=True)
class EvalRun:
    """An evaluation's outcome: the metrics (``result``), a label of what was evaluated, and the JSON payload."""

    dataset: str
    documents: int
    label: str
    index_s: float
    result: Any  # ragloom.eval.EvalResult
    payload: dict[str, Any]


def _quiet(label: str, unit: str) -> AbstractContextManager[ProgressCallback | None]:
    return nullcontext(None)


def evaluate_beir(dataset: Path, options: EvalOptions, reporter: Reporter = _quiet) -> EvalRun:
    """Evaluate on the BEIR folder ``dataset``. With ``options.index`` naming a ragloom index and the default kinds,
    that index's retrievers and fuser are evaluated (the corpus is ingested into it first)."""
    from ragloom.eval import evaluate_retriever, load_beir
    from ragloom.fusion import fuser_from_config
    from ragloom.pipeline import Pipeline
    from ragloom.recipes.config import DEFAULT_MODELS, IndexSpec, RetrieverSpec, build_retriever, open_pipeline

    o, kinds, models, index = options, list(options.kinds or ["dense"]), list(options.models), options.index
    if o.tune and o.fit_split:
        raise ConfigError("--tune calibrates without labels, --fit-split fits on labels: choose one")
    own_index = index is not None and not o.kinds and (index / "ragloom.json").exists()
    index_spec = IndexSpec.load(index) if own_index and index is not None else None
    data = load_beir(dataset, o.split, limit_queries=o.limit_queries)
    specs = list(index_spec.retrievers) if index_spec else []
    for i, kind in enumerate([] if index_spec else kinds):
        encodes = kind in ("dense", "splade", "late")  # their builders take dtype and batch_size
        builder_options: dict[str, Any] = {"batch_size": o.batch_size, "dtype": o.dtype} if encodes else {}
        specs.append(
            RetrieverSpec(
                name=kind if kinds.count(kind) == 1 else f"{kind}{i}",
                kind=kind,
                model=models[i] if i < len(models) else DEFAULT_MODELS.get(kind, ""),
                store="memory",
                chunk_size=o.chunk_size,
                options=builder_options,
            )
        )
    started = time.perf_counter()
    owner = None
    if index_spec is not None and index is not None:  # the index's own pipeline: unchanged documents skip
        owner = open_pipeline(index, allow_download=o.allow_download)
        retrievers = list(owner.retrievers)
        with reporter("Indexing", "docs") as progress:
            owner.ingest(list(data.documents), progress=progress)
    else:
        retrievers = [build_retriever(s, index, allow_download=o.allow_download) for s in specs]
        for r in retrievers:
            if len(r) == 0:
                with reporter(f"Indexing ({r.name})", "docs") as progress:
                    r.add(list(data.documents), progress=progress)
    index_s = time.perf_counter() - started
    fusion_config: dict[str, Any] = dict(index_spec.fusion) if index_spec else {"kind": o.fusion}
    if o.fit_split and len(retrievers) > 1:
        from ragloom.recipes.hybrid_docqa import fit_fusion

        fusion_config = fit_fusion(retrievers, load_beir(dataset, o.fit_split), kind=o.fusion).config
    elif o.tune and len(retrievers) > 1:
        from ragloom.recipes.tune_cli import calibrated_fusion

        with reporter("Calibrating", "queries") as progress:
            fusion_config = calibrated_fusion(retrievers, candidates=300, progress=progress).config
    fuser = fuser_from_config(fusion_config) if len(retrievers) > 1 else None
    if owner is not None:  # search through the index's own pipeline, with eval's depth
        pipeline = owner
        pipeline.fuser, pipeline.k, pipeline.candidates, pipeline.group_by = fuser, 100, 300, "chunk"
    else:
        pipeline = Pipeline(retrievers, fuser=fuser, k=100, candidates=300)

    def search_many(queries: Sequence[str], k: int) -> list[list[Any]]:
        if len(retrievers) == 1:
            return retrievers[0].search_many(queries, k)
        return [pipeline.retrieve(q, k=k) for q in queries]

    with reporter("Searching", "queries") as progress:
        result = evaluate_retriever(search_many, data, progress=progress)
    pipeline.close()
    label = _label(specs, fusion_config, o)
    payload = {
        "dataset": data.name,
        "split": o.split,
        "retrievers": label,
        "queries": result.n_queries,
        "documents": len(data.documents),
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "index_s": round(index_s, 1),
        "query_ms": round(result.timings["per_query_ms"], 2),
    }
    if len(specs) > 1:
        payload["fusion"] = fusion_config
    return EvalRun(data.name, len(data.documents), label, index_s, result, payload)


def _label(specs: Sequence[Any], fusion_config: dict[str, Any], o: EvalOptions) -> str:
    """What was evaluated, as the table title and the JSON ``retrievers`` field name it."""
    label = " + ".join(f"{s.kind}({s.model})" if s.model else s.kind for s in specs)
    if len(specs) > 1:
        if o.tune and not o.fit_split and "calibration" in fusion_config:
            label += f" · calibrated: {fusion_config['calibration']['chosen']}"
        else:
            label += f" · {fusion_config.get('kind', o.fusion)}"
        if o.fit_split:
            weights = ", ".join(f"{k} {v:g}" for k, v in fusion_config["weights"].items())
            label += f" (weights fitted on {o.fit_split}: {weights})"
    return label
