"""E²Rank over the default fusion, from cached lists: equal-weight min-max, then the dense encoder re-scores its top.

    python -m benchmarks hybrid_e2rank BEIR_DIR --cache /tmp/idx/NAME [--mirror M] [--limit-queries N]
        [--rerank-queries N] [--top 30] [--feedback 3] [--mix 0.5]

Reuses the indexes and cached real-query lists of ``python -m benchmarks hybrid_calibration`` with the same
``--cache`` and ``--limit-queries`` (run that first); only the reranker runs here, so the rows come without
repeating the calibrations. ``--rerank-queries`` reranks the first N queries (both rows are scored on them).
Query ms p50 is the reranker's own time (one batched encoder call per query), not the members' searches.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import machine
from benchmarks.hybrid_calibration import add_dataset_arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hybrid_e2rank", description=__doc__)
    add_dataset_arguments(parser)
    parser.add_argument("--rerank-queries", type=int, default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--feedback", type=int, default=3)
    parser.add_argument("--mix", type=float, default=0.5)
    args = parser.parse_args(argv)

    from benchmarks.hybrid_calibration import _below, _build, _cached_runs, _metrics, materialise
    from ragloom.adapters.rerankers import EmbeddingListwiseReranker
    from ragloom.eval import load_beir
    from ragloom.fusion import MinMaxFusion

    if args.mirror:
        args.dataset = materialise(args.mirror, str(args.dataset), args.cache.parent / f"data-{args.dataset.name}")
    data = load_beir(args.dataset, args.split, limit_queries=args.limit_queries)
    retrievers = _build(args.cache, 254)
    queries = list(data.queries.values())
    runs = _cached_runs(args.cache / f"runs-{args.split}-100.json", retrievers, queries, 100)
    n = min(args.rerank_queries or len(queries), len(queries))
    ids = list(data.queries)[:n]
    fused = [MinMaxFusion().fuse({name: rows[i] for name, rows in runs.items()}, 100) for i in range(n)]
    reranker = EmbeddingListwiseReranker(retrievers[0].encoder, feedback=args.feedback, mix=args.mix)
    reranked, times = [], []
    for query, hits in zip(queries[:n], fused):
        started = time.perf_counter()
        head = reranker.rerank(query, hits[: args.top], args.top)
        times.append(1000 * (time.perf_counter() - started))
        reranked.append(head + _below(head, hits[args.top :]))
    before, after = _metrics(data, fused, ids), _metrics(data, reranked, ids)
    print(f"{data.name}: first {n} of {len(queries)} queries, {len(retrievers[0])} chunks; {machine()}\n")
    print("| System | nDCG@10 | Recall@100 | rerank ms p50 |\n|---|---|---|---|")
    print(f"| min-max (equal weights) | {before['nDCG@10']:.4f} | {before['Recall@100']:.4f} | |")
    print(
        f"| + E²Rank (top {args.top}, feedback {args.feedback}, mix {args.mix:g}) | {after['nDCG@10']:.4f} | "
        f"{after['Recall@100']:.4f} | {statistics.median(times):.0f} |"
    )


if __name__ == "__main__":
    main()
