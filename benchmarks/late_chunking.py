"""Late vs naive chunking on the same model and the same chunks: encoding cost and retrieval quality.

``cost``: seconds to embed the same chunks of the same documents, naive (each chunk encoded alone, as
DenseRetriever does) vs late (whole windows encoded once, chunk tokens mean-pooled), on SciFact abstracts and on
long QMSum meetings, for several windows, with the tokens each side feeds the model. Runs alternate after a
warm-up; the best of ``--repeats`` rounds, in CPU time and wall time.

``quality``: nDCG@10 / Recall@100 / MRR@10 with chunk scores aggregated to documents by max (pytrec_eval), on
SciFact and on QMSum long meetings, where span recall (a top-k chunk lying at least half inside a gold span of the
gold meeting) is reported across the corpus and inside the gold meeting. Subsets keep each pass under ~25 min on a
2-core CPU: SciFact = all test queries over their judged documents plus a fixed random sample of the rest;
QMSum = the test queries of a fixed random sample of the test meetings (``--docs``, ``--meetings``, seed 0).

    python -m benchmarks late_chunking quality --dataset scifact --side naive --out runs/scifact-naive.json
    python -m benchmarks late_chunking quality --dataset scifact --side late --out runs/scifact-late.json
    python -m benchmarks late_chunking compare runs/scifact-naive.json runs/scifact-late.json   # paired 95% CIs
    python -m benchmarks late_chunking cost
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from benchmarks._common import SHARED_DATA, machine, offline_model

CHUNK_SIZE, CHUNK_OVERLAP = 256, 32
PREFIXES = {"query_prefix": "search_query: ", "document_prefix": "search_document: "}


def model_path(name: str) -> Path:
    """The model's folder: ragloom's resolution, else the offline-models folder of that name (nomic)."""
    from ragloom.errors import ModelNotFoundError

    try:
        return offline_model(name)
    except ModelNotFoundError:
        folder = Path(os.environ.get("OFFLINE_MODELS_DIR", Path.home() / ".cache" / "offline-models")) / name
        if (folder / ".complete").exists():
            return folder
        raise


def _encoders(
    model: str, dtype: str, window: int | None, overlap: int | None, rope_factor: float | None, edges: bool = True
) -> Any:
    from ragloom.adapters.dense import TransformersDenseEncoder
    from ragloom.adapters.late_chunking import LateChunkingEncoder

    dense = TransformersDenseEncoder(model_path(model), dtype=dtype, **PREFIXES)  # type: ignore[arg-type]
    late = LateChunkingEncoder(
        encoder=dense, window=window, overlap=overlap, rope_factor=rope_factor, edge_tokens=edges
    )
    return dense, late


# -- datasets -----------------------------------------------------------------------------------------------------
def scifact_subset(docs: int, seed: int = 0) -> tuple[Any, str]:
    """All SciFact test queries; their judged documents plus a fixed random sample of the rest (``docs`` total)."""
    from ragloom.eval import BeirDataset, load_beir

    data = load_beir(SHARED_DATA / "scifact", "test")
    if docs >= len(data.documents):
        return data, f"full corpus ({len(data.documents)} docs)"
    judged = {d for q in data.qrels.values() for d in q}
    rest = sorted(d.id for d in data.documents if d.id not in judged)
    random.Random(seed).shuffle(rest)  # a fixed order: a larger subset extends a smaller one
    keep = judged | set(rest[: max(0, docs - len(judged))])
    subset = tuple(d for d in data.documents if d.id in keep)
    note = f"{len(subset)} docs = {len(judged)} judged + {len(subset) - len(judged)} random (seed {seed})"
    return BeirDataset(data.name, subset, data.queries, data.qrels), note


def qmsum_subset(meetings: int, seed: int = 0) -> tuple[Any, dict[str, list[tuple[int, int]]], str]:
    """QMSum test queries of ``meetings`` random test meetings, and each query's gold character spans."""
    from ragloom.eval import BeirDataset, load_beir

    data = load_beir(SHARED_DATA / "qmsum_longdoc", "test")
    gold_docs = sorted({d for q in data.qrels.values() for d in q})
    random.Random(seed).shuffle(gold_docs)
    keep = set(gold_docs[:meetings])
    queries = {q: t for q, t in data.queries.items() if set(data.qrels[q]) <= keep}
    documents = tuple(d for d in data.documents if d.id in keep)
    spans: dict[str, list[tuple[int, int]]] = {}
    with gzip.open(SHARED_DATA / "qmsum_longdoc" / "qrels_spans.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["query_id"] in queries:
                spans[record["query_id"]] = [(s["char_start"], s["char_end"]) for s in record["spans"]]
    subset = BeirDataset(data.name, documents, queries, {q: data.qrels[q] for q in queries})
    note = f"{len(documents)} of {len(gold_docs)} test meetings (seed {seed}), their {len(queries)} test queries"
    return subset, spans, note


def span_recall(hits: list[Any], gold_doc: str, gold: list[tuple[int, int]], k: int) -> float:
    """Share of gold spans that one of the top ``k`` chunks lies at least half inside."""
    found = set()
    for hit in hits[:k]:
        chunk = hit.chunk
        if chunk.doc_id != gold_doc:
            continue
        for i, (start, end) in enumerate(gold):
            inside = max(0, min(end, chunk.end) - max(start, chunk.start))
            if inside * 2 >= max(1, chunk.end - chunk.start):
                found.add(i)
    return len(found) / max(1, len(gold))


# -- quality ------------------------------------------------------------------------------------------------------
class _FusedNaiveLate:
    """Naive and late retrievers of the same chunks behind one search: RRF (k=60) of their rankings."""

    def __init__(self, dense: Any, late: Any, path: Path | None) -> None:
        from ragloom.adapters.dense import DenseRetriever
        from ragloom.adapters.late_chunking import LateChunkingRetriever
        from ragloom.fusion import ReciprocalRankFusion

        where = (lambda name: path / name) if path else (lambda name: None)
        chunking = {"store": "memory", "chunk_size": CHUNK_SIZE, "overlap": CHUNK_OVERLAP}
        self.parts = {
            "naive": DenseRetriever(dense, where("naive"), **chunking),  # type: ignore[arg-type]
            "late": LateChunkingRetriever(late, where("late"), **chunking),  # type: ignore[arg-type]
        }
        self.fuser = ReciprocalRankFusion()

    def add(self, documents: list[Any], progress: Any = None) -> None:
        for part in self.parts.values():
            part.add(documents, progress=progress)

    def delete(self, doc_ids: list[str]) -> None:
        for part in self.parts.values():
            part.delete(doc_ids)

    def doc_ids(self) -> set[str]:
        return set.intersection(*(part.doc_ids() for part in self.parts.values()))

    def search_many(self, queries: list[str], k: int) -> list[list[Any]]:
        rows = {name: part.search_many(queries, k) for name, part in self.parts.items()}
        return [self.fuser.fuse({name: rows[name][i] for name in rows}, k) for i in range(len(queries))]

    def search(self, query: str, k: int, filters: Any = None) -> list[Any]:
        return self.fuser.fuse({name: part.search(query, k, filters) for name, part in self.parts.items()}, k)

    def __len__(self) -> int:
        return len(self.parts["late"])

    def close(self) -> None:
        for part in self.parts.values():
            part.close()


def quality(args: argparse.Namespace) -> dict[str, Any]:
    from ragloom.adapters.dense import DenseRetriever
    from ragloom.adapters.late_chunking import LateChunkingRetriever
    from ragloom.eval import aggregate_to_documents, evaluate_run

    if args.dataset == "scifact":
        data, note = scifact_subset(args.docs)
        spans: dict[str, list[tuple[int, int]]] = {}
    else:
        data, spans, note = qmsum_subset(args.meetings)
    dense, late = _encoders(
        args.model, args.dtype, args.window, args.window_overlap, args.rope_factor, not args.no_edge_tokens
    )
    path = Path(args.index) if args.index else None
    if args.side == "fused":  # reciprocal rank fusion of both over the same chunk ids: INDEX/naive + INDEX/late
        retriever: Any = _FusedNaiveLate(dense, late, path)
    elif args.side == "naive":
        retriever = DenseRetriever(dense, path, store="memory", chunk_size=CHUNK_SIZE, overlap=CHUNK_OVERLAP)
    else:
        retriever = LateChunkingRetriever(late, path, store="memory", chunk_size=CHUNK_SIZE, overlap=CHUNK_OVERLAP)
    wanted = {d.id for d in data.documents}
    if retriever.doc_ids() - wanted:  # a resumed index of another subset
        retriever.delete(sorted(retriever.doc_ids() - wanted))
    missing = [d for d in data.documents if d.id not in retriever.doc_ids()]
    started = time.perf_counter()
    if missing:
        retriever.add(missing, progress=lambda done, total: print(f"  indexed {done}/{total}", flush=True))
    index_s = time.perf_counter() - started
    ids = list(data.queries)
    started = time.perf_counter()
    results = retriever.search_many([data.queries[q] for q in ids], k=300)
    search_s = time.perf_counter() - started
    run = {q: aggregate_to_documents(hits, 100) for q, hits in zip(ids, results)}
    metrics, per_query = evaluate_run(run, data.qrels)
    out: dict[str, Any] = {
        "dataset": args.dataset,
        "subset": note,
        "side": args.side,
        "encoder": dict(late.fingerprint if args.side != "naive" else dense.fingerprint),
        "chunks": len(retriever),
        "queries": len(ids),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "index_s": round(index_s, 1),
        "search_s": round(search_s, 1),
    }
    if spans:
        gold_doc = {q: next(iter(data.qrels[q])) for q in ids}
        corpus = [span_recall(h, gold_doc[q], spans[q], 10) for q, h in zip(ids, results)]
        inside = []
        for q in ids:
            hits = retriever.search(data.queries[q], k=5, filters={"doc_id": gold_doc[q]})
            inside.append(span_recall(hits, gold_doc[q], spans[q], 5))
        out["metrics"]["SpanRecall@10"] = round(sum(corpus) / len(corpus), 4)
        out["metrics"]["InDocSpanRecall@5"] = round(sum(inside) / len(inside), 4)
        out["per_query_spans"] = {q: [round(c, 4), round(i, 4)] for q, c, i in zip(ids, corpus, inside)}
    out["per_query_ndcg10"] = {q: round(v["nDCG@10"], 4) for q, v in per_query.items()}
    retriever.close()
    return out


# -- cost ---------------------------------------------------------------------------------------------------------
def _alternate_cpu(runs: dict[str, Any], repeats: int) -> dict[str, tuple[float, float]]:
    """Best (CPU seconds, wall seconds) per run over ``repeats`` alternating rounds: on a shared machine other
    processes only ever add time, so the minimum is the stable estimate (as ``timeit`` does)."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            fn()
            samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return {name: (min(c for c, _ in v), min(w for _, w in v)) for name, v in samples.items()}


def _sequence_length_cost(dense: Any, repeats: int, total: int = 4096) -> None:
    """The model alone: ``total`` random tokens as sequences of 256, 512, 1024 and 2048 (attention's share)."""
    torch = dense._torch
    generator = torch.Generator().manual_seed(0)
    lengths = (256, 512, 1024, 2048)
    ids = {n: torch.randint(1000, 20000, (total // n, n), generator=generator) for n in lengths}

    def forward(n: int) -> Any:
        return lambda: dense.model(input_ids=ids[n].to(dense.device))

    with torch.inference_mode():
        times = _alternate_cpu({str(n): forward(n) for n in lengths}, repeats)
    base = times["256"][0]
    cells = " | ".join(f"{n}: {times[str(n)][0] / base:.2f}x" for n in lengths)
    print(f"\nModel CPU time per token by sequence length, relative to 256: {cells}\n", flush=True)


def cost(args: argparse.Namespace) -> None:
    from ragloom.adapters.late_chunking import LateChunkingEncoder
    from ragloom.chunking import TokenChunker

    dense, _ = _encoders(args.model, args.dtype, None, args.window_overlap, None)
    chunker = TokenChunker(dense.token_counter, chunk_size=CHUNK_SIZE, overlap=CHUNK_OVERLAP)
    scifact, _ = scifact_subset(10**9)
    qmsum, _, _ = qmsum_subset(10**9)
    by_length = sorted(qmsum.documents, key=lambda d: len(d.text))
    sets = {
        f"SciFact ({args.scifact_docs} abstracts)": list(scifact.documents[: args.scifact_docs]),
        f"QMSum ({args.qmsum_docs} shortest test meetings)": by_length[: args.qmsum_docs],
    }
    print(f"# late_chunking cost · {args.model} {args.dtype} · {machine()} · best of {args.repeats}")
    dense.encode_documents(["warm-up"] * 4)
    _sequence_length_cost(dense, args.repeats)
    print(
        "| text | text tokens | chunks | window | tokens encoded naive / late | CPU s naive / late | late/naive CPU "
        "| late/naive wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, docs in sets.items():
        pairs = [(d, chunker.chunk(d)) for d in docs]
        tokens = sum(len(dense.token_counter.token_spans(d.text)) for d in docs)
        n_chunks = sum(len(c) for _, c in pairs)
        texts = [c.text for _, cs in pairs for c in cs]
        naive_tokens = sum(len(ids) for ids in dense.tokenizer([dense.document_prefix + t for t in texts])["input_ids"])
        runs = {"naive": lambda: dense.encode_documents(texts)}
        encoded = {}
        for window in args.windows:
            rope = args.rope_factor if window > 2048 else None
            late = LateChunkingEncoder(encoder=dense, window=window, overlap=args.window_overlap, rope_factor=rope)
            runs[str(window)] = lambda late=late: late.embed_chunks(pairs)
            jobs = [job for d, cs in pairs for job in late._document_jobs(d, cs, 0)]
            encoded[str(window)] = sum(len(job.input_ids) for job in jobs)
        times = _alternate_cpu(runs, args.repeats)
        naive_cpu, naive_wall = times.pop("naive")
        for window, (cpu, wall) in times.items():
            print(
                f"| {label} | {tokens} | {n_chunks} | {window} | {naive_tokens} / {encoded[window]} | "
                f"{naive_cpu:.1f} / {cpu:.1f} | {cpu / naive_cpu:.2f}x | {wall / naive_wall:.2f}x |",
                flush=True,
            )


# -- compare --------------------------------------------------------------------------------------------------------
def compare(baseline: Path, other: Path, resamples: int = 10_000) -> None:
    """Paired differences (other - baseline) per query, with 95% bootstrap intervals (seed 0)."""
    import numpy as np

    a, b = json.loads(baseline.read_text()), json.loads(other.read_text())
    series = {"nDCG@10": ("per_query_ndcg10", None)}
    if "per_query_spans" in a and "per_query_spans" in b:
        series.update({"SpanRecall@10": ("per_query_spans", 0), "InDocSpanRecall@5": ("per_query_spans", 1)})
    rng = np.random.default_rng(0)
    print(f"{other.name} vs {baseline.name} ({a.get('subset', '')})")
    for metric, (key, column) in series.items():
        queries = sorted(set(a[key]) & set(b[key]))

        def value(run: dict[str, Any], query: str, key: str = key, column: int | None = column) -> float:
            cell = run[key][query]
            return float(cell if column is None else cell[column])

        diff = np.array([value(b, q) - value(a, q) for q in queries])
        means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        print(f"  {metric}: {diff.mean():+.4f} [{low:+.4f}, {high:+.4f}] over {len(queries)} queries")


def main(argv: list[str]) -> None:
    if argv[:1] == ["compare"]:
        if len(argv) != 3:
            raise SystemExit("usage: python -m benchmarks late_chunking compare BASELINE.json OTHER.json")
        compare(Path(argv[1]), Path(argv[2]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks late_chunking", description=__doc__)
    parser.add_argument("what", choices=["cost", "quality"])
    parser.add_argument("--model", default="nomic")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--dataset", choices=["scifact", "qmsum"], default="scifact")
    parser.add_argument("--side", choices=["naive", "late", "fused"], default="late", help="fused: RRF of both")
    parser.add_argument("--docs", type=int, default=600, help="SciFact documents (judged + random rest)")
    parser.add_argument("--meetings", type=int, default=10, help="QMSum test meetings (random, seed 0)")
    parser.add_argument("--window", type=int, default=None, help="late: tokens per window (default: model's)")
    parser.add_argument("--window-overlap", type=int, default=None, help="late: default min(128, window // 8)")
    parser.add_argument("--rope-factor", type=float, default=None)
    parser.add_argument("--no-edge-tokens", action="store_true", help="late: pool chunk text tokens only")
    parser.add_argument("--index", default=None, help="keep (and resume) the index here")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--scifact-docs", type=int, default=48)
    parser.add_argument("--qmsum-docs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.what == "cost":
        cost(args)
        return
    result = quality(args)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
