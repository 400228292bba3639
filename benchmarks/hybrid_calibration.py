"""Hybrid retrieval without labels: members alone, RRF, min-max, label-fitted, calibrated (robust and grid), routed,
+E²Rank, +HyDE.

    python -m benchmarks hybrid_calibration BEIR_DIR --cache /tmp/idx/NAME [--fit-split train] [--sample 300]
        [--limit-docs N] [--limit-queries N] [--hyde-queries 40] [--llm-sample 0] [--json out.json]

Dense (all-MiniLM-L6-v2), SPLADE-tiny and BM25 index the same ≤254-token chunks (cached under ``--cache``, reused
between runs). Every member searches each test query once (``--candidates`` chunks); every fusion is computed
from those lists. Documents are ranked by their best chunk; nDCG@10 / Recall@100 by pytrec_eval. Calibration
uses the corpus only (pseudo-queries from the index); label-fitted weights use ``--fit-split`` qrels (never the
test split). Query ms p50: single-query member searches on the first 100 queries, plus the fusion (and reranker)
time of each system, measured in the same process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import machine, peak_rss_mib


def materialise(mirror: Path, folder: str, dest: Path) -> Path:
    """Copy a BEIR folder out of a bare git mirror (``fetch``ed at benchmark time, never committed) with
    ``git show``; returns ``dest``."""
    import subprocess

    names = subprocess.run(
        ["git", "--git-dir", str(mirror), "ls-tree", "-r", "--name-only", "HEAD", folder],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        target = dest / Path(name).relative_to(folder)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = subprocess.run(
                ["git", "--git-dir", str(mirror), "show", f"HEAD:{name}"], check=True, capture_output=True
            )
            target.write_bytes(blob.stdout)
    return dest


def _build(cache: Path, chunk_size: int) -> list[Any]:
    from ragloom.recipes.config import RetrieverSpec, build_retriever

    options = {"batch_size": 32, "dtype": "auto"}
    specs = [
        RetrieverSpec(
            name="dense", kind="dense", model="minilm", store="memory", chunk_size=chunk_size, options=options
        ),
        RetrieverSpec(name="splade", kind="splade", model="splade-tiny", chunk_size=chunk_size, options=options),
        RetrieverSpec(name="bm25", kind="bm25", model="minilm", chunk_size=chunk_size),
    ]
    return [build_retriever(s, cache) for s in specs]


def _index(retrievers: Sequence[Any], documents: Sequence[Any]) -> dict[str, float]:
    """Index the documents each retriever lacks (resumable: a killed run keeps what it committed)."""
    seconds = {}
    for r in retrievers:
        have, wanted = r.doc_ids(), {d.id for d in documents}
        if have - wanted:  # left by a run over another subsample: every member must index the same documents
            r.delete(sorted(have - wanted))
        missing = [d for d in documents if d.id not in have]
        if missing:
            started = time.perf_counter()
            for begin in range(0, len(missing), 250):
                r.add(list(missing[begin : begin + 250]))
                print(f"  indexed {r.name}: {min(begin + 250, len(missing))}/{len(missing)}", flush=True)
            seconds[r.name] = time.perf_counter() - started
    return seconds


def _runs(retrievers: Sequence[Any], queries: list[str], k: int) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    for r in retrievers:
        hits: list[list[Any]] = []
        for begin in range(0, len(queries), 64):
            hits.extend(r.search_many(queries[begin : begin + 64], k))
        out[r.name] = hits
    return out


def _cached_runs(path: Path, retrievers: Sequence[Any], queries: list[str], k: int) -> dict[str, list[list[Any]]]:
    """Each member's hits for ``queries``, kept as JSON next to the indexes (chunk, score) for reruns."""
    from ragloom.types import Chunk, Hit

    key = {"queries": queries, "members": [r.name for r in retrievers], "chunks": len(retrievers[0])}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["key"] == key:
            return {
                name: [
                    [Hit(Chunk.from_dict(c), s, kind, name, rank) for rank, (c, s, kind) in enumerate(row, 1)]
                    for row in rows
                ]
                for name, rows in data["runs"].items()
            }
    runs = _runs(retrievers, queries, k)
    payload = {
        n: [[[h.chunk.to_dict(), h.score, h.score_kind] for h in row] for row in rows] for n, rows in runs.items()
    }
    path.write_text(json.dumps({"key": key, "runs": payload}), encoding="utf-8")
    return runs


def _metrics(dataset: Any, lists: Sequence[Sequence[Any]], ids: Sequence[str] | None = None) -> dict[str, float]:
    from ragloom.eval import aggregate_to_documents, evaluate_run

    ids = list(ids or dataset.queries)
    run = {qid: aggregate_to_documents(hits, 100) for qid, hits in zip(ids, lists)}
    means, _ = evaluate_run(run, {q: dataset.qrels[q] for q in ids})
    return {k: round(v, 4) for k, v in means.items()}


