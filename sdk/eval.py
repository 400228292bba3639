"""Retrieval evaluation on BEIR-format folders (corpus.jsonl[.gz], queries.jsonl, qrels/SPLIT.tsv).

Metrics come from pytrec_eval (trec_eval's own code): nDCG@10, Recall@100 and MRR@10. Chunk hits are turned
into document rankings by each document's best chunk (max aggregation).
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ragloom._imports import require
from ragloom.errors import InvalidInputError
from ragloom.types import Document, Hit

__all__ = [
    "BeirDataset",
    "EvalResult",
    "aggregate_to_documents",
    "evaluate_retriever",
    "evaluate_run",
    "load_beir",
]

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR dataset: documents, queries (id → text) and relevance judgements (query id → doc id → grade)."""

    name: str
    documents: tuple[Document, ...]
    queries: Mapping[str, str]
    qrels: Qrels

    def iter_documents(self) -> Iterator[Document]:
        return iter(self.documents)


def _open_text(path: Path) -> TextIO:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise InvalidInputError(f"{folder} is not a BEIR folder: {stem}[.gz] is missing")


def load_beir(folder: str | Path, split: str = "test", *, limit_queries: int | None = None) -> BeirDataset:
    """Load a BEIR folder. Only queries that have judgements in ``split`` are kept (as BEIR does)."""
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise InvalidInputError(
            f"{root} has no qrels/{split}.tsv; splits present: {sorted(p.stem for p in (root / 'qrels').glob('*.tsv'))}"
        )
    qrels: Qrels = {}
    with open(qrels_path, encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if not row or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    documents = []
    with _open_text(_find(root, "corpus.jsonl")) as handle:
        for line in handle:
            record = json.loads(line)
            title, text = (record.get("title") or "").strip(), (record.get("text") or "").strip()
            body = f"{title}\n\n{text}" if title and text else (title or text)
            documents.append(Document(id=str(record["_id"]), text=body, metadata={"title": title}))
    queries: dict[str, str] = {}
    with _open_text(_find(root, "queries.jsonl")) as handle:
        for line in handle:
            record = json.loads(line)
            if str(record["_id"]) in qrels:
                queries[str(record["_id"])] = record["text"]
    if limit_queries is not None:
        queries = dict(list(queries.items())[:limit_queries])
    qrels = {q: qrels[q] for q in queries}
    return BeirDataset(root.name, tuple(documents), queries, qrels)


def aggregate_to_documents(hits: Sequence[Hit], k: int) -> dict[str, float]:
    """Each document scored by its best chunk; the top ``k`` documents."""
    best: dict[str, float] = {}
    for hit in hits:
        doc = hit.chunk.doc_id
        if doc not in best or hit.score > best[doc]:
            best[doc] = hit.score
    return dict(sorted(best.items(), key=lambda item: -item[1])[:k])


@dataclass(frozen=True)
class EvalResult:
    """Mean metrics over queries, the per-query values, and timings (seconds)."""

    metrics: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]]
    n_queries: int
    timings: Mapping[str, float] = field(default_factory=dict)


def evaluate_run(run: Run, qrels: Qrels) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """nDCG@10, Recall@100 and MRR@10 of a run (query → doc → score) with pytrec_eval."""
    pytrec_eval = require("pytrec_eval", "eval", "IR metrics")
    missing = [q for q in qrels if q not in run]
    run = {**run, **{q: {} for q in missing}}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    per_query: dict[str, dict[str, float]] = {}
    for qid, values in full.evaluate(run).items():
        per_query[qid] = {"nDCG@10": values["ndcg_cut_10"], "Recall@100": values["recall_100"]}
    for qid, values in mrr.evaluate(top10).items():
        per_query.setdefault(qid, {})["MRR@10"] = values["recip_rank"]
    names = ("nDCG@10", "Recall@100", "MRR@10")
    means = {n: sum(v.get(n, 0.0) for v in per_query.values()) / max(1, len(qrels)) for n in names}
    return means, per_query


def evaluate_retriever(
    search_many: Callable[[Sequence[str], int], list[list[Hit]]],
    dataset: BeirDataset,
    *,
    k: int = 100,
    chunk_k: int | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Run every query through ``search_many(queries, k)`` and score the document rankings."""
    ids = list(dataset.queries)
    chunk_k = chunk_k or k * 3
    run: Run = {}
    started = time.perf_counter()
    for begin in range(0, len(ids), batch_size):
        batch = ids[begin : begin + batch_size]
        results = search_many([dataset.queries[q] for q in batch], chunk_k)
        for qid, hits in zip(batch, results):
            run[qid] = aggregate_to_documents(hits, k)
        if progress:
            progress(min(begin + batch_size, len(ids)), len(ids))
    elapsed = time.perf_counter() - started
    means, per_query = evaluate_run(run, dataset.qrels)
    return EvalResult(
        means, per_query, len(ids), {"search_s": elapsed, "per_query_ms": 1000 * elapsed / max(1, len(ids))}
    )
