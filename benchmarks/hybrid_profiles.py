"""The attribute-conjunction set where dense retrieval collapses: 46 profiles, "Who likes X?" (69 queries).

    python -m benchmarks hybrid_profiles

Real models (all-MiniLM-L6-v2, SPLADE-tiny, BM25 on MiniLM's chunks). Recall@2 (each hobby has exactly two
fans) and nDCG@10 of each member, of equal-weight RRF and min-max (two- and three-way), and of the fusion
calibrated on pseudo-queries from the profiles themselves (robust default and weight grid; 300, the default:
the 46 profiles are walked several times; no labels), and the robust default + E²Rank (the dense encoder
re-scores the fused top ``--e2rank-top`` with listwise pseudo-relevance feedback).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._common import machine


def _scores(lists: dict[str, Sequence[Any]], fans: dict[str, set[str]]) -> tuple[float, float]:
    recall = ndcg = 0.0
    for hobby, hits in lists.items():
        docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
        recall += len(set(docs[:2]) & fans[hobby]) / 2
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(docs[:10]) if d in fans[hobby])
        ndcg += dcg / (1 + 1 / math.log2(3))
    return recall / len(lists), ndcg / len(lists)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hybrid_profiles", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--e2rank-top", type=int, default=20, help="E²Rank re-scores the fused top N.")
    args = parser.parse_args(argv)

    from benchmarks.hybrid_calibration import _below
    from ragloom.adapters.dense import DenseRetriever, TransformersDenseEncoder
    from ragloom.adapters.rerankers import EmbeddingListwiseReranker
    from ragloom.adapters.sparse import BM25Retriever, SparseRetriever, SpladeEncoder
    from ragloom.calibration import calibrate
    from ragloom.fusion import fuser_from_config
    from ragloom.robust_calibration import robust_calibrate
    from ragloom.testing import profile_documents

    docs, fans = profile_documents(args.seed)
    dense = DenseRetriever(TransformersDenseEncoder("minilm"), name="dense")
    splade = SparseRetriever(SpladeEncoder("splade-tiny"), chunker=dense.chunker, name="splade")
    bm25 = BM25Retriever(chunker=dense.chunker, name="bm25")
    members = [dense, splade, bm25]
    for r in members:
        r.add(docs)
    queries = {hobby: f"Who likes {hobby}?" for hobby in fans}
    runs = {r.name: {h: r.search(q, 50) for h, q in queries.items()} for r in members}
    print(f"profiles: {len(docs)} documents, {len(queries)} queries; {machine()}\n")
    print("| System | Recall@2 | nDCG@10 | Notes |\n|---|---|---|---|")
    for name, lists in runs.items():
        print(f"| {name} alone | {_scores(lists, fans)[0]:.3f} | {_scores(lists, fans)[1]:.3f} | |")
    for group in (["dense", "bm25"], ["dense", "splade", "bm25"]):
        label = " + ".join(group)
        for kind in ("rrf", "minmax"):
            fuser = fuser_from_config({"kind": kind})
            fused = {h: fuser.fuse({n: runs[n][h] for n in group}, 50) for h in queries}
            name = "RRF" if kind == "rrf" else "min-max (equal weights)"
            print(f"| {label}, {name} | {_scores(fused, fans)[0]:.3f} | {_scores(fused, fans)[1]:.3f} | |")
        chosen = [r for r in members if r.name in group]
        for strategy, fit in (("robust, default", robust_calibrate), ("grid", calibrate)):
            started = time.perf_counter()
            cal = fit(chosen, sample=300, seed=args.seed, candidates=50)
            seconds = time.perf_counter() - started
            fused = {h: cal.fuser.fuse({n: runs[n][h] for n in group}, 50) for h in queries}
            recall, ndcg = _scores(fused, fans)
            note = f"{cal.report.chosen}; {cal.report.sample_size} pseudo-queries, {seconds:.1f}s"
            print(f"| {label}, calibrated ({strategy}) | {recall:.3f} | {ndcg:.3f} | {note} |")
            if strategy.startswith("robust"):
                reranker, top = EmbeddingListwiseReranker(dense.encoder), args.e2rank_top
                heads = {h: reranker.rerank(queries[h], hits[:top], top) for h, hits in fused.items()}
                reranked = {h: heads[h] + _below(heads[h], fused[h][top:]) for h in fused}
                recall, ndcg = _scores(reranked, fans)
                print(f"| {label}, calibrated (robust) + E²Rank (top {top}) | {recall:.3f} | {ndcg:.3f} | |")


if __name__ == "__main__":
    main()