def _fuse_all(fuser: Any, runs: dict[str, list[list[Any]]], k: int) -> tuple[list[list[Any]], list[float]]:
    count = len(next(iter(runs.values())))
    fused, times = [], []
    for i in range(count):
        started = time.perf_counter()
        fused.append(fuser.fuse({n: hits[i] for n, hits in runs.items()}, k))
        times.append(time.perf_counter() - started)
    return fused, times


def _member_times(retrievers: Sequence[Any], queries: list[str], k: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {r.name: [] for r in retrievers}
    for query in queries:
        for r in retrievers:  # alternating members, query by query
            started = time.perf_counter()
            r.search(query, k)
            times[r.name].append(time.perf_counter() - started)
    return times


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The BEIR set, its index cache and the queries: the arguments every hybrid benchmark takes."""
    parser.add_argument("dataset", type=Path, help="BEIR folder (or, with --mirror, the folder inside the mirror).")
    parser.add_argument("--mirror", type=Path, default=None, help="A bare git mirror holding the BEIR folder.")
    parser.add_argument("--cache", type=Path, required=True, help="Index cache directory (reused).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit-queries", type=int, default=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hybrid_calibration", description=__doc__)
    add_dataset_arguments(parser)
    parser.add_argument("--fit-split", default=None, help="qrels split for the label-fitted row (e.g. train).")
    parser.add_argument("--chunk-size", type=int, default=254)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--sample", type=int, default=300, help="Pseudo-queries for calibration.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-docs", type=int, default=None, help="Subsample the corpus (judged docs kept).")
    parser.add_argument("--hyde-queries", type=int, default=0, help="HyDE (SmolLM2) on the first N test queries.")
    parser.add_argument("--llm-sample", type=int, default=0, help="Also calibrate on N SmolLM2 pseudo-queries.")
    parser.add_argument("--e2rank-top", type=int, default=30, help="E²Rank re-scores the fused top N.")
    parser.add_argument("--e2rank-queries", type=int, default=None, help="E²Rank on the first N queries only.")
    parser.add_argument("--timing-queries", type=int, default=100, help="Queries timed one by one.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from ragloom.calibration import calibrate
    from ragloom.eval import load_beir
    from ragloom.fusion import ReciprocalRankFusion, fuser_from_config
    from ragloom.pseudo_queries import SalientSpanQueries
    from ragloom.robust_calibration import robust_calibrate
    from ragloom.routing import fit_router

    if args.mirror:
        args.dataset = materialise(args.mirror, str(args.dataset), args.cache.parent / f"data-{args.dataset.name}")
    data = load_beir(args.dataset, args.split, limit_queries=args.limit_queries)
    documents = list(data.documents)
    if args.limit_docs and len(documents) > args.limit_docs:  # judged-relevant documents + the corpus's first ones
        relevant = {d for rel in data.qrels.values() for d, grade in rel.items() if grade > 0}
        keep = [d for d in documents if d.id in relevant]
        rest = [d for d in documents if d.id not in relevant]
        documents = keep + rest[: max(0, args.limit_docs - len(keep))]
    print(f"{data.name}: {len(documents)} documents, {len(data.queries)} {args.split} queries; {machine()}", flush=True)
    retrievers = _build(args.cache, args.chunk_size)
    index_s = _index(retrievers, documents)
    n_chunks = len(retrievers[0])
    print(f"chunks: {n_chunks}; indexing seconds (new indexes only): {index_s}", flush=True)
    queries = list(data.queries.values())
    runs = _cached_runs(args.cache / f"runs-{args.split}-{args.candidates}.json", retrievers, queries, args.candidates)
    timing_queries = queries[: args.timing_queries]
    member_t = _member_times(retrievers, timing_queries, args.candidates)
    base_ms = [1000 * sum(member_t[r.name][i] for r in retrievers) for i in range(len(timing_queries))]
    rows: list[dict[str, Any]] = []

    def add(system: str, lists: Sequence[Sequence[Any]], extra_ms: Sequence[float] | None, note: str = "") -> None:
        ms = base_ms if extra_ms is None else [b + 1000 * e for b, e in zip(base_ms, extra_ms)]
        rows.append(
            {"system": system, **_metrics(data, lists), "query_ms_p50": round(statistics.median(ms), 1), "note": note}
        )
        print(f"  {system:<48} {rows[-1]}", flush=True)

    for r in retrievers:
        ms = [1000 * t for t in member_t[r.name]]
        rows.append(
            {
                "system": f"{r.name} alone",
                **_metrics(data, runs[r.name]),
                "query_ms_p50": round(statistics.median(ms), 1),
                "note": "",
            }
        )
        print(f"  {rows[-1]}", flush=True)
    rrf, t = _fuse_all(ReciprocalRankFusion(), runs, args.candidates)
    add("RRF k=60 (equal weights)", rrf, t)
    minmax, t = _fuse_all(fuser_from_config({"kind": "minmax"}), runs, args.candidates)
    add("min-max (equal weights)", minmax, t)

    if args.fit_split:
        from ragloom.recipes.hybrid_docqa import fit_fusion

        train = load_beir(args.dataset, args.fit_split)
        present = {d.id for d in documents}
        usable = {q for q, rel in train.qrels.items() if all(d in present for d, g in rel.items() if g > 0)}
        train = dataclasses.replace(
            train,
            queries={q: t for q, t in train.queries.items() if q in usable},
            qrels={q: r for q, r in train.qrels.items() if q in usable},
        )
        print(f"label fit on {len(train.queries)} {args.fit_split} queries (relevant documents indexed)", flush=True)
        started = time.perf_counter()
        fit_runs = _cached_runs(
            args.cache / f"runs-{args.fit_split}-{args.candidates}.json",
            retrievers,
            list(train.queries.values()),
            args.candidates,
        )
        fits = [
            fit_fusion(retrievers, train, kind=kind, candidates=args.candidates, runs=fit_runs)
            for kind in ("rrf", "minmax")
        ]
        best = max(fits, key=lambda f: f.ndcg)
        fitted, t = _fuse_all(fuser_from_config(best.config), runs, args.candidates)
        add(
            "label-fitted (train qrels)",
            fitted,
            t,
            f"{best.config['kind']} {best.config['weights']}; train nDCG {best.ndcg:.4f}; "
            f"fit {time.perf_counter() - started:.0f}s",
        )

    started = time.perf_counter()
    cal = robust_calibrate(retrievers, sample=args.sample, seed=args.seed, candidates=args.candidates)
    cal_s = time.perf_counter() - started
    calibrated, t_cal = _fuse_all(cal.fuser, runs, args.candidates)
    rep = cal.report
    add(
        "calibrated (robust, default)",
        calibrated,
        t_cal,
        f"{rep.chosen}; {rep.sample_size} pseudo-queries in 3 families; held-out {rep.fit_score:.3f} "
        f"(rrf {rep.baselines['rrf k=60 (equal weights)']:.3f}); {cal_s:.0f}s "
        f"= {cal_s * 10000 / n_chunks:.0f}s per 10k chunks",
    )
    started = time.perf_counter()
    grid = calibrate(
        retrievers, generator=SalientSpanQueries(), sample=args.sample, seed=args.seed, candidates=args.candidates
    )
    grid_s = time.perf_counter() - started
    lists, t = _fuse_all(grid.fuser, runs, args.candidates)
    add(
        "calibrated (grid: weights fitted on spans)",
        lists,
        t,
        f"{grid.report.chosen}; held-out {grid.report.fit_score:.3f}; {grid_s:.0f}s",
    )
    routed = fit_router(cal)
    lists, t = _fuse_all(routed.fuser, runs, args.candidates)
    overhead = statistics.median(1000 * (a - b) for a, b in zip(t, t_cal))
    add("routed (over calibrated)", lists, t, f"{routed.report.chosen}; router adds {overhead:.3f} ms/query (p50)")

    if args.llm_sample:
        from ragloom.adapters.generators.local import TransformersGenerator
        from ragloom.pseudo_queries import LLMQueries

        gen = TransformersGenerator("smollm2", max_new_tokens=48)
        started = time.perf_counter()
        llm_cal = robust_calibrate(
            retrievers,
            families={"llm": LLMQueries(gen)},
            sample=args.llm_sample,
            seed=args.seed,
            candidates=args.candidates,
        )
        llm_s = time.perf_counter() - started
        lists, t = _fuse_all(llm_cal.fuser, runs, args.candidates)
        r = llm_cal.report
        add(
            "calibrated (SmolLM2 questions)",
            lists,
            t,
            f"{r.chosen}; {r.sample_size} pseudo-queries ({r.skipped} skipped); held-out {r.fit_score:.3f}; "
            f"{llm_s:.0f}s",
        )

    from ragloom.adapters.rerankers import EmbeddingListwiseReranker

    reranker = EmbeddingListwiseReranker(retrievers[0].encoder)
    n = args.e2rank_queries or len(queries)
    reranked, extra = _rerank_all(reranker, queries[:n], calibrated[:n], args.e2rank_top, t_cal[:n])
    if n < len(queries):
        ids = list(data.queries)[:n]
        rows.append(
            {
                "system": f"calibrated, first {n} queries",
                **_metrics(data, calibrated[:n], ids),
                "query_ms_p50": None,
                "note": "E²Rank's baseline",
            }
        )
        rows.append(
            {
                "system": f"calibrated + E²Rank (top {args.e2rank_top}), first {n}",
                **_metrics(data, reranked, ids),
                "query_ms_p50": round(statistics.median(b + 1000 * e for b, e in zip(base_ms, extra)), 1),
                "note": "",
            }
        )
        print(f"  {rows[-2]}\n  {rows[-1]}", flush=True)
    else:
        add(f"calibrated + E²Rank (top {args.e2rank_top})", reranked, extra[: len(base_ms)])

    if args.hyde_queries:
        _hyde_rows(args, data, retrievers, runs, cal.fuser, rows, base_ms)

    print(f"\npeak RSS {peak_rss_mib():.0f} MiB")
    _print_table(data.name, len(documents), n_chunks, len(queries), rows)
    if args.json:
        payload = {
            "dataset": data.name,
            "documents": len(documents),
            "chunks": n_chunks,
            "queries": len(queries),
            "calibration": cal.config,
            "rows": rows,
            "machine": machine(),
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def _rerank_all(
    reranker: Any, queries: list[str], fused: list[list[Any]], top: int, fuse_t: list[float]
) -> tuple[list[list[Any]], list[float]]:
    out, times = [], []
    for query, hits, t in zip(queries, fused, fuse_t):
        started = time.perf_counter()
        head = reranker.rerank(query, hits[:top], top)
        times.append(t + time.perf_counter() - started)
        out.append(head + _below(head, hits[top:]))
    return out, times


def _below(head: Sequence[Any], tail: Sequence[Any]) -> list[Any]:
    """The tail past the reranked head, rescored below it in its order: documents are ranked by their best
    chunk's score, and the reranker's scale (0..1) differs from the fusion's (min-max sums reach the member
    count), so unshifted tail hits would outrank reranked ones."""
    floor = min((h.score for h in head), default=0.0) - 1.0
    return [dataclasses.replace(h, score=floor - i * 1e-6) for i, h in enumerate(tail)]


def _hyde_rows(
    args: Any,
    data: Any,
    retrievers: list[Any],
    runs: dict[str, list[list[Any]]],
    fuser: Any,
    rows: list[dict[str, Any]],
    base_ms: list[float],
) -> None:
    from ragloom.adapters.generators.local import TransformersGenerator
    from ragloom.hyde import HydeRetriever

    n = args.hyde_queries
    ids = list(data.queries)[:n]
    queries = [data.queries[q] for q in ids]
    gen = TransformersGenerator("smollm2", max_new_tokens=96)
    sub = {name: hits[:n] for name, hits in runs.items()}
    base, _ = _fuse_all(fuser, sub, args.candidates)
    rows.append(
        {
            "system": f"calibrated, first {n} queries",
            **_metrics(data, base, ids),
            "query_ms_p50": None,
            "note": "HyDE's baseline",
        }
    )
    print(f"  {rows[-1]}", flush=True)
    for mode in ("average", "passage"):
        hyde = HydeRetriever(retrievers[0], gen, mode=mode)
        times, dense_lists = [], []
        for query in queries:
            started = time.perf_counter()
            dense_lists.append(hyde.search(query, args.candidates))
            times.append(time.perf_counter() - started)
        fused, _ = _fuse_all(fuser, {**sub, "dense": dense_lists}, args.candidates)
        ms = statistics.median(1000 * t for t in times) + statistics.median(base_ms)
        rows.append(
            {
                "system": f"calibrated + HyDE ({mode}), first {n}",
                **_metrics(data, fused, ids),
                "query_ms_p50": round(ms, 1),
                "note": "SmolLM2-135M passage",
            }
        )
        print(f"  {rows[-1]}", flush=True)
        alone = _metrics(data, dense_lists, ids)
        rows.append({"system": f"dense + HyDE ({mode}) alone, first {n}", **alone, "query_ms_p50": None, "note": ""})
        rows.append(
            {"system": f"dense alone, first {n}", **_metrics(data, sub["dense"], ids), "query_ms_p50": None, "note": ""}
        )


def _print_table(name: str, docs: int, chunks: int, queries: int, rows: list[dict[str, Any]]) -> None:
    print(f"\n{name}: {docs} documents, {chunks} chunks, {queries} queries\n")
    print("| System | nDCG@10 | Recall@100 | query ms p50 | Notes |")
    print("|---|---|---|---|---|")
    for row in rows:
        ms = "" if row["query_ms_p50"] is None else f"{row['query_ms_p50']:.1f}"
        print(f"| {row['system']} | {row['nDCG@10']:.4f} | {row['Recall@100']:.4f} | {ms} | {row['note']} |")


if __name__ == "__main__":
    main()
